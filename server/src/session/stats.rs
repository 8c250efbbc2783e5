//! The stats the page shows: live counters turned into rates averaged over a short window.

use app::protocol::Stats;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Live counters of one session.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub faces: AtomicU32,
    /// Faces the latest detection found below the minimum face size (not boxed).
    pub faces_small: AtomicU32,
    pub detect_micros: AtomicU64,
    pub segments: AtomicU64,
    pub detector_skipped: AtomicU64,
    /// Coded frames' times for the next stats (the latency budget).
    pub frame_times: super::frame_times::FrameTimesOut,
}

/// Rates are averaged over this window: per-interval counts jump (frames arrive in 100 ms
/// recorder chunks), a 2-second average reads steady at the camera's rate.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Turns counters into the stats message, with rates averaged over [`RATE_WINDOW`].
pub struct StatsSampler {
    /// (when, frames in, frames out), oldest first, spanning at least the window.
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl StatsSampler {
    /// A sampler starting now.
    pub fn new() -> Self {
        StatsSampler {
            samples: std::collections::VecDeque::from([(Instant::now(), 0, 0)]),
        }
    }

    /// The stats now, rates over the last [`RATE_WINDOW`] (or since the start).
    pub fn sample(&mut self, c: &Counters) -> Stats {
        self.sample_at(c, Instant::now())
    }

    fn sample_at(&mut self, c: &Counters, now: Instant) -> Stats {
        let frames_in = c.frames_in.load(Ordering::Relaxed);
        let frames_out = c.frames_out.load(Ordering::Relaxed);
        // Keep the newest sample at least a window old as the base.
        while self.samples.len() > 1 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (then, base_in, base_out) = self.samples[0];
        let secs = now.duration_since(then).as_secs_f32().max(1e-3);
        let stats = Stats {
            fps_in: frames_in.saturating_sub(base_in) as f32 / secs,
            fps_out: frames_out.saturating_sub(base_out) as f32 / secs,
            frames_in,
            frames_out,
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            detector_skipped: c.detector_skipped.load(Ordering::Relaxed),
            faces: c.faces.load(Ordering::Relaxed),
            detect_ms: c.detect_micros.load(Ordering::Relaxed) as f32 / 1000.0,
            segments: c.segments.load(Ordering::Relaxed),
            faces_small: c.faces_small.load(Ordering::Relaxed),
            chunks: 0,
            frame_times: c.frame_times.take(),
        };
        self.samples.push_back((now, frames_in, frames_out));
        stats
    }
}

impl Default for StatsSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_averaged_over_two_seconds() {
        let counters = Counters::default();
        let start = Instant::now();
        let mut sampler = StatsSampler {
            samples: std::collections::VecDeque::from([(start, 0, 0)]),
        };
        // Bursty arrivals: 45 frames in one half second, 15 in the next, repeating.
        let mut total = 0;
        let mut last = Stats::default();
        for i in 1..=12u32 {
            total += if i % 2 == 1 { 45 } else { 15 };
            counters.frames_in.store(total, Ordering::Relaxed);
            last = sampler.sample_at(&counters, start + Duration::from_millis(500) * i);
        }
        assert!((last.fps_in - 60.0).abs() < 8.0, "{}", last.fps_in);
    }
}
