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
    last_output: Option<Sighting>,
    /// The output player: every frame seen with a valid code.
    pub output: Tally,
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
            last_output: None,
            output: Tally::default(),
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

    /// Records that the output showed `code` at `now_ms`, when it had presented `presented`
    /// frames in all; returns the latency in ms if the code was seen in the preview recently.
    pub fn output(&mut self, code: u32, now_ms: f64, presented: Option<u32>) -> Option<f64> {
        let shown = self.shown[code as usize]?;
        let latency = now_ms - shown;
        if !(0.0..=MAX_LATENCY_MS).contains(&latency) {
            return None;
        }
        if self.last_output.map(|p| p.code) != Some(code) {
            if let Some(prev) = self.last_output {
                if code > prev.code {
                    self.output.advance(prev, code - prev.code, presented);
                }
            }
            self.output.frames += 1;
            self.last_output = Some(Sighting { code, presented });
        }
        Some(latency)
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
/// stalls; a fast one leaves it further and further behind. hls.js's own catch-up only speeds up, and
/// only with more than a second buffered, which a player 0.3 s behind the edge never has;
/// the page runs this one instead.
pub fn live_sync_rate(latency: f64, target: f64, buffered_ahead: f64) -> f64 {
    let excess = latency - target;
    if !excess.is_finite() || excess.abs() <= SYNC_DEADBAND {
        return 1.0;
    }
    if excess > 0.0 && buffered_ahead < 0.15 {
        return 1.0;
    }
    (1.0 + excess * 0.5).clamp(MIN_SYNC_RATE, MAX_SYNC_RATE)
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
        assert_eq!(clock.output(12, 2066.0, None), Some(1000.0));
        assert_eq!(clock.output(15, 2200.0, None), Some(2200.0 - 1165.0));
        assert_eq!((clock.output.frames, clock.output.gaps), (2, 2));
        assert_eq!(
            clock.output(500, 2300.0, None),
            None,
            "never shown in the preview"
        );
        // A random code without its predecessor is not trusted.
        clock.preview(3000, 3000.0, None);
        assert_eq!(clock.output(3000, 3100.0, None), None);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
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
    fn frames_presented_between_callbacks_are_not_skipped() {
        let mut clock = CodeClock::default();
        // The preview trusts a code only after its predecessor: start one early.
        for (i, code) in (9..30).enumerate() {
            clock.preview(code, i as f64 * 33.0, Some(i as u32));
        }
        // Output callbacks: 10 (presented #100), 12 (#102: 11 was shown, its callback
        // coalesced), 15 (#104: one of 13/14 never shown).
        for (code, presented) in [(10, Some(100)), (12, Some(102)), (15, Some(104))] {
            clock.output(code, 1000.0, presented);
        }
        assert_eq!((clock.output.frames, clock.output.gaps), (3, 1));
        // More presented than codes apart (a repeated frame) never counts negative.
        clock.output(16, 1000.0, Some(107));
        assert_eq!(clock.output.gaps, 1);
        // Without the count, every unseen code counts (17, 18 and 19).
        clock.output(20, 1000.0, None);
        assert_eq!((clock.output.frames, clock.output.gaps), (5, 4));
        assert_eq!(clock.output.codes, 10, "codes 11 to 20 were due");
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
}
