//! Region-of-interest detection: once faces are known, most detections scan only the area
//! around each of them, scaled down so the face is just above the smallest face size (the
//! scan then costs a fraction of a whole frame's); the whole frame is scanned every
//! `full_every` detections, to find new faces, and at once whenever a region scan loses a
//! face.

use super::FaceDetector;
use crate::error::ServerError;
use crate::video::detector::Tuning;
use crate::video::frame::{FaceBox, Frame};
use crate::video::tracker::iou;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

/// A region is the face box grown by this fraction of its size on every side.
const MARGIN: f64 = 0.5;
/// Regions narrower or shorter than this (a face at the edge of the frame) are not worth
/// scanning alone: the whole frame is scanned instead.
const MIN_REGION: i32 = 24;
/// A region is scaled so its face is about this many times the smallest face size.
const FACE_OVER_MIN: f64 = 1.3;
/// A face found in a region must be within this factor of the known face's size.
const SIZE_CHANGE: f64 = 1.6;
/// Boxes from overlapping regions overlapping this much (IoU) are one face.
const SAME_FACE_IOU: f32 = 0.4;

/// Wraps a detector with region-of-interest scanning.
pub struct RoiDetector {
    inner: Box<dyn FaceDetector>,
    full_every: u32,
    /// Faces found by the previous detection.
    known: Vec<FaceBox>,
    /// Region scans since the last full scan.
    since_full: u32,
    crop: Frame,
    small: Frame,
    /// Smallest face reported, frame pixels (from the detector settings).
    min_face: u32,
    /// Full-frame scans run (for tests and figures).
    pub full_scans: u64,
}

fn empty_frame() -> Frame {
    Frame {
        width: 0,
        height: 0,
        data: Vec::new(),
        hidden: false,
    }
}

impl RoiDetector {
    /// Scans the whole frame at least every `full_every` detections (≥ 1; 1 = always);
    /// `min_face` is the smallest face the detector reports (updated by `configure`).
    pub fn new(inner: Box<dyn FaceDetector>, full_every: u32, min_face: u32) -> Self {
        RoiDetector {
            inner,
            full_every: full_every.max(1),
            known: Vec::new(),
            since_full: 0,
            crop: empty_frame(),
            small: empty_frame(),
            min_face,
            full_scans: 0,
        }
    }

    fn full_scan(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
        self.full_scans += 1;
        self.since_full = 0;
        let found = self.inner.detect(frame)?;
        self.known = found.clone();
        Ok(found)
    }

    /// Scans the region around `face`; the best match in it, in frame coordinates.
    fn scan_region(
        &mut self,
        frame: &Frame,
        face: &FaceBox,
    ) -> Result<Option<FaceBox>, ServerError> {
        let region = grow(face, frame.width, frame.height);
        if region.width < MIN_REGION || region.height < MIN_REGION {
            return Ok(None);
        }
        copy_region(frame, &region, &mut self.crop);
        // Shrink the region so the face is a little above the smallest face size: the
        // detector's cost grows with the pixels it scans.
        let side = face.width.min(face.height) as f64;
        let k = side / (self.min_face.max(16) as f64 * FACE_OVER_MIN);
        let (scan, k) = if k > 1.1 {
            shrink(&self.crop, k, &mut self.small)?;
            let k = self.crop.width as f64 / self.small.width.max(1) as f64;
            (&self.small, k)
        } else {
            (&self.crop, 1.0)
        };
        let found = self.inner.detect(scan)?;
        let back = |v: i32| (v as f64 * k).round() as i32;
        let plausible = |b: &FaceBox| {
            let s = b.width.min(b.height) as f64;
            s * SIZE_CHANGE >= side && s <= side * SIZE_CHANGE
        };
        Ok(found
            .into_iter()
            .map(|b| FaceBox {
                x: region.x + back(b.x),
                y: region.y + back(b.y),
                width: back(b.width),
                height: back(b.height),
            })
            .filter(plausible)
            .max_by(|a, b| iou(a, face).total_cmp(&iou(b, face))))
    }
}

impl FaceDetector for RoiDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
        if self.known.is_empty() || self.since_full + 1 >= self.full_every {
            return self.full_scan(frame);
        }
        let known = std::mem::take(&mut self.known);
        let mut found: Vec<FaceBox> = Vec::with_capacity(known.len());
        for face in &known {
            match self.scan_region(frame, face)? {
                Some(b) if !found.iter().any(|f| iou(f, &b) >= SAME_FACE_IOU) => found.push(b),
                Some(_) => {}
                // A face left its region (moved fast, turned, left): look everywhere.
                None => return self.full_scan(frame),
            }
        }
        self.since_full += 1;
        self.known = found.clone();
        Ok(found)
    }

    fn configure(&mut self, settings: &Tuning) {
        self.inner.configure(settings);
        self.min_face = settings.min_face;
        // New settings may find different faces: start over with a full scan.
        self.known.clear();
    }
}

/// `face` grown by [`MARGIN`] on every side, clipped to the frame, with even sides.
fn grow(face: &FaceBox, width: u32, height: u32) -> FaceBox {
    let (w, h) = (width as i32, height as i32);
    let mx = (face.width as f64 * MARGIN).round() as i32;
    let my = (face.height as f64 * MARGIN).round() as i32;
    let x0 = (face.x - mx).clamp(0, w);
    let y0 = (face.y - my).clamp(0, h);
    let x1 = (face.x + face.width + mx).clamp(x0, w);
    let y1 = (face.y + face.height + my).clamp(y0, h);
    FaceBox {
        x: x0,
        y: y0,
        width: (x1 - x0) & !1,
        height: (y1 - y0) & !1,
    }
}

/// `src` scaled down by `k` (area averaging) into `out`, with even sides.
fn shrink(src: &Frame, k: f64, out: &mut Frame) -> Result<(), ServerError> {
    let w = (((src.width as f64 / k).round() as i32) & !1).max(2);
    let h = (((src.height as f64 / k).round() as i32) & !1).max(2);
    let flat = Mat::from_slice(&src.data)?;
    let bgr = flat.reshape(3, src.height as i32)?;
    let mut dst = Mat::default();
    imgproc::resize(
        &bgr,
        &mut dst,
        Size::new(w, h),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    out.width = w as u32;
    out.height = h as u32;
    out.data.clear();
    out.data.extend_from_slice(dst.data_bytes()?);
    Ok(())
}

/// Copies `region` of `frame` into `out` (reusing its buffer).
fn copy_region(frame: &Frame, region: &FaceBox, out: &mut Frame) {
    let (rw, rh) = (region.width.max(0) as usize, region.height.max(0) as usize);
    out.width = rw as u32;
    out.height = rh as u32;
    out.data.clear();
    let stride = frame.width as usize * 3;
    for row in 0..rh {
        let start = (region.y as usize + row) * stride + region.x as usize * 3;
        out.data
            .extend_from_slice(&frame.data[start..start + rw * 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Finds the white square in a frame (its bounding box), and logs every frame size
    /// it was asked to scan.
    struct WhiteSquare(Arc<Mutex<Vec<(u32, u32)>>>);
    impl FaceDetector for WhiteSquare {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            self.0.lock().unwrap().push((frame.width, frame.height));
            let mut b: Option<(u32, u32, u32, u32)> = None;
            for y in 0..frame.height {
                for x in 0..frame.width {
                    if frame.pixel(x, y).iter().all(|&c| c > 127) {
                        b = Some(match b {
                            None => (x, y, x, y),
                            Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                        });
                    }
                }
            }
            Ok(b.map(|(x0, y0, x1, y1)| FaceBox {
                x: x0 as i32,
                y: y0 as i32,
                width: (x1 - x0 + 1) as i32,
                height: (y1 - y0 + 1) as i32,
            })
            .into_iter()
            .collect())
        }

        fn configure(&mut self, _: &Tuning) {}
    }

    fn frame_with_square(x: u32, y: u32, side: u32) -> Frame {
        let mut f = Frame::filled(160, 120, [0, 0, 0]);
        for yy in y..y + side {
            for xx in x..x + side {
                let i = (yy as usize * 160 + xx as usize) * 3;
                f.data[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        f
    }

    #[test]
    fn follows_a_moving_face_in_its_region_and_rescans_the_frame_regularly() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut roi = RoiDetector::new(Box::new(WhiteSquare(sizes.clone())), 4, 16);
        let expected = |x: i32, y: i32| FaceBox {
            x,
            y,
            width: 20,
            height: 20,
        };
        // First detection: full frame.
        assert_eq!(
            roi.detect(&frame_with_square(50, 40, 20)).unwrap(),
            vec![expected(50, 40)]
        );
        // Next ones: only the region around the face, in frame coordinates.
        assert_eq!(
            roi.detect(&frame_with_square(54, 42, 20)).unwrap(),
            vec![expected(54, 42)]
        );
        assert_eq!(
            roi.detect(&frame_with_square(58, 44, 20)).unwrap(),
            vec![expected(58, 44)]
        );
        assert_eq!(
            roi.detect(&frame_with_square(60, 44, 20)).unwrap(),
            vec![expected(60, 44)]
        );
        // One full scan in every four detections.
        assert_eq!(
            roi.detect(&frame_with_square(62, 44, 20)).unwrap(),
            vec![expected(62, 44)]
        );
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes[0], (160, 120));
        assert_eq!(
            sizes[1],
            (40, 40),
            "a 20 px face is scanned in a 40 px region"
        );
        assert_eq!(sizes[2], (40, 40));
        assert_eq!(sizes[3], (40, 40));
        assert_eq!(sizes[4], (160, 120));
        assert_eq!(roi.full_scans, 2);
    }

    #[test]
    fn a_large_face_is_scanned_in_a_shrunken_region_and_scaled_back() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut roi = RoiDetector::new(Box::new(WhiteSquare(sizes.clone())), 100, 16);
        let mut frame = Frame::filled(320, 240, [0, 0, 0]);
        for y in 60..160u32 {
            for x in 100..200u32 {
                let i = (y as usize * 320 + x as usize) * 3;
                frame.data[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        roi.detect(&frame).unwrap();
        let found = roi.detect(&frame).unwrap();
        assert_eq!(roi.full_scans, 1, "the second detection is a region scan");
        let b = found[0];
        for (got, want) in [(b.x, 100), (b.y, 60), (b.width, 100), (b.height, 100)] {
            // Within about one scanned pixel (~5 frame pixels).
            assert!((got - want).abs() <= 6, "{b:?}");
        }
        // A 100 px face with faces ≥ 16 px: the 200 px region is scanned at ~1/5 size.
        let (w, h) = sizes.lock().unwrap()[1];
        assert!(w < 60 && h < 60, "scanned {w}x{h}");
    }

    #[test]
    fn a_face_lost_from_its_region_triggers_a_full_scan_at_once() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut roi = RoiDetector::new(Box::new(WhiteSquare(sizes.clone())), 100, 16);
        roi.detect(&frame_with_square(10, 10, 20)).unwrap();
        // The face jumped across the frame: the region is empty, the full scan finds it.
        let found = roi.detect(&frame_with_square(120, 90, 20)).unwrap();
        assert_eq!(found[0].x, 120);
        assert_eq!(roi.full_scans, 2);
        // No face at all: every detection is a full scan.
        roi.detect(&Frame::filled(160, 120, [0, 0, 0])).unwrap();
        roi.detect(&Frame::filled(160, 120, [0, 0, 0])).unwrap();
        assert_eq!(roi.full_scans, 4);
    }

    #[test]
    fn a_face_at_the_very_edge_is_looked_for_in_the_whole_frame() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut roi = RoiDetector::new(Box::new(WhiteSquare(sizes.clone())), 100, 16);
        // A 4 px sliver at the right edge: its region would be too small to scan.
        roi.detect(&frame_with_square(156, 50, 4)).unwrap();
        let found = roi.detect(&frame_with_square(156, 50, 4)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(roi.full_scans, 2);
        assert!(sizes.lock().unwrap().iter().all(|&(w, h)| w > 0 && h > 0));
    }

    #[test]
    fn regions_are_clipped_to_the_frame() {
        let r = grow(
            &FaceBox {
                x: 150,
                y: -5,
                width: 20,
                height: 20,
            },
            160,
            120,
        );
        assert_eq!((r.x, r.y), (140, 0));
        assert!(r.x + r.width <= 160 && r.y + r.height <= 120);
        let mut out = Frame::filled(1, 1, [0, 0, 0]);
        copy_region(&Frame::filled(160, 120, [1, 2, 3]), &r, &mut out);
        assert_eq!(out.data.len(), Frame::byte_len(out.width, out.height));
    }
}
