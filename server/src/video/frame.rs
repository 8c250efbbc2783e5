//! Raw video frames (packed BGR24, as ffmpeg's `rawvideo` writes them) and face boxes.

/// The size and rate of a stream's frames, the same from decoder to encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
}

/// Frames a second as a fraction, so a source's 24000/1001 (23.976) stays exactly that
/// through the pipeline instead of becoming 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    /// `fps` frames a second exactly.
    pub const fn whole(fps: u32) -> Self {
        FrameRate { num: fps, den: 1 }
    }

    /// The rate ffprobe writes (`"30000/1001"`, `"25/1"`, `"25"`), kept as a fraction when
    /// it lies within 1..=`max` frames a second (`None` otherwise: no usable rate).
    pub fn parse(text: &str, max: u32) -> Option<Self> {
        let (num, den) = match text.split_once('/') {
            Some((n, d)) => (n.trim().parse::<u32>().ok()?, d.trim().parse::<u32>().ok()?),
            None => (text.trim().parse::<u32>().ok()?, 1),
        };
        let rate = FrameRate { num, den };
        (den > 0 && (1.0..=f64::from(max)).contains(&rate.as_f64())).then_some(rate)
    }

    /// Frames a second.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl std::fmt::Display for FrameRate {
    /// As ffmpeg's `-r` reads it: `30` or `24000/1001`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// One packed BGR24 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, rows top to bottom, pixels as B, G, R.
    pub data: Vec<u8>,
    /// Privacy mode was applied to it (its faces, or all of it, pixelated).
    pub hidden: bool,
}

impl Frame {
    /// Bytes in one frame of this size.
    pub fn byte_len(width: u32, height: u32) -> usize {
        width as usize * height as usize * 3
    }

    /// A frame filled with one colour (B, G, R).
    pub fn filled(width: u32, height: u32, bgr: [u8; 3]) -> Self {
        let data = bgr
            .iter()
            .copied()
            .cycle()
            .take(Self::byte_len(width, height))
            .collect();
        Frame {
            width,
            height,
            data,
            hidden: false,
        }
    }

    /// A checkerboard of `bgr` and black pixels (for tests: every block average differs
    /// from its pixels).
    #[cfg(test)]
    pub fn checkerboard(width: u32, height: u32, bgr: [u8; 3]) -> Self {
        let mut f = Frame::filled(width, height, [0, 0, 0]);
        for y in 0..height {
            for x in (y % 2..width).step_by(2) {
                let i = ((y * width + x) * 3) as usize;
                f.data[i..i + 3].copy_from_slice(&bgr);
            }
        }
        f
    }

    /// A copy of this frame in a buffer from `pool`.
    pub fn copy_in(&self, pool: &FramePool) -> Frame {
        let mut data = pool.take(0);
        data.extend_from_slice(&self.data);
        Frame {
            width: self.width,
            height: self.height,
            data,
            hidden: self.hidden,
        }
    }

    /// The (B, G, R) pixel at (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Idle frame buffers kept for reuse per session. In steady state only a handful of frames
/// are in flight (decoder → overlay → encoder, one in the detector); bursts allocate and
/// the excess is freed, so a session's pool never holds more than ~7 MB at 640×480.
const POOL_CAPACITY: usize = 8;

/// Recycles frame buffers between the stages of one session, so a 30 fps stream does not
/// allocate (and page-fault in) a fresh ~1 MB buffer per frame per stage.
#[derive(Clone, Default)]
pub struct FramePool(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl FramePool {
    /// A buffer of exactly `len` bytes (contents unspecified), reused when possible.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut pool| pool.pop());
        match reused {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            None => vec![0; len],
        }
    }

    /// Returns a buffer for reuse (dropped if the pool is full).
    pub fn give(&self, buf: Vec<u8>) {
        if let Ok(mut pool) = self.0.lock() {
            if pool.len() < POOL_CAPACITY {
                pool.push(buf);
            }
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        self.0.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// A face's bounding box in full-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceBox {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

impl FaceBox {
    /// The distance between the two boxes' centres, in units of the larger box's side (a
    /// scale-free "how far did the face move").
    pub fn centre_distance(&self, other: &FaceBox) -> f32 {
        let centre = |b: &FaceBox| {
            (
                b.x as f32 + b.width as f32 / 2.0,
                b.y as f32 + b.height as f32 / 2.0,
            )
        };
        let ((ax, ay), (bx, by)) = (centre(self), centre(other));
        let side = self
            .width
            .max(self.height)
            .max(other.width)
            .max(other.height)
            .max(1) as f32;
        ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() / side
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_reuses_buffers_up_to_its_capacity() {
        let pool = FramePool::default();
        let a = pool.take(16);
        assert_eq!(a.len(), 16);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(16);
        assert_eq!(b.as_ptr(), ptr, "the same buffer comes back");
        for _ in 0..POOL_CAPACITY + 5 {
            pool.give(vec![0; 4]);
        }
        assert_eq!(pool.idle(), POOL_CAPACITY);
        let f = Frame::filled(2, 2, [1, 2, 3]);
        assert_eq!(f.copy_in(&pool), f);
    }
}

#[cfg(test)]
mod rate_tests {
    use super::FrameRate;

    #[test]
    fn rates_stay_fractions_and_read_as_ffmpeg_writes_them() {
        let film = FrameRate::parse("24000/1001", 60).unwrap();
        assert_eq!(film.to_string(), "24000/1001");
        assert!((film.as_f64() - 23.976).abs() < 1e-3);
        assert_eq!(FrameRate::parse("25/1", 60).unwrap().to_string(), "25");
        assert_eq!(FrameRate::parse("30", 60), Some(FrameRate::whole(30)));
        assert_eq!(FrameRate::parse("0/0", 60), None);
        assert_eq!(FrameRate::parse("90000/1", 60), None);
        assert_eq!(FrameRate::parse("x", 60), None);
    }
}
