//! Raw video frames (packed BGR24, as ffmpeg's `rawvideo` writes them) and face boxes.

/// The size and rate of a stream's frames, the same from decoder to encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
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
