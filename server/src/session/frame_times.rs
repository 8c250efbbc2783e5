//! The server's half of the latency budget: for every frame that carries the test clip's
//! frame code ([`app::latency`]), when it was decoded, handed to the encoder and published
//! in a part. The page sees the same codes in its preview and its output, so the benchmark
//! splits the glass-to-glass latency at these three points. Frames without a code (a real
//! camera) cost one strip read and a place in two queues.

use crate::video::frame::Frame;
use app::latency::{BLOCKS, STRIP_HEIGHT, STRIP_TOP};
use app::protocol::FrameTimes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Reports kept for the next stats message at most (15 s of frames: stats go out twice a
/// second, so only a page that stopped reading would reach it).
const PENDING_CAP: usize = 450;

/// Frames in flight further than this (a stuck encoder) are not followed any more.
const IN_FLIGHT_CAP: usize = 1024;

/// The frame code in `frame`'s strip, read as the page reads it (the luma of each block's
/// centre, here averaged over 3×3 pixels against compression noise).
pub fn frame_code(frame: &Frame) -> Option<u32> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w < BLOCKS * 3 || h < 16 || frame.data.len() < w * h * 3 {
        return None;
    }
    let y = ((STRIP_TOP + STRIP_HEIGHT / 2.0) * h as f64) as usize;
    let y = y.clamp(1, h - 2);
    let mut luma = [0u8; BLOCKS];
    for (k, l) in luma.iter_mut().enumerate() {
        let x = ((2 * k + 1) * w / (2 * BLOCKS)).clamp(1, w - 2);
        let mut sum = 0u32;
        for yy in y - 1..=y + 1 {
            for xx in x - 1..=x + 1 {
                let i = (yy * w + xx) * 3;
                let (b, g, r) = (
                    u32::from(frame.data[i]),
                    u32::from(frame.data[i + 1]),
                    u32::from(frame.data[i + 2]),
                );
                sum += (r * 299 + g * 587 + b * 114) / 1000;
            }
        }
        *l = (sum / 9) as u8;
    }
    app::latency::decode(&luma)
}

/// Milliseconds since the Unix epoch, now.
fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Follows frames from decoder to published part, in order (every stage keeps the frames'
/// order, and the encoder makes one sample of each frame it takes).
#[derive(Debug, Default)]
pub struct FrameClock {
    /// Frames in the frame path: their code and when they were decoded (`None`: no code).
    in_path: VecDeque<Option<(u32, f64)>>,
    /// Frames given to the encoder and not yet published: code, decoded, sent.
    in_encoder: VecDeque<Option<(u32, f64, f64)>>,
    /// Frames published so far, as the stream last said.
    published: u64,
}

impl FrameClock {
    /// A decoded frame entered the frame path.
    pub fn decoded(&mut self, frame: &Frame) {
        let code = frame_code(frame);
        self.in_path.push_back(code.map(|c| (c, epoch_ms())));
        cap(&mut self.in_path);
    }

    /// The oldest frame in the path left it: handed to the encoder (`sent`), or dropped.
    pub fn left_path(&mut self, sent: bool) {
        let Some(entry) = self.in_path.pop_front() else {
            return;
        };
        if sent {
            self.in_encoder
                .push_back(entry.map(|(code, decoded)| (code, decoded, epoch_ms())));
            cap(&mut self.in_encoder);
        }
    }

    /// The stream now holds `published` frames in parts: those up to it were published
    /// now; the coded ones' times go to `out`.
    pub fn published(&mut self, published: u64, out: &FrameTimesOut) {
        let newly = published.saturating_sub(self.published);
        self.published = published;
        let now = epoch_ms();
        let mut times = Vec::new();
        for _ in 0..newly {
            match self.in_encoder.pop_front() {
                Some(Some((code, decoded, sent))) => times.push(FrameTimes {
                    code,
                    decoded,
                    sent,
                    published: now,
                }),
                Some(None) => {}
                None => break,
            }
        }
        out.add(times);
    }
}

fn cap<T>(queue: &mut VecDeque<T>) {
    while queue.len() > IN_FLIGHT_CAP {
        queue.pop_front();
    }
}

/// The frame times waiting for the next stats message.
#[derive(Debug, Default)]
pub struct FrameTimesOut(Mutex<Vec<FrameTimes>>);

impl FrameTimesOut {
    fn add(&self, times: Vec<FrameTimes>) {
        if times.is_empty() {
            return;
        }
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend(times);
        let over = pending.len().saturating_sub(PENDING_CAP);
        pending.drain(..over);
    }

    /// Takes what waits.
    pub fn take(&self) -> Vec<FrameTimes> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 640×480 frame whose strip carries `code` (as scripts/media draws it).
    fn coded(code: u32) -> Frame {
        let (w, h) = (640u32, 480u32);
        let mut f = Frame::filled(w, h, [90, 120, 60]);
        let bits: Vec<bool> = (0..12).map(|k| code >> k & 1 == 1).collect();
        let parity = bits.iter().filter(|b| **b).count() % 2 == 1;
        let mut blocks = vec![true, false];
        blocks.extend(&bits);
        blocks.extend([parity, !parity]);
        let block_w = w / BLOCKS as u32;
        for y in 456..480 {
            for x in 0..w {
                let v = if blocks[(x / block_w) as usize] {
                    235
                } else {
                    16
                };
                let i = ((y * w + x) * 3) as usize;
                f.data[i..i + 3].copy_from_slice(&[v, v, v]);
            }
        }
        f
    }

    #[test]
    fn the_strip_is_read_as_the_page_reads_it() {
        for code in [0, 1, 1234, 4095] {
            assert_eq!(frame_code(&coded(code)), Some(code));
        }
        assert_eq!(frame_code(&Frame::filled(640, 480, [200, 200, 200])), None);
        assert_eq!(frame_code(&Frame::filled(8, 8, [0, 0, 0])), None);
    }

    #[test]
    fn coded_frames_are_followed_in_order_and_dropped_ones_are_not() {
        let out = FrameTimesOut::default();
        let mut clock = FrameClock::default();
        clock.decoded(&Frame::filled(640, 480, [0, 0, 0]));
        clock.left_path(true);
        for code in 10..14 {
            clock.decoded(&coded(code));
        }
        clock.decoded(&Frame::filled(640, 480, [0, 0, 0]));
        clock.left_path(true); // 10
        clock.left_path(false); // 11: dropped, never encoded
        clock.left_path(true); // 12
        clock.published(0, &out);
        assert!(out.take().is_empty());
        // The first frame published is the uncoded one.
        clock.published(1, &out);
        assert!(out.take().is_empty());
        clock.left_path(true); // 13
        clock.left_path(true); // uncoded
        clock.published(4, &out);
        let times = out.take();
        let codes: Vec<u32> = times.iter().map(|t| t.code).collect();
        assert_eq!(codes, vec![10, 12, 13]);
        assert!(times
            .iter()
            .all(|t| t.decoded <= t.sent && t.sent <= t.published));
        assert_eq!(
            clock.in_encoder.len(),
            1,
            "the uncoded frame waits for its part"
        );
    }
}
