//! The latest processed frame as a small JPEG, taken every few seconds: what a camera
//! channel's card on the Channels page shows. It is cut from the frame path's output, so
//! the faces in it are already boxed or pixelated exactly as in the stream.

use super::frame::Frame;
use crate::error::ServerError;
use bytes::Bytes;
use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Width of a thumbnail, in pixels (height follows the frame's aspect).
pub const WIDTH: i32 = 320;

/// The newest thumbnail, shared between the frame path (writer) and the HTTP route.
#[derive(Debug, Clone, Default)]
pub struct Latest(Arc<Mutex<Option<Bytes>>>);

impl Latest {
    /// The newest JPEG, if one was taken.
    pub fn get(&self) -> Option<Bytes> {
        self.0.lock().ok().and_then(|j| j.clone())
    }

    fn set(&self, jpeg: Bytes) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(jpeg);
        }
    }
}

/// Takes a thumbnail from the frames offered, at most once per `every`.
pub struct Thumbnailer {
    every: Duration,
    last: Option<Instant>,
    out: Latest,
}

impl Thumbnailer {
    pub fn new(every: Duration, out: Latest) -> Self {
        Thumbnailer {
            every,
            last: None,
            out,
        }
    }

    /// Encodes `frame` (an output frame) if the last thumbnail is older than `every`.
    pub fn offer(&mut self, frame: &Frame, now: Instant) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return;
        }
        self.last = Some(now);
        match jpeg(frame) {
            Ok(bytes) => self.out.set(bytes),
            Err(e) => tracing::warn!("thumbnail: {e}"),
        }
    }
}

/// `frame` scaled to [`WIDTH`] and encoded as JPEG.
pub fn jpeg(frame: &Frame) -> Result<Bytes, ServerError> {
    let flat = Mat::from_slice(&frame.data)?;
    let bgr = flat.reshape(3, frame.height as i32)?;
    let height =
        ((WIDTH as f64 * frame.height as f64 / frame.width.max(1) as f64).round() as i32).max(2);
    let mut small = Mat::default();
    imgproc::resize(
        &bgr,
        &mut small,
        Size::new(WIDTH, height),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut out = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 75]);
    imgcodecs::imencode(".jpg", &small, &mut out, &params)?;
    Ok(Bytes::from(out.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thumbnail_is_a_small_jpeg_taken_at_most_once_per_interval() {
        let latest = Latest::default();
        let mut thumbs = Thumbnailer::new(Duration::from_secs(2), latest.clone());
        let start = Instant::now();
        thumbs.offer(&Frame::filled(640, 480, [10, 200, 30]), start);
        let first = latest.get().expect("a thumbnail");
        assert_eq!(&first[..3], &[0xff, 0xd8, 0xff], "JPEG magic");
        thumbs.offer(
            &Frame::filled(640, 480, [250, 0, 0]),
            start + Duration::from_secs(1),
        );
        assert_eq!(
            latest.get().unwrap(),
            first,
            "not again within the interval"
        );
        thumbs.offer(
            &Frame::filled(640, 480, [250, 0, 0]),
            start + Duration::from_secs(3),
        );
        assert_ne!(latest.get().unwrap(), first);
    }
}
