//! Reading the frame-code strip the test camera clip carries (see `scripts/media`): pure
//! decoding and the latency / dropped-frame bookkeeping, shared by the page's probe.
//!
//! The strip is the bottom 24 of 480 rows, 16 equal blocks: block 0 white and block 1
//! black (markers), blocks 2–13 a 12-bit frame number (least significant bit first), block
//! 14 the parity of those bits and block 15 its inverse.

/// Blocks in the strip.
pub const BLOCKS: usize = 16;
/// Frame numbers the strip can carry.
pub const CODES: usize = 1 << 12;
/// Strip top and height as fractions of the frame height.
pub const STRIP_TOP: f64 = 456.0 / 480.0;
pub const STRIP_HEIGHT: f64 = 24.0 / 480.0;

/// Decodes the strip from the luminance (0–255) of each block's centre.
pub fn decode(luma: &[u8; BLOCKS]) -> Option<u32> {
    let bit = |i: usize| luma[i] >= 128;
    if !bit(0) || bit(1) {
        return None;
    }
    let mut code = 0u32;
    let mut parity = false;
    for k in 0..12 {
        if bit(2 + k) {
            code |= 1 << k;
            parity = !parity;
        }
    }
    (bit(14) == parity && bit(15) != parity).then_some(code)
}

/// Latency and frame-drop bookkeeping from the codes seen in the preview and the output.
#[derive(Debug, Clone)]
pub struct CodeClock {
    /// When each code was last shown in the preview (ms), if recently.
    shown: Vec<Option<f64>>,
    last_preview: Option<Sighting>,
    /// The camera preview, frames seen following their predecessor: the control for the
    /// output (frames the browser itself did not present, with no network or server
    /// involved).
    pub preview: Tally,
}

/// What the page saw of one video's frame codes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Frames whose code was counted.
    pub frames: u64,
    /// Codes due between the counted sightings (shown or not): the base for `gaps`.
    pub codes: u64,
    /// Codes the video skipped: between consecutive sightings, and not presented either
    /// (see [`skipped_between`]).
    pub gaps: u64,
}

impl Tally {
    /// Counts the codes from `prev` to a sighting `step` codes later, when the video had
    /// presented `presented` frames in all.
    fn advance(&mut self, prev: Sighting, step: u32, presented: Option<u32>) {
        self.codes += u64::from(step);
        self.gaps += skipped_between(step, presented_since(prev, presented));
    }
}

/// A frame code read from a video, with the video's count of presented frames at that
/// moment (`requestVideoFrameCallback`'s `presentedFrames`), where the browser gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sighting {
    code: u32,
    presented: Option<u32>,
}

/// Codes skipped between two sightings `step` codes apart. The frame callback runs at most
/// once per page rendering, so when rendering runs late the page sees every other frame
/// although the video presented them all; the video's own count of presented frames tells
/// those apart from frames it never showed. Without that count every unseen code counts.
fn skipped_between(step: u32, presented: Option<u32>) -> u64 {
    let unseen = step.saturating_sub(1);
    match presented {
        Some(shown) => u64::from(unseen.saturating_sub(shown.saturating_sub(1))),
        None => u64::from(unseen),
    }
}

/// Frames the video presented from one sighting to the next, if both carry the count.
fn presented_since(prev: Sighting, presented: Option<u32>) -> Option<u32> {
    Some(presented?.wrapping_sub(prev.presented?))
}

/// Latencies above this are not matched: the test clip loops every 6 s, so codes repeat.
const MAX_LATENCY_MS: f64 = 5_000.0;
/// A code seen again after this long is a new pass through the looping clip.
const RESIGHT_MS: f64 = 1_000.0;

impl Default for CodeClock {
    fn default() -> Self {
        CodeClock {
            shown: vec![None; CODES],
            last_preview: None,
            preview: Tally::default(),
        }
    }
}

impl CodeClock {
    /// Records that the preview showed `code` at `now_ms`, when it had presented
    /// `presented` frames in all. A code is trusted only as the successor (within 3) of the
    /// previous one, so a real camera's random content never produces readings.
    pub fn preview(&mut self, code: u32, now_ms: f64, presented: Option<u32>) {
        let step = self
            .last_preview
            .map(|p| (code + CODES as u32 - p.code) % CODES as u32);
        let follows = step.is_some_and(|s| (1..=3).contains(&s));
        if let (true, Some(step), Some(prev)) = (follows, step, self.last_preview) {
            self.preview.frames += 1;
            self.preview.advance(prev, step, presented);
        }
        self.last_preview = Some(Sighting { code, presented });
        let slot = &mut self.shown[code as usize];
        if !follows {
            *slot = None;
        } else if slot.is_none_or(|t| now_ms - t > RESIGHT_MS) {
            // First sighting of this pass through the clip (later repeats of the same
            // frame keep the first time).
            *slot = Some(now_ms);
        }
    }

    /// The latency in ms of the output showing `code` at `now_ms`, if the code was seen in
    /// the preview recently.
    pub fn output(&self, code: u32, now_ms: f64) -> Option<f64> {
        let shown = self.shown[code as usize]?;
        let latency = now_ms - shown;
        (0.0..=MAX_LATENCY_MS).contains(&latency).then_some(latency)
    }
}

/// A media-time step longer than this is a new start (a re-attached player), not skipped
/// frames.
const MAX_STEP_S: f64 = 5.0;

/// The frames a player skipped, from its own timeline: between two frame callbacks, its
/// media time says how many frames were due and its `presentedFrames` how many it showed.
///
/// The frame codes cannot count this: a callback that runs late reads the code of a newer
/// frame than the one its count belongs to, and the codes then overstated the skipped
/// frames (1.36 / 0.73 / 1.64 % where Chromium counted 1.05 / 0.56 / 0.94 %; this count:
/// 1.06 / 0.56 / 0.94 %). It needs no test clip, so it works with a real camera too, and a
/// jump forward (a player skipping ahead after a stall) counts as the frames it skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlayerTimeline {
    /// The frame duration in seconds: the shortest media-time step over one presented
    /// frame seen so far.
    frame_s: Option<f64>,
    /// Media time and presented count of the previous callback.
    last: Option<(f64, u32)>,
    /// Frames due (by media time) since the frame duration became known.
    pub due: u64,
    /// Frames the player presented of those.
    pub presented: u64,
    /// Frames due that it did not present.
    pub skipped: u64,
}

impl PlayerTimeline {
    /// Records a frame callback: the frame's media time (s) and the video's count of
    /// presented frames.
    pub fn frame(&mut self, media_time: f64, presented: u32) {
        let last = self.last.replace((media_time, presented));
        let Some((last_time, last_presented)) = last else {
            return;
        };
        let (step, shown) = (
            media_time - last_time,
            presented.wrapping_sub(last_presented),
        );
        if !(step > 0.0 && step <= MAX_STEP_S) || shown == 0 {
            return; // a seek back, a new start, or the same frame again
        }
        if shown == 1 {
            self.frame_s = Some(self.frame_s.map_or(step, |f| f.min(step)));
        }
        let Some(frame_s) = self.frame_s else {
            return;
        };
        let due = ((step / frame_s).round() as u64).max(1);
        self.due += due;
        self.presented += u64::from(shown);
        self.skipped += due.saturating_sub(u64::from(shown));
    }
}

/// The `q`-quantile (0..=1) of `samples` (sorted copy); `None` if empty.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let idx = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[idx])
}

/// Within this distance of its target a live player plays at normal speed.
const SYNC_DEADBAND: f64 = 0.03;
/// Slowest rate a player falls back at (slower looks like slow motion).
const MIN_SYNC_RATE: f64 = 0.9;
/// Fastest rate a player catches up at (faster makes the browser skip frames).
const MAX_SYNC_RATE: f64 = 1.25;

/// The playback rate that holds a live player at its target distance from the live edge
/// without jumping: 1 within 30 ms of the target; further behind, a gentle speed-up that
/// grows with the distance (at most 1.25×, and only with at least 150 ms buffered ahead:
/// speeding up would only stall it); closer to the edge than the target, a gentle
/// slow-down the same way (at least 0.9×).
///
/// Both ways are needed. A source whose clock runs slow against the player's (a camera's
/// timestamps, another machine's clock; measured here with Chromium's test camera and with
/// ffmpeg's `-re` replay, the live edge fell behind the wall clock by 1.3 ms a second)
/// brings the player up to the edge at normal speed until the buffer runs out and it
/// stalls; a fast one leaves it further and further behind. hls.js's own catch-up only
/// speeds up, and only with more than a second buffered, which a player 0.3 s behind the
/// edge never has; the page runs this one instead.
pub fn live_sync_rate(latency: f64, target: f64, buffered_ahead: f64) -> f64 {
    let excess = latency - target;
    if !excess.is_finite() || excess.abs() <= SYNC_DEADBAND {
        return 1.0;
    }
    if excess > 0.0 && buffered_ahead < catch_up_floor(target) {
        return 1.0;
    }
    (1.0 + excess * 0.5).clamp(MIN_SYNC_RATE, MAX_SYNC_RATE)
}

/// The least buffered ahead that a speed-up may eat into: 150 ms, or half the target for a
/// player that aims closer to the edge than 0.3 s (it never has more buffered).
fn catch_up_floor(target: f64) -> f64 {
    (0.5 * target).clamp(0.03, 0.15)
}

/// Further behind its target than this, a live player jumps instead of catching up.
const JUMP_EXCESS: f64 = 0.25;
/// The same in a player's first seconds: it joins at the live edge, not near it.
const JUMP_EXCESS_STARTING: f64 = 0.08;

/// How far to seek a live player forward, if at all: when it is more than 0.25 s behind its
/// target (a connection that came back with a backlog), or in its first seconds
/// (`starting`) more than 0.08 s (the stream's first parts arrive in a burst while the
/// player loads them), catching up at 1.25× would take seconds of visible lag, so it skips
/// straight to the target distance, as far as what is already buffered allows (keeping
/// [`catch_up_floor`] ahead). `None`: play on.
pub fn live_jump(latency: f64, target: f64, buffered_ahead: f64, starting: bool) -> Option<f64> {
    let threshold = if starting {
        JUMP_EXCESS_STARTING
    } else {
        JUMP_EXCESS
    };
    let excess = latency - target;
    if !excess.is_finite() || excess <= threshold {
        return None;
    }
    let room = buffered_ahead - catch_up_floor(target);
    let skip = excess.min(room);
    (skip > threshold / 2.0).then_some(skip)
}

/// What one stall adds to a live player's target distance from the edge.
const STALL_STEP: f64 = 0.1;
/// The most stalls can add. Beyond it the cause is not parts coming late but a player that
/// cannot keep up (a starved browser: measured, its buffer stayed near empty at 0.67 s from
/// the edge), which more distance does not help.
const MAX_STALL_MARGIN: f64 = 0.3;
/// Waits closer together than this are one stall (the player resumes on the first frame
/// that arrives and may wait again at once; hls.js reports the same stall too).
const STALL_EPISODE_MS: f64 = 1_000.0;
/// Each stall-free stretch this long gives one frame of the margin back.
const MARGIN_DECAY_MS: f64 = 10_000.0;
const MARGIN_DECAY_STEP: f64 = 1.0 / 30.0;

/// How much further from the live edge than its playlist's hold-back a player should sit
/// after stalls: each stall adds 0.1 s (at most 0.3 s), and every 10 s without one takes a
/// frame (1/30 s) back. A player whose parts come late now and then (a machine shared with
/// other sessions, a busy network) settles where they stop running it dry, instead of going
/// back to the edge after every stall and stalling again; on a quiet machine one stall costs
/// 0.1 s for at most half a minute.
#[derive(Debug, Clone)]
pub struct StallMargin {
    margin: f64,
    /// When the margin last changed (ms).
    since_ms: f64,
    last_stall_ms: f64,
}

impl Default for StallMargin {
    fn default() -> Self {
        StallMargin {
            margin: 0.0,
            since_ms: 0.0,
            last_stall_ms: f64::NEG_INFINITY,
        }
    }
}

impl StallMargin {
    /// The player ran dry at `now_ms`.
    pub fn stalled(&mut self, now_ms: f64) {
        if now_ms - self.last_stall_ms >= STALL_EPISODE_MS {
            self.margin = (self.margin + STALL_STEP).min(MAX_STALL_MARGIN);
        }
        self.last_stall_ms = now_ms;
        self.since_ms = now_ms;
    }

    /// Seconds to add to the target at `now_ms`.
    pub fn margin(&mut self, now_ms: f64) -> f64 {
        if self.margin <= 0.0 {
            self.since_ms = now_ms;
            return 0.0;
        }
        while now_ms - self.since_ms >= MARGIN_DECAY_MS && self.margin > 0.0 {
            self.margin = (self.margin - MARGIN_DECAY_STEP).max(0.0);
            self.since_ms += MARGIN_DECAY_MS;
        }
        // Thirty steps of 1/30 do not sum to exactly 1.
        if self.margin < 1e-9 {
            self.margin = 0.0;
        }
        self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(code: u32) -> [u8; BLOCKS] {
        let mut luma = [0u8; BLOCKS];
        luma[0] = 255;
        let mut parity = false;
        for k in 0..12 {
            if code >> k & 1 == 1 {
                luma[2 + k] = 255;
                parity = !parity;
            }
        }
        luma[14] = if parity { 255 } else { 0 };
        luma[15] = if parity { 0 } else { 255 };
        luma
    }

    #[test]
    fn decodes_every_code_and_rejects_damage() {
        for code in [0, 1, 13, 179, 4095] {
            assert_eq!(decode(&strip(code)), Some(code));
        }
        let mut bad = strip(13);
        bad[3] = 255; // one flipped bit breaks the parity
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&[0; BLOCKS]), None);
        assert_eq!(decode(&[255; BLOCKS]), None);
    }

    #[test]
    fn measures_latency_only_for_codes_seen_in_sequence() {
        let mut clock = CodeClock::default();
        for (i, code) in (10..20).enumerate() {
            clock.preview(code, 1000.0 + i as f64 * 33.0, None);
        }
        assert_eq!(clock.output(12, 2066.0), Some(1000.0));
        assert_eq!(clock.output(15, 2200.0), Some(2200.0 - 1165.0));
        assert_eq!(
            clock.output(500, 2300.0),
            None,
            "never shown in the preview"
        );
        // A random code without its predecessor is not trusted.
        clock.preview(3000, 3000.0, None);
        assert_eq!(clock.output(3000, 3100.0), None);
        assert_eq!(clock.output(12, 7000.0), None, "too long ago");
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
    }

    #[test]
    fn a_player_far_behind_jumps_to_its_target_within_what_is_buffered() {
        assert_eq!(
            live_jump(0.3, 0.1, 0.5, false),
            None,
            "close enough to catch up"
        );
        let whole = live_jump(1.1, 0.1, 1.2, false).unwrap();
        assert!((whole - 1.0).abs() < 1e-9, "to the target: {whole}");
        let partial = live_jump(1.1, 0.1, 0.6, false).unwrap();
        assert!(
            (partial - 0.55).abs() < 1e-9,
            "only what is buffered: {partial}"
        );
        assert_eq!(
            live_jump(1.1, 0.1, 0.15, false),
            None,
            "too little buffered to skip"
        );
        assert_eq!(live_jump(f64::NAN, 0.1, 1.0, false), None);
        // Starting, a tenth of a second behind is already worth a skip.
        let start = live_jump(0.3, 0.17, 0.3, true).unwrap();
        assert!((start - 0.13).abs() < 1e-9, "{start}");
        assert_eq!(live_jump(0.22, 0.17, 0.3, true), None, "close enough");
    }

    #[test]
    fn a_close_target_still_catches_up_with_what_it_has_buffered() {
        assert_eq!(live_sync_rate(0.3, 0.1, 0.08), 1.1);
        assert_eq!(live_sync_rate(0.3, 0.1, 0.02), 1.0, "too little buffered");
    }

    #[test]
    fn live_sync_is_gentle_both_ways_and_never_starves_the_buffer() {
        assert_eq!(live_sync_rate(0.32, 0.3, 0.3), 1.0, "close enough");
        assert_eq!(live_sync_rate(0.28, 0.3, 0.3), 1.0, "close enough");
        assert_eq!(live_sync_rate(0.5, 0.3, 0.3), 1.1);
        assert_eq!(live_sync_rate(1.5, 0.3, 0.5), 1.25, "capped");
        assert_eq!(live_sync_rate(1.5, 0.3, 0.1), 1.0, "too little buffered");
        assert!(
            (live_sync_rate(0.2, 0.3, 0.3) - 0.95).abs() < 1e-9,
            "closer to the edge than the target: falls back"
        );
        assert_eq!(
            live_sync_rate(0.2, 0.3, 0.01),
            live_sync_rate(0.2, 0.3, 0.3),
            "falling back never needs a buffer"
        );
        assert_eq!(live_sync_rate(-1.0, 0.3, 0.0), 0.9, "capped");
        assert_eq!(live_sync_rate(f64::NAN, 0.3, 1.0), 1.0);
    }

    #[test]
    fn preview_gaps_count_codes_the_preview_skipped() {
        let mut clock = CodeClock::default();
        for (code, t) in [(10, 0.0), (11, 33.0), (13, 99.0), (14, 133.0), (500, 166.0)] {
            clock.preview(code, t, None);
        }
        assert_eq!((clock.preview.frames, clock.preview.gaps), (3, 1));
    }

    #[test]
    fn player_timeline_counts_frames_due_but_not_presented() {
        const F: f64 = 1.0 / 30.0;
        let mut t = PlayerTimeline::default();
        // Every frame, one callback each: nothing skipped.
        for i in 0..10u32 {
            t.frame(f64::from(i) * F, 100 + i);
        }
        assert_eq!((t.due, t.presented, t.skipped), (9, 9, 0));
        // A callback the page missed (frame 10 shown, its callback coalesced): not skipped.
        t.frame(11.0 * F, 111);
        assert_eq!((t.due, t.skipped), (11, 0));
        // Frames 12 and 13 never shown: 14 comes one presented frame later.
        t.frame(14.0 * F, 112);
        assert_eq!((t.due, t.presented, t.skipped), (14, 12, 2));
        // The same frame again, and a seek back: nothing counted.
        t.frame(14.0 * F, 112);
        t.frame(2.0 * F, 113);
        assert_eq!((t.due, t.skipped), (14, 2));
        // A jump ahead after a stall: the frames jumped over count.
        t.frame(3.0 * F, 114);
        t.frame(33.0 * F, 115);
        assert_eq!((t.due, t.skipped), (45, 31));
        // A new start far away: not counted.
        t.frame(1000.0, 116);
        assert_eq!(t.due, 45);
    }

    #[test]
    fn player_timeline_learns_the_frame_duration_from_single_steps() {
        let mut t = PlayerTimeline::default();
        // The first step happens to span two frames: taken for one until a shorter one.
        t.frame(0.0, 0);
        t.frame(0.08, 1);
        t.frame(0.12, 2);
        t.frame(0.20, 3);
        assert_eq!((t.due, t.skipped), (4, 1), "1 + 1 + 2 due, 1 shown each");
        // Without a single-frame step there is nothing to count with.
        let mut t = PlayerTimeline::default();
        t.frame(0.0, 0);
        t.frame(0.1, 2);
        assert_eq!(t.due, 0);
    }

    #[test]
    fn preview_gaps_use_the_presented_count_too() {
        let mut clock = CodeClock::default();
        for (code, presented) in [(10, 0), (12, 2), (14, 3), (15, 4)] {
            clock.preview(code, f64::from(presented) * 33.0, Some(presented));
        }
        assert_eq!((clock.preview.frames, clock.preview.gaps), (3, 1));
        assert_eq!(clock.preview.codes, 5);
    }

    #[test]
    fn stalls_move_the_target_back_and_quiet_time_brings_it_home() {
        let mut m = StallMargin::default();
        assert_eq!(m.margin(0.0), 0.0);
        m.stalled(1_000.0);
        // The same stall heard twice (the video's wait and hls.js's report) counts once.
        m.stalled(1_400.0);
        assert!((m.margin(2_000.0) - 0.1).abs() < 1e-9);
        // Stalls a few seconds apart pile up, to a ceiling.
        for i in 1..10 {
            m.stalled(1_400.0 + 3_000.0 * f64::from(i));
        }
        let top = m.margin(30_000.0);
        assert!((top - MAX_STALL_MARGIN).abs() < 1e-9, "{top}");
        // A frame back per quiet 10 s: home after that many quiet stretches, not before.
        let steps = (MAX_STALL_MARGIN * 30.0).round();
        let last = 1_400.0 + 27_000.0;
        let after = |k: f64| last + MARGIN_DECAY_MS * k + 1.0;
        let mut quiet = m.clone();
        assert!((quiet.margin(after(1.0)) - (MAX_STALL_MARGIN - 1.0 / 30.0)).abs() < 1e-9);
        assert!(quiet.margin(after(steps - 1.0)) > 0.0);
        assert_eq!(quiet.margin(after(steps)), 0.0);
        // A stall meanwhile starts the quiet time again.
        m.margin(after(3.0));
        m.stalled(after(3.0) + 500.0);
        let again = m.margin(after(3.0) + 600.0);
        assert!((again - MAX_STALL_MARGIN).abs() < 1e-9, "{again}");
    }
}
