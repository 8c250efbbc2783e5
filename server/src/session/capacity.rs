//! How many sessions this machine holds, and whether it holds one more right now. The
//! default session limit follows from the cores and the measured cost of one session; a
//! live check — the whole machine's CPU (ffmpeg children included) plus the cost of one
//! more session, and any session whose encoder fell behind lately — refuses a new session
//! ("busy") before the admitted ones degrade.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Share of one core a 640×480@30 session costs with the default settings, server and its
/// two ffmpeg children together, measured on real footage (`carphone`) with H.264 from the
/// browser (Chromium's default here, and Safari's MP4). History: 0.24 at 10 detections a
/// second; 0.2 at 3 a second with shared detector threads (9 sessions). Since the tracker
/// also takes faint detections as seeing a known face again (a face whose score hovers
/// around the threshold no longer unsettles it and asks for detections out of turn) and
/// detection runs 2 times a second: 14 sessions at 29.5 fps with nothing dropped took 166 %
/// of the 2 cores, ffmpeg children and the load client included, 0.119 a session
/// (`results/capacity-20261203T*.md`, docs/capacity.md). Planned at 0.125: 14 on 2 cores.
pub const SESSION_CORE_SHARE: f64 = 0.125;

/// The same for VP8/VP9 input (Firefox sends VP8): measured within noise of H.264 (10 VP8
/// sessions 0.114 a session, 10 VP9 0.121); planned with a margin for noisier footage,
/// which costs VP8's decoder more than H.264's: 12 on 2 cores.
pub const VPX_SESSION_CORE_SHARE: f64 = 0.14;

/// How many times a session's share a pipeline in privacy mode costs: it detects 6 times a
/// second (`privacy-detect-fps`) instead of 2, and its frames wait for a detection at or
/// after them. Measured with the load client in privacy mode on real footage (H.264): 8
/// privacy sessions at 29.5 fps with nothing dropped took 135 % of the 2 cores, 0.17 a
/// session (`docs/capacity.md`); planned at 1.6 × 0.125 = 0.2, so 9 fit on 2 cores. (When
/// privacy detected every frame, uncapped, it cost 3× a session.) Channels and browser
/// sessions are planned with it, and a session that switches privacy on or off
/// mid-session is re-planned ([`Reservation::plan_privacy`]).
pub const PRIVACY_COST_FACTOR: f64 = 1.6;

/// The picture the session shares above are measured at (640×480).
const REFERENCE_PIXELS: f64 = 640.0 * 480.0;
/// Part of a session's cost that grows with its pixels (decode, colour conversion, drawing,
/// encode); the rest (detection at its fixed width, the frame path, packaging) does not.
/// Now that detection is rare, decoding and encoding with their colour conversions are
/// ~0.1 of the 0.125 (the stage table of `server/examples/cost.rs`): 0.7. An independent
/// run measured 1920×1080 at 0.74 core when a session cost 0.225 (0.4 then); 1080p now
/// plans 0.63, so two fit on 2 cores and a third does not.
const PIXEL_BOUND: f64 = 0.7;

/// What one session of `codec` at `width`×`height` is planned to cost, in cores: the
/// measured share at 640×480, scaled up for larger pictures (never down: small pictures
/// cost the fixed part all the same).
pub fn session_share(codec: crate::source::Codec, width: u32, height: u32) -> f64 {
    let base = match codec {
        crate::source::Codec::H264 => SESSION_CORE_SHARE,
        crate::source::Codec::Vp8 | crate::source::Codec::Vp9 => VPX_SESSION_CORE_SHARE,
    };
    let ratio = (f64::from(width) * f64::from(height) / REFERENCE_PIXELS).max(1.0);
    base * ((1.0 - PIXEL_BOUND) + PIXEL_BOUND * ratio)
}

/// Share of the machine that sessions may plan to use; the rest is left to the system and
/// to bursts (a scene cut, a detection that takes longer).
const PLANNED_SHARE: f64 = 0.9;

/// Slack for float rounding when planned shares add up to exactly the ceiling.
const ROUNDING: f64 = 1e-9;

/// A session whose encoder fell behind keeps the server "busy" for this long.
const LAG_MEMORY: Duration = Duration::from_secs(5);

/// How often the machine's CPU is sampled, and how much one sample weighs.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const SAMPLE_WEIGHT: f64 = 0.3;

/// The plan must have held this long (sessions started and ramped up, the gauge caught up)
/// before the CPU measured is compared with it.
const STEADY: Duration = Duration::from_secs(6);
/// Compared only while the sessions plan at least this many cores (two sessions): with less,
/// the machine's noise outweighs them.
const MIN_PLANNED_TO_LEARN: f64 = 2.0 * SESSION_CORE_SHARE;
/// Weight of one comparison (one a second while steady) in the learned cost scale.
const LEARN_WEIGHT: f64 = 0.2;
/// The most a session is taken to cost against its plan (a host three times slower than the
/// one the plan was measured on).
const MAX_SCALE: f64 = 3.0;
/// How often the plan is compared with the CPU measured.
const LEARN_EVERY: Duration = Duration::from_secs(1);

/// The session limit for a machine with `cores` cores.
pub fn default_max_sessions(cores: usize) -> usize {
    ((cores as f64 * PLANNED_SHARE) / SESSION_CORE_SHARE + ROUNDING)
        .floor()
        .max(1.0) as usize
}

/// How busy the whole machine is, 0 (idle) to 1 (every core busy), over the last seconds.
pub trait LoadGauge: Send + Sync {
    fn busy(&self) -> Option<f64>;

    /// The share of the machine this server and its child processes (the sessions' ffmpeg)
    /// take, on the same scale; `None` where it cannot be told apart from the rest.
    fn own(&self) -> Option<f64> {
        None
    }
}

/// The machine's CPU from `/proc/stat`, and this server's with its children from
/// `/proc/<pid>/stat`, sampled in the background and smoothed.
#[derive(Default)]
pub struct ProcStat {
    /// f64 bits of the smoothed busy share; NaN until the second sample.
    busy: AtomicU64,
    /// f64 bits of the smoothed share of this process tree; NaN until the second sample.
    own: AtomicU64,
}

impl ProcStat {
    /// Starts sampling until `shutdown`.
    pub fn start(shutdown: CancellationToken) -> Arc<Self> {
        let gauge = Arc::new(ProcStat {
            busy: AtomicU64::new(f64::NAN.to_bits()),
            own: AtomicU64::new(f64::NAN.to_bits()),
        });
        let this = gauge.clone();
        tokio::spawn(async move {
            let mut last = read_proc_stat();
            let mut tree = ProcessTree::default();
            tree.sample();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = read_proc_stat();
                let own = tree.sample();
                if let (Some((b0, t0)), Some((b1, t1))) = (last, now) {
                    if t1 > t0 {
                        let total = (t1 - t0) as f64;
                        smooth(&this.busy, (b1 - b0) as f64 / total);
                        smooth(&this.own, (own as f64 / total).min(1.0));
                    }
                }
                last = now;
            }
        });
        gauge
    }
}

/// Folds `sample` into the smoothed value stored in `cell`.
fn smooth(cell: &AtomicU64, sample: f64) {
    let old = f64::from_bits(cell.load(Ordering::Relaxed));
    let smoothed = if old.is_nan() {
        sample
    } else {
        old + SAMPLE_WEIGHT * (sample - old)
    };
    cell.store(smoothed.to_bits(), Ordering::Relaxed);
}

impl LoadGauge for ProcStat {
    fn busy(&self) -> Option<f64> {
        let v = f64::from_bits(self.busy.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    fn own(&self) -> Option<f64> {
        let v = f64::from_bits(self.own.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }
}

/// CPU time of this process and its live children (the sessions' ffmpeg), per process, so
/// each sample counts only what each used since the last (a child that started in between
/// counts from its start; one that exited loses at most its last interval).
#[derive(Default)]
struct ProcessTree {
    last: std::collections::HashMap<u32, u64>,
}

impl ProcessTree {
    /// Jiffies the tree used since the previous sample (all of it on the first).
    fn sample(&mut self) -> u64 {
        let me = std::process::id();
        let mut now = std::collections::HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if let Some((parent, jiffies)) = read_pid_stat(pid) {
                    if pid == me || parent == me {
                        now.insert(pid, jiffies);
                    }
                }
            }
        }
        let used = now
            .iter()
            .map(|(pid, j)| j.saturating_sub(self.last.get(pid).copied().unwrap_or(0)))
            .sum();
        self.last = now;
        used
    }
}

/// (parent pid, user + system jiffies) of process `pid`.
fn read_pid_stat(pid: u32) -> Option<(u32, u64)> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// (parent pid, user + system jiffies) from a `/proc/<pid>/stat` line: `pid (comm) state
/// ppid …`, utime and stime the 14th and 15th fields; the command name may hold spaces and
/// parentheses, so fields are counted from its last `)`.
fn parse_pid_stat(line: &str) -> Option<(u32, u64)> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3rd field) is index 0, so field n is index n - 3.
    let parent = fields.get(1)?.parse().ok()?;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((parent, user + system))
}

/// (busy, total) jiffies of all cores from `/proc/stat`'s first line.
fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat(text.lines().next()?)
}

/// (busy, total) from a `cpu  user nice system idle iowait irq softirq steal …` line.
fn parse_proc_stat(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some((busy, busy + idle))
}

/// Why there is no room now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The running sessions' planned cost leaves no room for one more.
    Sessions,
    /// The machine is too busy for one more session, beyond what its sessions are planned
    /// to take: other software (a build, a backup) has the CPU.
    Cpu,
    /// A session's encoder fell behind lately.
    Lagging,
}

impl NoRoom {
    /// The `why` label of `hls_face_sessions_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            NoRoom::Sessions => "sessions",
            NoRoom::Cpu => "cpu",
            NoRoom::Lagging => "lagging encoder",
        }
    }

    /// What the page is told.
    pub fn error_kind(self) -> app::protocol::ErrorKind {
        match self {
            NoRoom::Sessions | NoRoom::Lagging => app::protocol::ErrorKind::Busy,
            NoRoom::Cpu => app::protocol::ErrorKind::Overloaded,
        }
    }
}

/// The live admission check.
pub struct Capacity {
    gauge: Option<Arc<dyn LoadGauge>>,
    cores: f64,
    /// Busy share above which no session is admitted (1 or more: never by CPU).
    max_busy: Mutex<f64>,
    lag_until: Mutex<Option<Instant>>,
    /// Cores the running sessions are planned to use (a burst of new sessions counts
    /// before the CPU gauge sees it).
    planned: Arc<Mutex<f64>>,
    /// What sessions really cost on this host, against their plan.
    calibration: Mutex<Calibration>,
    /// Where the learned scale is kept across restarts ([`Capacity::kept_in`]).
    scale_file: Option<PathBuf>,
}

/// What the running sessions really cost against their plan, learned on this host. The
/// session shares above were measured on one host; the same code on a slower or busier host
/// of the same size (noisy neighbours on a VM) was measured at up to twice the CPU. Once the
/// plan has held steady, the CPU the sessions take (this server and its ffmpeg children;
/// where the gauge cannot tell them apart, the machine's less what it took with no session
/// running) over the cores they were planned at is the scale every plan is multiplied by:
/// on such a host fewer sessions are admitted, and they keep their frame rate.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    /// Busy share of the machine while no session ran (other software), smoothed.
    baseline: f64,
    /// Measured ÷ planned cores, smoothed; never below 1 (on a faster host the plan and the
    /// session limit stay the cap).
    scale: f64,
    /// The plan last seen, and since when it has held.
    planned: f64,
    since: Instant,
    /// The scale last written to the log.
    logged: f64,
    /// The scale last written to the scale file.
    kept: f64,
}

/// The learned scale is logged when it moved this much since it was last logged.
const LOG_STEP: f64 = 0.2;
/// ... and written to the scale file when it moved this much since it was last written.
const KEEP_STEP: f64 = 0.05;
/// The file in the runtime folder that keeps the learned scale across restarts.
const SCALE_FILE: &str = ".cost-scale";

/// One admitted session's planned cores; given back when dropped.
pub struct Reservation {
    /// The session's share without privacy.
    base: f64,
    /// The share planned now (`base`, or `base` × [`PRIVACY_COST_FACTOR`] in privacy mode).
    share: Mutex<f64>,
    planned: Arc<Mutex<f64>>,
}

impl Reservation {
    /// Re-plans the session for privacy mode switched on or off. Never refused: privacy
    /// is fail-closed, so a session that switches it on takes the room it needs and
    /// newcomers see less of it.
    pub fn plan_privacy(&self, on: bool) {
        let new = self.base * if on { PRIVACY_COST_FACTOR } else { 1.0 };
        let mut share = self.share.lock().unwrap_or_else(|p| p.into_inner());
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        *planned = (*planned - *share + new).max(0.0);
        *share = new;
    }

    /// The cores planned for the session now.
    pub fn share(&self) -> f64 {
        *self.share.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let share = self.share();
        if let Ok(mut planned) = self.planned.lock() {
            *planned = (*planned - share).max(0.0);
        }
    }
}

impl Capacity {
    /// A check against `gauge` (`None`: only lag counts) refusing at `max_busy_percent`.
    pub fn new(gauge: Option<Arc<dyn LoadGauge>>, cores: usize, max_busy_percent: u32) -> Self {
        Capacity {
            gauge,
            cores: cores.max(1) as f64,
            max_busy: Mutex::new(f64::from(max_busy_percent) / 100.0),
            lag_until: Mutex::new(None),
            planned: Arc::default(),
            calibration: Mutex::new(Calibration {
                baseline: 0.0,
                scale: 1.0,
                planned: 0.0,
                since: Instant::now(),
                logged: 1.0,
                kept: 1.0,
            }),
            scale_file: None,
        }
    }

    /// Keeps the learned scale in `dir` and starts from the one kept there: a restarted
    /// server plans its first sessions at what they cost on this host last time, instead
    /// of at the plan (a burst right after a restart on a slow host would otherwise be
    /// admitted at the plan and degrade together). A missing or unreadable file starts at
    /// the plan.
    pub fn kept_in(mut self, dir: &Path) -> Self {
        let path = dir.join(SCALE_FILE);
        let kept = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|scale| scale.is_finite());
        if let Some(scale) = kept {
            let scale = scale.clamp(1.0, MAX_SCALE);
            let c = self
                .calibration
                .get_mut()
                .unwrap_or_else(|p| p.into_inner());
            (c.scale, c.logged, c.kept) = (scale, scale, scale);
            ::metrics::gauge!(crate::metrics::SESSION_COST_SCALE).set(scale);
            if scale > 1.0 {
                tracing::info!(
                    "sessions cost {scale:.1}× their plan on this machine last time: admitting accordingly"
                );
            }
        }
        self.scale_file = Some(path);
        self
    }

    /// Compares the plan with the CPU measured every second until `shutdown` (see
    /// [`Capacity::learn`]). Without a gauge there is nothing to learn from.
    pub fn start_learning(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.gauge.is_none() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEARN_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => this.learn(Instant::now()),
                }
            }
        });
    }

    /// One comparison of the plan with the CPU measured now: with sessions planned at two or
    /// more sessions' cores, held for [`STEADY`], their real cost over their plan (the
    /// scale). Their cost is what this server and its children take, where the gauge tells
    /// it apart, so other software (a build started while sessions run) never passes for
    /// session cost; otherwise the machine's load less what it was with no session running
    /// (the baseline).
    pub fn learn(&self, now: Instant) {
        let Some(gauge) = self.gauge.as_ref() else {
            return;
        };
        let Some(busy) = gauge.busy() else {
            return;
        };
        let planned = *self.planned.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.calibration.lock().unwrap_or_else(|p| p.into_inner());
        if (planned - c.planned).abs() > ROUNDING {
            c.planned = planned;
            c.since = now;
            return;
        }
        if now.duration_since(c.since) < STEADY {
            return;
        }
        if planned <= ROUNDING {
            c.baseline += LEARN_WEIGHT * (busy - c.baseline);
        } else if planned + ROUNDING >= MIN_PLANNED_TO_LEARN {
            let used = gauge.own().unwrap_or((busy - c.baseline).max(0.0)) * self.cores;
            let sample = (used / planned).clamp(1.0, MAX_SCALE);
            c.scale += LEARN_WEIGHT * (sample - c.scale);
            ::metrics::gauge!(crate::metrics::SESSION_COST_SCALE).set(c.scale);
            if (c.scale - c.logged).abs() >= LOG_STEP {
                c.logged = c.scale;
                tracing::info!(
                    "sessions cost {:.1}× their plan on this machine: admitting accordingly",
                    c.scale
                );
            }
            if let Some(path) = self.scale_file.as_ref() {
                if (c.scale - c.kept).abs() >= KEEP_STEP {
                    c.kept = c.scale;
                    // A few bytes, rarely: written in place of the learning tick.
                    if let Err(e) = std::fs::write(path, format!("{:.3}\n", c.scale)) {
                        tracing::warn!("cannot keep the cost scale in {}: {e}", path.display());
                    }
                }
            }
        }
    }

    /// The learned scale of every session's plan (1: as planned).
    pub fn cost_scale(&self) -> f64 {
        self.calibration.lock().map_or(1.0, |c| c.scale)
    }

    /// Applies a reloaded `max-cpu-percent` to new sessions.
    pub fn set_max_busy_percent(&self, percent: u32) {
        if let Ok(mut max) = self.max_busy.lock() {
            *max = f64::from(percent) / 100.0;
        }
    }

    fn max_busy(&self) -> f64 {
        self.max_busy.lock().map_or(0.9, |m| *m)
    }

    /// A session fell behind (its encoder had no room for a frame).
    pub fn note_lag(&self) {
        if let Ok(mut until) = self.lag_until.lock() {
            *until = Some(Instant::now() + LAG_MEMORY);
        }
    }

    /// Admits one more session costing `base` cores (× [`PRIVACY_COST_FACTOR`] in privacy
    /// mode), if it fits now: no session lagging, and both the measured CPU and the planned
    /// cost of the running sessions leave room for it under the ceiling.
    pub fn reserve(&self, base: f64, privacy: bool) -> Result<Reservation, NoRoom> {
        let share = base * if privacy { PRIVACY_COST_FACTOR } else { 1.0 };
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        self.fits(*planned, share)?;
        *planned += share;
        Ok(Reservation {
            base,
            share: Mutex::new(share),
            planned: self.planned.clone(),
        })
    }

    /// Whether a session of `share` cores would be admitted now, without reserving it:
    /// what a node of a cluster answers before the WebSocket upgrade, so the proxy can try
    /// another node.
    pub fn has_room(&self, share: f64) -> Result<(), NoRoom> {
        let planned = *self.planned.lock().unwrap_or_else(|p| p.into_inner());
        self.fits(planned, share)
    }

    fn fits(&self, planned: f64, share: f64) -> Result<(), NoRoom> {
        let max_busy = self.max_busy();
        if max_busy >= 1.0 {
            return Ok(());
        }
        let lagging = self
            .lag_until
            .lock()
            .map(|u| u.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false);
        if lagging {
            return Err(NoRoom::Lagging);
        }
        let scale = self.cost_scale();
        let one_more = share * scale / self.cores;
        // The limit's own sum (14 × 0.125 = 1.75 ≤ 2 × 0.9) must fit despite float rounding.
        if planned * scale / self.cores + one_more > max_busy + ROUNDING {
            return Err(NoRoom::Sessions);
        }
        // The measured CPU counts everything, sessions too: over the ceiling while the
        // sessions' plan is not, the rest of the machine has taken the room.
        let measured = self.gauge.as_ref().and_then(|g| g.busy()).unwrap_or(0.0);
        if measured + one_more > max_busy {
            return Err(NoRoom::Cpu);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn larger_pictures_are_planned_at_their_cost() {
        use crate::source::Codec;
        assert_eq!(session_share(Codec::H264, 640, 480), SESSION_CORE_SHARE);
        assert_eq!(
            session_share(Codec::H264, 320, 240),
            SESSION_CORE_SHARE,
            "never less"
        );
        let full_hd = session_share(Codec::H264, 1920, 1080);
        assert!(
            (full_hd - SESSION_CORE_SHARE * (0.3 + 0.7 * 6.75)).abs() < 1e-9,
            "{full_hd}"
        );
        // Two cores plan 1.8: two 1080p sessions fit, a third does not.
        assert!(2.0 * full_hd < 1.8 && 3.0 * full_hd > 1.8);
        assert!(session_share(Codec::Vp9, 1280, 720) > session_share(Codec::H264, 1280, 720));
    }

    struct Fixed(f64);
    impl LoadGauge for Fixed {
        fn busy(&self) -> Option<f64> {
            Some(self.0)
        }
    }

    #[test]
    fn the_limit_follows_the_cores() {
        assert_eq!(default_max_sessions(2), 14);
        assert_eq!(default_max_sessions(8), 57);
        assert_eq!(default_max_sessions(1), 7);
    }

    #[test]
    fn one_more_session_must_fit_under_the_cpu_ceiling() {
        // 2 cores at 90 %: a 0.4-core session is 0.2 of the machine.
        let room = |busy| {
            Capacity::new(Some(Arc::new(Fixed(busy))), 2, 90)
                .reserve(0.4, false)
                .map(|_| ())
        };
        assert_eq!(room(0.5), Ok(()));
        assert_eq!(room(0.69), Ok(()));
        assert_eq!(room(0.75), Err(NoRoom::Cpu), "other software took the CPU");
        let off = Capacity::new(Some(Arc::new(Fixed(1.0))), 2, 100);
        assert!(off.reserve(0.4, false).is_ok(), "100 % turns the check off");
    }

    #[test]
    fn asking_for_room_reserves_nothing() {
        let c = Capacity::new(Some(Arc::new(Fixed(0.0))), 2, 90);
        for _ in 0..10 {
            assert_eq!(c.has_room(0.4), Ok(()));
        }
        let held: Vec<_> = (0..4).map(|_| c.reserve(0.4, false).unwrap()).collect();
        assert_eq!(
            c.has_room(0.4),
            Err(NoRoom::Sessions),
            "1.6 + 0.4 cores > 1.8"
        );
        drop(held);
        assert_eq!(c.has_room(0.4), Ok(()));
    }

    #[test]
    fn the_default_limit_fits_the_plan_exactly() {
        // As many sessions as the limit allows are admitted by the plan too.
        let c = Capacity::new(Some(Arc::new(Fixed(0.0))), 2, 90);
        let n = default_max_sessions(2);
        let held: Vec<_> = (0..n)
            .map(|_| {
                c.reserve(SESSION_CORE_SHARE, false)
                    .expect("within the limit")
            })
            .collect();
        assert_eq!(
            c.reserve(SESSION_CORE_SHARE, false).err(),
            Some(NoRoom::Sessions)
        );
        drop(held);
    }

    #[test]
    fn a_burst_counts_before_the_gauge_sees_it() {
        // An idle machine: only the planned cost of admitted sessions stops the burst.
        let c = Capacity::new(Some(Arc::new(Fixed(0.0))), 2, 90);
        let held: Vec<_> = (0..7).map(|_| c.reserve(0.24, false).unwrap()).collect();
        assert_eq!(
            c.reserve(0.24, false).err(),
            Some(NoRoom::Sessions),
            "7 × 0.24 + 0.24 > 1.8"
        );
        drop(held);
        assert!(
            c.reserve(0.24, false).is_ok(),
            "given back when sessions end"
        );
    }

    #[test]
    fn a_refusal_names_its_cause_and_the_page_hears_the_truth() {
        use app::protocol::ErrorKind;
        // A build takes 80 % of an idle server's machine: not "busy with other sessions".
        let build = Capacity::new(Some(Arc::new(Fixed(0.8))), 2, 90);
        let why = build.reserve(0.24, false).err().unwrap();
        assert_eq!((why, why.label()), (NoRoom::Cpu, "cpu"));
        assert_eq!(why.error_kind(), ErrorKind::Overloaded);
        // Sessions fill the plan: busy with other sessions.
        let full = Capacity::new(Some(Arc::new(Fixed(0.0))), 1, 90);
        let _held: Vec<_> = (0..3).map(|_| full.reserve(0.24, false).unwrap()).collect();
        let why = full.reserve(0.24, false).err().unwrap();
        assert_eq!(
            (why.label(), why.error_kind()),
            ("sessions", ErrorKind::Busy)
        );
        assert_eq!(NoRoom::Lagging.label(), "lagging encoder");
    }

    #[test]
    fn privacy_is_planned_at_its_cost_and_re_planned_when_switched() {
        // 2 cores at 90 %: 1.8 cores to plan.
        let c = Capacity::new(None, 2, 90);
        let a = c.reserve(0.5, true).unwrap();
        assert!((a.share() - 0.5 * PRIVACY_COST_FACTOR).abs() < 1e-9);
        assert!((a.share() - 0.8).abs() < 1e-9);
        let b = c.reserve(0.5, false).unwrap();
        // 0.8 + 0.5 + 0.5 = 1.8 fits; switching b to privacy too leaves no room for it.
        assert!(c.has_room(0.5).is_ok());
        b.plan_privacy(true);
        assert_eq!(c.has_room(0.5), Err(NoRoom::Sessions));
        assert!(c.has_room(0.2).is_ok(), "0.8 + 0.8 + 0.2 = 1.8");
        b.plan_privacy(false);
        assert!(c.has_room(0.5).is_ok());
        drop((a, b));
        assert!(c.has_room(1.8).is_ok(), "everything given back");
    }

    /// A gauge the test moves.
    #[derive(Default)]
    struct Moving(Mutex<f64>);
    impl LoadGauge for Moving {
        fn busy(&self) -> Option<f64> {
            Some(*self.0.lock().unwrap())
        }
    }

    /// `n` sessions admitted at the default share.
    fn sessions(c: &Capacity, n: usize) -> Vec<Reservation> {
        (0..n)
            .map(|_| c.reserve(SESSION_CORE_SHARE, false).unwrap())
            .collect()
    }

    /// Runs `learn` once a second for `secs` seconds from `t`; returns the time reached.
    fn learn_for(c: &Capacity, t: Instant, secs: u64) -> Instant {
        for s in 1..=secs {
            c.learn(t + Duration::from_secs(s));
        }
        t + Duration::from_secs(secs)
    }

    #[test]
    fn sessions_that_cost_more_than_planned_shrink_the_room() {
        // 2 cores at 90 %. Other software takes 10 % while no session runs.
        let gauge = Arc::new(Moving::default());
        *gauge.0.lock().unwrap() = 0.1;
        let c = Capacity::new(Some(gauge.clone()), 2, 90);
        let t = learn_for(&c, Instant::now(), 40);
        // 6 sessions planned at 0.125 (0.75 cores) really take 1.35 cores on this host:
        // 0.1 + 1.35 / 2 = 0.775 of the machine. The plan alone would admit 8 more.
        let held = sessions(&c, 6);
        *gauge.0.lock().unwrap() = 0.775;
        // Nothing is learned before the plan has held steady.
        let early = learn_for(&c, t, 5);
        assert_eq!(c.cost_scale(), 1.0);
        learn_for(&c, early, 40);
        assert!((c.cost_scale() - 1.8).abs() < 0.02, "{}", c.cost_scale());
        // 0.9 × 2 cores hold 1.8 / (1.8 × 0.125) = 8 sessions on this host: 2 more, not 8.
        let more = sessions(&c, 2);
        assert_eq!(
            c.has_room(SESSION_CORE_SHARE),
            Err(NoRoom::Sessions),
            "the sessions' real cost fills the machine"
        );
        drop((held, more));
        assert_eq!(c.has_room(SESSION_CORE_SHARE), Ok(()), "given back");
    }

    #[test]
    fn a_restarted_server_starts_from_the_scale_it_learned() {
        let dir = std::env::temp_dir().join(format!("hls-face-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gauge = Arc::new(Moving::default());
        let c = Capacity::new(Some(gauge.clone()), 2, 90).kept_in(&dir);
        assert_eq!(c.cost_scale(), 1.0, "nothing kept yet: the plan");
        let t = learn_for(&c, Instant::now(), 10);
        let held = sessions(&c, 6);
        // 6 sessions (0.75 cores planned) take 1.5 cores.
        *gauge.0.lock().unwrap() = 0.75;
        learn_for(&c, t, 60);
        assert!((c.cost_scale() - 2.0).abs() < 0.03, "{}", c.cost_scale());
        drop((held, c));
        // The next server on this host admits 7 sessions at once, not 14.
        let again = Capacity::new(Some(Arc::new(Fixed(0.0))), 2, 90).kept_in(&dir);
        assert!(
            (again.cost_scale() - 2.0).abs() < 0.06,
            "{}",
            again.cost_scale()
        );
        let first = sessions(&again, 7);
        assert_eq!(again.has_room(SESSION_CORE_SHARE), Err(NoRoom::Sessions));
        drop(first);
        // A file that does not hold a number, or one out of range, is not trusted.
        for text in ["fast\n", "NaN", "-4", "1e9"] {
            std::fs::write(dir.join(SCALE_FILE), text).unwrap();
            let c = Capacity::new(None, 2, 90).kept_in(&dir);
            assert!(
                (1.0..=MAX_SCALE).contains(&c.cost_scale()),
                "{text}: {}",
                c.cost_scale()
            );
        }
        std::fs::write(dir.join(SCALE_FILE), "fast").unwrap();
        assert_eq!(Capacity::new(None, 2, 90).kept_in(&dir).cost_scale(), 1.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_host_as_fast_as_the_plan_keeps_the_plan() {
        let gauge = Arc::new(Moving::default());
        let c = Capacity::new(Some(gauge.clone()), 2, 90);
        let t = learn_for(&c, Instant::now(), 10);
        // One session is too little to learn from, whatever it seems to cost.
        let one = c.reserve(SESSION_CORE_SHARE, false).unwrap();
        *gauge.0.lock().unwrap() = 0.3;
        let t = learn_for(&c, t, 30);
        assert_eq!(c.cost_scale(), 1.0);
        // Four sessions costing less than planned: the scale stays 1, never below.
        let three = sessions(&c, 3);
        *gauge.0.lock().unwrap() = 0.2;
        learn_for(&c, t, 30);
        assert_eq!(c.cost_scale(), 1.0);
        drop((one, three));
    }

    #[test]
    fn a_lagging_session_refuses_newcomers_for_a_while() {
        let c = Capacity::new(Some(Arc::new(Fixed(0.0))), 2, 90);
        assert!(c.reserve(0.2, false).is_ok());
        c.note_lag();
        assert_eq!(c.reserve(0.2, false).err(), Some(NoRoom::Lagging));
    }

    /// A gauge that tells the server's own share apart from the machine's.
    #[derive(Default)]
    struct Split(Mutex<(f64, f64)>);
    impl LoadGauge for Split {
        fn busy(&self) -> Option<f64> {
            Some(self.0.lock().unwrap().0)
        }
        fn own(&self) -> Option<f64> {
            Some(self.0.lock().unwrap().1)
        }
    }

    #[test]
    fn software_started_beside_running_sessions_is_not_taken_for_their_cost() {
        let gauge = Arc::new(Split::default());
        let c = Capacity::new(Some(gauge.clone()), 2, 90);
        let t = learn_for(&c, Instant::now(), 10);
        // 6 sessions planned at 0.75 cores take 0.8 cores (the server and its ffmpeg
        // children: 0.4 of the machine); then a build takes most of what is left.
        let held = sessions(&c, 6);
        *gauge.0.lock().unwrap() = (0.88, 0.4);
        learn_for(&c, t, 60);
        assert!(
            (c.cost_scale() - 0.8 / 0.75).abs() < 0.02,
            "the sessions' own cost: {}",
            c.cost_scale()
        );
        // The plan has room; the machine has not, and the page hears why.
        assert_eq!(c.has_room(SESSION_CORE_SHARE), Err(NoRoom::Cpu));
        drop(held);
    }

    #[test]
    fn process_stat_lines_are_read() {
        let line = "4242 (ffmpeg (x) y) S 17 4242 4242 0 -1 4194304 500 0 0 0 120 30 0 0 20 0 3";
        assert_eq!(parse_pid_stat(line), Some((17, 150)));
        assert_eq!(parse_pid_stat("4242 (ffmpeg) S 17"), None);
        let (parent, _) = read_pid_stat(std::process::id()).expect("this process");
        assert_eq!(parent, std::os::unix::process::parent_id());
        // The tree counts this process: a busy loop shows up in its next sample.
        let mut tree = ProcessTree::default();
        tree.sample();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(tree.sample() > 0, "{x}");
    }

    #[test]
    fn proc_stat_lines_are_read() {
        assert_eq!(
            parse_proc_stat("cpu  100 5 50 800 20 3 2 0 0 0"),
            Some((160, 980))
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_proc_stat("cpu 1 2"), None);
        assert!(read_proc_stat().is_some());
    }
}
