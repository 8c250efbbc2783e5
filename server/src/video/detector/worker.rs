//! The detector threads: a [`DetectorPool`] of threads, each with its own detector, serving
//! the sessions registered with it. Each session is a lane with a one-frame mailbox
//! (newest frame wins, older ones are skipped and counted), its own rate cap and its own
//! settings, and publishes its latest result on a watch channel. A pool shared by every
//! session holds one detector per thread instead of one per session (CenterFace: ~13 MB
//! each); a stateful detector (Haar scanning regions of interest) gets a pool of its own.

use super::{DetectorFactory, FaceDetector};
use crate::error::ServerError;
use crate::metrics;
use crate::video::detector::Tuning;
use crate::video::frame::{FaceBox, Frame, FramePool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The latest detection result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    /// Number of the frame the faces were found in (as given to [`DetectorWorker::offer`]).
    pub seq: u64,
    /// Faces found.
    pub boxes: Vec<FaceBox>,
    /// Faint candidates (hidden in privacy mode, not boxed).
    pub faint: Vec<FaceBox>,
    /// How long the detection took, in milliseconds.
    pub millis: f32,
}

/// Counters of one session's detections.
#[derive(Debug, Default)]
pub struct DetectorCounters {
    /// Detections run.
    pub runs: AtomicU64,
    /// Frames replaced in the slot before the detector took them.
    pub skipped: AtomicU64,
}

/// What a lane's detections go to: fixed for the lane's life.
struct LaneOut {
    tx: watch::Sender<Detection>,
    counters: Arc<DetectorCounters>,
    /// The session's frame buffers (a detected frame's buffer goes back to it).
    frames: FramePool,
    settings: watch::Receiver<Tuning>,
    min_interval: Duration,
}

/// One session's place on the board.
struct Lane {
    id: u64,
    /// The newest frame not yet taken, with its number.
    frame: Option<(u64, Frame)>,
    /// When the unread frame (or the one it replaced) arrived: the longest-waiting lane
    /// goes first.
    since: Instant,
    /// Detect the pending frame without waiting out the rate cap (a scene cut: nothing is
    /// known about the new shot's faces).
    urgent: bool,
    /// While the flag is set, the rate cap is this shorter interval instead (privacy
    /// mode: each frame waits for a detection at or after it, and no face moves far
    /// between two detections).
    privacy: Option<(Arc<AtomicBool>, Duration)>,
    /// When its last detection was taken (the rate cap counts from it; none yet: the
    /// first frame goes at once).
    taken: Option<Instant>,
    /// A thread is detecting one of its frames (a lane's detections never overlap, so its
    /// results come in order).
    busy: bool,
    out: Arc<LaneOut>,
}

impl Lane {
    /// Whether its pending frame may be taken now.
    fn due(&self, now: Instant) -> bool {
        self.frame.is_some()
            && !self.busy
            && (self.urgent || self.not_before().is_none_or(|at| now >= at))
    }

    /// No detection before this (the rate cap in force: privacy mode's while it is on).
    fn not_before(&self) -> Option<Instant> {
        let interval = match &self.privacy {
            Some((on, interval)) if on.load(Ordering::Relaxed) => *interval,
            _ => self.out.min_interval,
        };
        self.taken.map(|t| t + interval)
    }
}

#[derive(Default)]
struct BoardState {
    lanes: Vec<Lane>,
    next_id: u64,
    closed: bool,
}

/// The lanes of a pool and the condition its threads wait on.
#[derive(Default)]
struct Board {
    state: Mutex<BoardState>,
    wake: Condvar,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a pool's threads have their detectors.
#[derive(Debug, Clone, PartialEq)]
enum Readiness {
    Starting,
    Ready,
    Failed(String),
}

/// Threads with a detector each, serving the lanes on their board. Dropping the pool (when
/// the settings and every session that uses it let go) stops and joins its threads.
pub struct DetectorPool {
    board: Arc<Board>,
    ready: watch::Receiver<Readiness>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DetectorPool {
    /// Starts `threads` threads named `name-N`, each making its detector with `factory` and
    /// warming it up. The pool is ready once one has its detector, failed once all failed.
    pub fn new(factory: DetectorFactory, threads: usize, name: &str) -> Result<Self, ServerError> {
        let board = Arc::new(Board::default());
        let (ready_tx, ready) = watch::channel(Readiness::Starting);
        let ready_tx = Arc::new(ready_tx);
        let failures = Arc::new(AtomicU64::new(0));
        let threads = threads.max(1);
        let span = tracing::Span::current();
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads {
            let (lanes, factory, ready_tx, failures, span) = (
                board.clone(),
                factory.clone(),
                ready_tx.clone(),
                failures.clone(),
                span.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    let _enter = span.enter();
                    lower_priority();
                    match factory() {
                        Ok(mut detector) => {
                            warm_up(detector.as_mut());
                            ready_tx.send_replace(Readiness::Ready);
                            serve(detector.as_mut(), &lanes);
                        }
                        Err(e) => {
                            tracing::error!("a detector thread could not make its detector: {e}");
                            if failures.fetch_add(1, Ordering::Relaxed) + 1 == threads as u64 {
                                ready_tx.send_replace(Readiness::Failed(e.to_string()));
                            }
                        }
                    }
                })
                .map_err(|source| ServerError::Thread {
                    what: "a detector thread",
                    source,
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // The threads started so far end with the pool.
                    drop(DetectorPool {
                        board,
                        ready,
                        threads: handles,
                    });
                    return Err(e);
                }
            }
        }
        Ok(DetectorPool {
            board,
            ready,
            threads: handles,
        })
    }

    /// Waits (without holding an async thread) until a thread has its detector; the
    /// factory's error if none could make one.
    async fn until_ready(&self) -> Result<(), ServerError> {
        let mut ready = self.ready.clone();
        let state = ready
            .wait_for(|r| *r != Readiness::Starting)
            .await
            .map(|r| r.clone())
            .map_err(|_| ServerError::Detector("detector threads ended".into()))?;
        match state {
            Readiness::Failed(why) => Err(ServerError::Detector(why)),
            _ => Ok(()),
        }
    }

    /// The same, blocking this thread (unit tests outside a runtime).
    #[cfg(test)]
    fn until_ready_blocking(&self) -> Result<(), ServerError> {
        let mut ready = self.ready.clone();
        loop {
            match ready.borrow_and_update().clone() {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why) => return Err(ServerError::Detector(why)),
                Readiness::Starting => {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sessions with a lane now.
    pub fn lanes(&self) -> usize {
        self.board.lock().lanes.len()
    }

    fn add_lane(&self, out: Arc<LaneOut>) -> u64 {
        let mut state = self.board.lock();
        let id = state.next_id;
        state.next_id += 1;
        let now = Instant::now();
        state.lanes.push(Lane {
            id,
            frame: None,
            since: now,
            urgent: false,
            privacy: None,
            taken: None,
            busy: false,
            out,
        });
        id
    }
}

impl Drop for DetectorPool {
    fn drop(&mut self) {
        self.board.lock().closed = true;
        self.board.wake.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One session's detections: its lane on a pool (shared, or its own). Dropping it takes
/// the lane off the board (and stops a pool of its own).
pub struct DetectorWorker {
    pool: Arc<DetectorPool>,
    lane: u64,
    out: Arc<LaneOut>,
    results: watch::Receiver<Detection>,
}

impl DetectorWorker {
    /// [`DetectorWorker::started`] for unit tests outside an async runtime: waits by
    /// blocking this thread.
    #[cfg(test)]
    pub fn start(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        frames: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        let pool = Arc::new(DetectorPool::new(factory, 1, &name)?);
        pool.until_ready_blocking()?;
        Ok(Self::lane_on(pool, min_interval, frames, settings))
    }

    /// A lane on a pool of its own: one thread with a detector made by `factory` (the
    /// model loads in ~0.1 s), for a detector that keeps state between frames. Awaits the
    /// detector without holding an async thread; a factory failure is returned here,
    /// before any frame flows.
    pub async fn started(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        frames: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        let pool = Arc::new(DetectorPool::new(factory, 1, &name)?);
        Self::on(pool, min_interval, frames, settings).await
    }

    /// A lane on `pool` (shared with other sessions), once the pool has a detector.
    pub async fn on(
        pool: Arc<DetectorPool>,
        min_interval: Duration,
        frames: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        pool.until_ready().await?;
        Ok(Self::lane_on(pool, min_interval, frames, settings))
    }

    /// [`DetectorWorker::on`] for unit tests outside an async runtime.
    #[cfg(test)]
    pub fn on_blocking(
        pool: Arc<DetectorPool>,
        min_interval: Duration,
        frames: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        pool.until_ready_blocking()?;
        Ok(Self::lane_on(pool, min_interval, frames, settings))
    }

    fn lane_on(
        pool: Arc<DetectorPool>,
        min_interval: Duration,
        frames: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Self {
        let (tx, results) = watch::channel(Detection::default());
        let out = Arc::new(LaneOut {
            tx,
            counters: Arc::default(),
            frames,
            settings,
            min_interval,
        });
        let lane = pool.add_lane(out.clone());
        DetectorWorker {
            pool,
            lane,
            out,
            results,
        }
    }

    /// Runs `f` on this session's lane (`None` once the pool closed).
    fn with_lane<T>(&self, f: impl FnOnce(&mut Lane) -> T) -> Option<T> {
        let mut state = self.pool.board.lock();
        state.lanes.iter_mut().find(|l| l.id == self.lane).map(f)
    }

    fn skipped(&self) {
        self.out.counters.skipped.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::FRAMES_DROPPED, "stage" => "detect").increment(1);
    }

    /// Hands frame number `seq` to the detector; an unread older frame is dropped
    /// (counted). An `urgent` frame (the first of a new shot) skips the rate cap and is
    /// not replaced: the frames after it wait for it instead.
    pub fn offer(&self, frame: &Frame, seq: u64, urgent: bool) {
        let frames = &self.out.frames;
        let replaced = self.with_lane(|lane| {
            if lane.urgent && lane.frame.is_some() {
                return true;
            }
            lane.urgent |= urgent;
            match &mut lane.frame {
                Some((pending_seq, pending)) => {
                    *pending_seq = seq;
                    // Reuse the unread frame's buffer rather than allocating.
                    pending.data.clear();
                    pending.data.extend_from_slice(&frame.data);
                    pending.width = frame.width;
                    pending.height = frame.height;
                    true
                }
                None => {
                    lane.frame = Some((seq, frame.copy_in(frames)));
                    lane.since = Instant::now();
                    false
                }
            }
        });
        if replaced == Some(true) {
            self.skipped();
        }
        self.pool.board.wake.notify_one();
    }

    /// While `flag` is set (privacy mode), detects up to once per `interval` instead of
    /// at the session's own rate.
    pub fn privacy_rate_while(&self, flag: Arc<AtomicBool>, interval: Duration) {
        self.with_lane(|lane| lane.privacy = Some((flag, interval)));
        self.pool.board.wake.notify_all();
    }

    /// The latest published detection.
    pub fn latest(&self) -> Detection {
        self.results.borrow().clone()
    }

    /// A receiver that wakes when a detection is published.
    pub fn subscribe(&self) -> watch::Receiver<Detection> {
        self.results.clone()
    }

    /// The session's detection counters.
    pub fn counters(&self) -> &Arc<DetectorCounters> {
        &self.out.counters
    }
}

impl Drop for DetectorWorker {
    fn drop(&mut self) {
        self.pool.board.lock().lanes.retain(|l| l.id != self.lane);
        // A pool of its own stops here (its last reference), joining its thread.
    }
}

/// How much lower than the rest of the server the detector threads run (Linux `nice`).
/// Decoding, the frame path and encoding must keep real time; a detection is best effort
/// (the follower carries the newest one's faces, privacy mode hides a frame whole when
/// its detection is too old). When the machine is short of CPU, detections come later
/// instead of frames being dropped.
pub const DETECTOR_NICE: i32 = 5;

/// Gives the calling thread [`DETECTOR_NICE`] (a thread's own nice value on Linux).
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority on this thread's id only changes
    // its scheduling weight.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, DETECTOR_NICE)
    };
    if done != 0 {
        tracing::debug!(
            "detector thread keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The frame size the detector warms up on (a 4:3 camera's; another size costs the network
/// a second allocation, no more).
const WARM_UP: (u32, u32) = (640, 480);

/// A network's first run allocates its layers (CenterFace: ~0.1 s more than a normal
/// detection). Run it while the pool starts, so a session's first detection — which its
/// first boxes wait for — is a normal one. Its result is not published.
fn warm_up(detector: &mut dyn FaceDetector) {
    let _ = detector.detect(&Frame::filled(WARM_UP.0, WARM_UP.1, [128, 128, 128]));
}

/// Takes the frame of the lane that is due and has waited longest, marking the lane busy;
/// waits while none is due. `None` once the pool closed.
fn next_job(board: &Board) -> Option<(u64, u64, Frame, Arc<LaneOut>)> {
    let mut state = board.lock();
    loop {
        if state.closed {
            return None;
        }
        let now = Instant::now();
        let pick = state
            .lanes
            .iter_mut()
            .filter(|l| l.due(now))
            .min_by_key(|l| l.since);
        // (A due lane has a frame.)
        if let Some((lane, (seq, frame))) = pick.and_then(|l| l.frame.take().map(|f| (l, f))) {
            lane.urgent = false;
            lane.busy = true;
            lane.taken = Some(now);
            return Some((lane.id, seq, frame, lane.out.clone()));
        }
        // Rate caps: wake when the first capped frame may go (frames arriving meanwhile
        // replace each other), or when told.
        let first = state
            .lanes
            .iter()
            .filter(|l| l.frame.is_some() && !l.busy)
            .map(|l| l.not_before().unwrap_or(now))
            .min();
        state = match first {
            Some(at) => {
                board
                    .wake
                    .wait_timeout(state, at.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => board.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// A pool thread: detects the lanes' frames until the pool closes.
fn serve(detector: &mut dyn FaceDetector, board: &Board) {
    let mut configured: Option<Tuning> = None;
    while let Some((lane, seq, frame, out)) = next_job(board) {
        // The lane's settings (the page may change them live; lanes differ).
        let tuning = *out.settings.borrow();
        if configured != Some(tuning) {
            detector.configure(&tuning);
            configured = Some(tuning);
        }
        let started = Instant::now();
        match detector.detect_all(&frame) {
            Ok(found) => {
                let took = started.elapsed();
                ::metrics::counter!(metrics::FRAMES, "stage" => "detect").increment(1);
                ::metrics::histogram!(metrics::DETECT_SECONDS).record(took.as_secs_f64());
                let _ = out.tx.send(Detection {
                    seq,
                    boxes: found.sure,
                    faint: found.faint,
                    millis: took.as_secs_f32() * 1000.0,
                });
                // Counted after publishing, so a reader that sees the count sees the result.
                out.counters.runs.fetch_add(1, Ordering::Relaxed);
            }
            // Nothing is published: frames waiting on this detection leave at their
            // deadline, and privacy mode hides what no detection covered.
            Err(e) => tracing::warn!("face detection failed: {e}"),
        }
        out.frames.give(frame.data);
        if let Some(l) = board.lock().lanes.iter_mut().find(|l| l.id == lane) {
            l.busy = false;
        }
        board.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings that never change.
    fn no_settings() -> watch::Receiver<Tuning> {
        watch::channel(Tuning::default()).1
    }

    /// Reports one box per call whose x is the frame's first byte and whose width is the
    /// configured smallest face, after a delay.
    struct Marker(Duration, u32);
    impl FaceDetector for Marker {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            std::thread::sleep(self.0);
            Ok(vec![FaceBox {
                x: frame.data[0] as i32,
                y: 0,
                width: self.1 as i32,
                height: 1,
            }])
        }

        fn configure(&mut self, settings: &Tuning) {
            self.1 = settings.min_face;
        }
    }

    fn wait_for(worker: &DetectorWorker, pred: impl Fn(&Detection) -> bool) -> Detection {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = worker.latest();
            if pred(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "detector never produced the expected result"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn newest_frame_wins_and_skips_are_counted() {
        let factory: DetectorFactory =
            Arc::new(
                || Ok(Box::new(Marker(Duration::from_millis(50), 0)) as Box<dyn FaceDetector>),
            );
        let worker = DetectorWorker::start(
            factory,
            "test-detector".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        for i in 1..=20u8 {
            worker.offer(&Frame::filled(4, 4, [i, 0, 0]), u64::from(i), false);
        }
        let d = wait_for(&worker, |d| d.boxes.first().map(|b| b.x) == Some(20));
        assert_eq!(d.boxes.len(), 1);
        let c = worker.counters().clone();
        let total = || c.runs.load(Ordering::Relaxed) + c.skipped.load(Ordering::Relaxed);
        wait_for(&worker, |_| total() >= 20);
        let runs = c.runs.load(Ordering::Relaxed);
        let skipped = c.skipped.load(Ordering::Relaxed);
        assert!(
            runs < 20,
            "the slow detector should not have seen every frame ({runs})"
        );
        assert_eq!(
            runs + skipped,
            20,
            "every frame is either detected or counted as skipped"
        );
    }

    #[test]
    fn detections_are_capped_at_the_configured_rate() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        let interval = Duration::from_millis(200);
        let worker = DetectorWorker::start(
            factory,
            "capped".into(),
            interval,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        let started = Instant::now();
        for i in 1..=3u8 {
            let runs = worker.counters().runs.load(Ordering::Relaxed);
            worker.offer(&Frame::filled(2, 2, [i, 0, 0]), u64::from(i), false);
            wait_for(&worker, |_| {
                worker.counters().runs.load(Ordering::Relaxed) > runs
            });
        }
        // Three detections need at least two full intervals between them.
        assert!(started.elapsed() >= interval * 2, "{:?}", started.elapsed());
    }

    #[test]
    fn results_carry_their_frame_number_and_urgent_frames_skip_the_rate_cap() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        // An interval far beyond the test's deadline: only urgency can get a second run.
        let worker = DetectorWorker::start(
            factory,
            "urgent".into(),
            Duration::from_secs(3600),
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        worker.offer(&Frame::filled(2, 2, [7, 0, 0]), 70, false);
        let first = wait_for(&worker, |d| d.seq == 70);
        assert_eq!(first.boxes[0].x, 7);
        worker.offer(&Frame::filled(2, 2, [8, 0, 0]), 80, true);
        let second = wait_for(&worker, |d| d.seq == 80);
        assert_eq!(second.boxes[0].x, 8);
    }

    #[test]
    fn an_urgent_frame_is_not_replaced_by_newer_ones() {
        let factory: DetectorFactory = Arc::new(|| {
            Ok(Box::new(Marker(Duration::from_millis(100), 0)) as Box<dyn FaceDetector>)
        });
        let worker = DetectorWorker::start(
            factory,
            "sticky".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        worker.offer(&Frame::filled(2, 2, [1, 0, 0]), 1, false);
        // While frame 1 waits or is detected (100 ms), the first frame of a new shot
        // arrives, then a newer frame: the new shot's first frame is detected next.
        worker.offer(&Frame::filled(2, 2, [2, 0, 0]), 2, true);
        worker.offer(&Frame::filled(2, 2, [3, 0, 0]), 3, false);
        let d = wait_for(&worker, |d| d.seq >= 2);
        assert_eq!((d.seq, d.boxes[0].x), (2, 2));
    }

    #[test]
    fn settings_changed_live_apply_from_the_next_detection() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        let (tx, rx) = watch::channel(Tuning::default());
        let worker = DetectorWorker::start(
            factory,
            "tuned".into(),
            Duration::ZERO,
            FramePool::default(),
            rx,
        )
        .unwrap();
        let detect = |v: u8| {
            let runs = worker.counters().runs.load(Ordering::Relaxed);
            worker.offer(&Frame::filled(2, 2, [v, 0, 0]), u64::from(v), false);
            wait_for(&worker, |_| {
                worker.counters().runs.load(Ordering::Relaxed) > runs
            })
        };
        let first = detect(1);
        assert_eq!(
            first.boxes[0].width,
            Tuning::default().min_face as i32,
            "the initial settings are applied"
        );
        tx.send_replace(Tuning {
            min_face: 200,
            ..Default::default()
        });
        let next = detect(2);
        assert_eq!(next.boxes[0].width, 200);
    }

    #[test]
    fn a_failing_factory_is_reported_at_start() {
        let factory: DetectorFactory = Arc::new(|| Err(ServerError::Detector("no model".into())));
        assert!(DetectorWorker::start(
            factory,
            "bad".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .is_err());
    }

    fn marker_pool(delay: Duration, threads: usize) -> Arc<DetectorPool> {
        let factory: DetectorFactory =
            Arc::new(move || Ok(Box::new(Marker(delay, 0)) as Box<dyn FaceDetector>));
        Arc::new(DetectorPool::new(factory, threads, "shared-test").unwrap())
    }

    fn tuned(min_face: u32) -> watch::Receiver<Tuning> {
        watch::channel(Tuning {
            min_face,
            ..Default::default()
        })
        .1
    }

    #[test]
    fn sessions_on_one_shared_thread_get_their_own_results_and_settings() {
        let pool = marker_pool(Duration::ZERO, 1);
        let a = DetectorWorker::on_blocking(
            pool.clone(),
            Duration::ZERO,
            FramePool::default(),
            tuned(20),
        )
        .unwrap();
        let b = DetectorWorker::on_blocking(
            pool.clone(),
            Duration::ZERO,
            FramePool::default(),
            tuned(30),
        )
        .unwrap();
        assert_eq!(pool.lanes(), 2);
        for i in 1..=5u8 {
            a.offer(&Frame::filled(2, 2, [i, 0, 0]), u64::from(i), false);
            b.offer(&Frame::filled(2, 2, [100 + i, 0, 0]), u64::from(i), false);
        }
        let da = wait_for(&a, |d| d.seq == 5);
        let db = wait_for(&b, |d| d.seq == 5);
        // Each lane's frame and settings, though one detector served both in turn.
        assert_eq!((da.boxes[0].x, da.boxes[0].width), (5, 20));
        assert_eq!((db.boxes[0].x, db.boxes[0].width), (105, 30));
        drop(a);
        assert_eq!(pool.lanes(), 1, "a session that ends leaves the board");
        drop(b);
        assert_eq!(pool.lanes(), 0);
    }

    #[test]
    fn a_privacy_session_does_not_starve_a_capped_one() {
        // One thread, 5 ms a detection. A privacy session always has a frame waiting (at
        // its rate, here as fast as the detector goes); a boxed session asks for 10
        // detections a second beside it and must keep getting them.
        let pool = marker_pool(Duration::from_millis(5), 1);
        let private = DetectorWorker::on_blocking(
            pool.clone(),
            Duration::from_secs(3600),
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        private.privacy_rate_while(Arc::new(AtomicBool::new(true)), Duration::ZERO);
        let boxed = DetectorWorker::on_blocking(
            pool.clone(),
            Duration::from_millis(100),
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seq = 0;
        while boxed.counters().runs.load(Ordering::Relaxed) < 5 {
            assert!(Instant::now() < deadline, "the capped session was starved");
            seq += 1;
            private.offer(&Frame::filled(2, 2, [1, 0, 0]), seq, false);
            boxed.offer(&Frame::filled(2, 2, [2, 0, 0]), seq, false);
            // Offer again once the privacy frame was taken (it never waits long).
            while private.counters().runs.load(Ordering::Relaxed)
                + private.counters().skipped.load(Ordering::Relaxed)
                < seq
            {
                std::thread::yield_now();
            }
        }
        let private_runs = private.counters().runs.load(Ordering::Relaxed);
        assert!(
            private_runs > 5,
            "privacy ran at its own rate: {private_runs}"
        );
    }

    #[test]
    fn privacy_mode_detects_at_its_own_rate_while_it_is_on() {
        // A session capped at one detection an hour; privacy asks for one every 20 ms.
        let pool = marker_pool(Duration::ZERO, 1);
        let worker = DetectorWorker::on_blocking(
            pool,
            Duration::from_secs(3600),
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        let on = Arc::new(AtomicBool::new(true));
        worker.privacy_rate_while(on.clone(), Duration::from_millis(20));
        let runs = || worker.counters().runs.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut seq = 0;
        while runs() < 4 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "privacy's rate did not apply"
            );
            seq += 1;
            worker.offer(&Frame::filled(2, 2, [1, 0, 0]), seq, false);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Four detections need three intervals between them.
        assert!(started.elapsed() >= Duration::from_millis(60));
        // Off again: the session's own cap (an hour) holds.
        on.store(false, Ordering::Relaxed);
        let before = runs();
        for _ in 0..20 {
            seq += 1;
            worker.offer(&Frame::filled(2, 2, [1, 0, 0]), seq, false);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(runs(), before, "no detection at the session's own rate");
    }

    /// Waits inside each detection (but the warm-up's) until `peers` detections run at
    /// once or 5 s pass, and records the most that ran at once.
    struct Meeting {
        inside: Arc<AtomicU64>,
        most: Arc<AtomicU64>,
        peers: u64,
    }
    impl FaceDetector for Meeting {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            if frame.width == WARM_UP.0 {
                return Ok(Vec::new());
            }
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.inside.load(Ordering::SeqCst) < self.peers && Instant::now() < deadline {
                std::thread::yield_now();
            }
            self.most
                .fetch_max(self.inside.load(Ordering::SeqCst), Ordering::SeqCst);
            self.inside.fetch_sub(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        fn configure(&mut self, _: &Tuning) {}
    }

    #[test]
    fn two_threads_serve_two_sessions_at_once() {
        let (inside, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (i, m) = (inside.clone(), most.clone());
        let factory: DetectorFactory = Arc::new(move || {
            Ok(Box::new(Meeting {
                inside: i.clone(),
                most: m.clone(),
                peers: 2,
            }) as Box<dyn FaceDetector>)
        });
        let pool = Arc::new(DetectorPool::new(factory, 2, "pair").unwrap());
        let lane = || {
            DetectorWorker::on_blocking(
                pool.clone(),
                Duration::ZERO,
                FramePool::default(),
                no_settings(),
            )
            .unwrap()
        };
        let (a, b) = (lane(), lane());
        a.offer(&Frame::filled(2, 2, [1, 0, 0]), 1, false);
        b.offer(&Frame::filled(2, 2, [2, 0, 0]), 1, false);
        wait_for(&a, |d| d.seq == 1);
        wait_for(&b, |d| d.seq == 1);
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "the two detections ran side by side"
        );
    }
}
