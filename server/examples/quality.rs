//! Detection-quality benchmark (`scripts/quality`): runs each detector over generated,
//! labelled clips — a face moved, zoomed, small, dark and washed out, plus face-free
//! clips — and prints recall, false boxes per 100 frames and ms per frame as a table.
//!
//! Clips are composed here with OpenCV from photos a registry package ships (see
//! `scripts/media`), so every frame's true face box is known exactly.

use anyhow::{Context, Result};
use opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use server::config::DetectorConfig;
use server::video::detector::centerface::CenterFace;
use server::video::detector::roi::RoiDetector;
use server::video::detector::{FaceDetector, HaarDetector, HaarSettings};
use server::video::frame::{FaceBox, Frame};
use server::video::tracker::{iou, Tracker};
use std::path::{Path, PathBuf};
use std::time::Instant;

const W: i32 = 640;
const H: i32 = 480;
const FRAMES: usize = 90;
/// The astronaut's face in scikit-image's 512×512 `astronaut.png` (labelled by hand:
/// hairline to chin, ear to ear).
const FACE_IN_PHOTO: (f64, f64, f64, f64) = (172.0, 40.0, 112.0, 130.0);
/// A detection counts as the face when it overlaps the true box this much.
const HIT_IOU: f32 = 0.3;

struct Clip {
    name: &'static str,
    photo: &'static str,
    has_face: bool,
    /// Photo side in pixels, top-left corner, brightness gain and offset, at frame `n`.
    place: fn(usize) -> (f64, f64, f64, f64, f64),
}

fn wave(n: usize, period: f64) -> f64 {
    (2.0 * std::f64::consts::PI * n as f64 / 30.0 / period).sin()
}

const CLIPS: [Clip; 7] = [
    Clip {
        name: "drift",
        photo: "astronaut.png",
        has_face: true,
        place: |n| {
            (
                400.0,
                120.0 + 60.0 * wave(n, 3.0),
                40.0 + 20.0 * wave(n, 2.0),
                1.0,
                0.0,
            )
        },
    },
    Clip {
        name: "zoom",
        photo: "astronaut.png",
        has_face: true,
        place: |n| {
            let s = 260.0 + 200.0 * n as f64 / FRAMES as f64;
            (s, (640.0 - s) / 2.0, (480.0 - s) / 2.0, 1.0, 0.0)
        },
    },
    Clip {
        name: "small",
        photo: "astronaut.png",
        has_face: true,
        place: |n| (240.0, 200.0 + 100.0 * wave(n, 3.0), 120.0, 1.0, 0.0),
    },
    Clip {
        name: "dark",
        photo: "astronaut.png",
        has_face: true,
        place: |n| (400.0, 120.0 + 60.0 * wave(n, 3.0), 40.0, 0.45, -10.0),
    },
    Clip {
        name: "washed-out",
        photo: "astronaut.png",
        has_face: true,
        place: |n| (400.0, 120.0, 40.0 + 20.0 * wave(n, 2.0), 0.55, 110.0),
    },
    Clip {
        name: "no-face: coffee",
        photo: "coffee.png",
        has_face: false,
        place: |n| (480.0, 80.0 + 40.0 * wave(n, 3.0), 0.0, 1.0, 0.0),
    },
    Clip {
        name: "no-face: cat",
        photo: "chelsea.png",
        has_face: false,
        place: |n| (460.0, 90.0 + 40.0 * wave(n, 3.0), 10.0, 1.0, 0.0),
    },
];

/// Composes frame `n` of `clip` and its true face box.
fn compose(photo: &Mat, clip: &Clip, n: usize) -> Result<(Frame, Option<FaceBox>)> {
    let (side, x, y, gain, offset) = (clip.place)(n);
    let aspect = photo.rows() as f64 / photo.cols() as f64;
    let (pw, ph) = (side.round() as i32, (side * aspect).round() as i32);
    let mut scaled = Mat::default();
    imgproc::resize(
        photo,
        &mut scaled,
        Size::new(pw, ph),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut lit = Mat::default();
    scaled.convert_to(&mut lit, -1, gain, offset)?;
    let mut canvas =
        Mat::new_rows_cols_with_default(H, W, CV_8UC3, Scalar::new(72.0, 56.0, 48.0, 0.0))?;
    let (x, y) = (x.round() as i32, y.round() as i32);
    let visible = Rect::new(
        x.max(0),
        y.max(0),
        (x + pw).min(W) - x.max(0),
        (y + ph).min(H) - y.max(0),
    );
    let src = Rect::new(visible.x - x, visible.y - y, visible.width, visible.height);
    let part = lit.roi(src)?;
    let mut dst = canvas.roi_mut(visible)?;
    part.copy_to(&mut dst)?;
    let frame = Frame {
        width: W as u32,
        height: H as u32,
        data: canvas.data_bytes()?.to_vec(),
        hidden: false,
    };
    let truth = clip.has_face.then(|| {
        let k = side / 512.0;
        let (fx, fy, fw, fh) = FACE_IN_PHOTO;
        FaceBox {
            x: x + (fx * k) as i32,
            y: y + (fy * k) as i32,
            width: (fw * k) as i32,
            height: (fh * k) as i32,
        }
    });
    Ok((frame, truth))
}

#[derive(Default)]
struct Score {
    face_frames: usize,
    hits: usize,
    frames: usize,
    false_boxes: usize,
    millis: Vec<f64>,
}

fn main() -> Result<()> {
    let media = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/media".into()),
    );
    let config = DetectorConfig::default();
    // The shipped configuration and the variants worth comparing against it.
    let haar = |c: &DetectorConfig| -> Result<Box<dyn FaceDetector>> {
        Ok(Box::new(HaarDetector::new(
            &c.cascade,
            HaarSettings::from(c),
        )?))
    };
    let centerface = |c: &DetectorConfig| -> Result<Box<dyn FaceDetector>> {
        Ok(Box::new(CenterFace::new(
            Path::new(&c.model),
            c.dnn_width,
            c.dnn_threshold,
            c.opencv_threads,
        )?))
    };
    let roi = |d: Box<dyn FaceDetector>| -> Box<dyn FaceDetector> {
        Box::new(RoiDetector::new(
            d,
            config.roi_full_scan_every,
            config.min_face,
        ))
    };
    let fast_haar = DetectorConfig {
        scale_factor: 1.2,
        min_face: 64,
        ..config.clone()
    };
    let lbp = DetectorConfig {
        cascade: "/usr/share/opencv4/lbpcascades/lbpcascade_frontalface_improved.xml".into(),
        ..config.clone()
    };
    let dnn_at = |dnn_width: u32| DetectorConfig {
        dnn_width,
        ..config.clone()
    };
    let mut detectors: Vec<(String, Box<dyn FaceDetector>)> = vec![
        ("haar".into(), haar(&config)?),
        ("haar+roi (shipped)".into(), roi(haar(&config)?)),
        ("haar 1.2/64px".into(), haar(&fast_haar)?),
        ("lbp".into(), haar(&lbp)?),
    ];
    match centerface(&config) {
        Ok(d) => {
            detectors.push(("centerface".into(), d));
            for width in [224, 160, 128] {
                detectors.push((format!("centerface {width}"), centerface(&dnn_at(width))?));
            }
        }
        Err(e) => eprintln!("centerface skipped: {e}"),
    }
    let mut rows = Vec::new();
    for (name, detector) in &mut detectors {
        for smoothing in [false, true] {
            let mut per_clip = Vec::new();
            let mut total = Score::default();
            for clip in &CLIPS {
                let photo = imgcodecs::imread(media.join(clip.photo), imgcodecs::IMREAD_COLOR)
                    .with_context(|| format!("reading {}", clip.photo))?;
                anyhow::ensure!(!photo.empty(), "{} missing: run scripts/media", clip.photo);
                let mut tracker = Tracker::new(
                    if smoothing {
                        config.confirm_detections
                    } else {
                        1
                    },
                    if smoothing { config.hold_detections } else { 0 },
                );
                let mut s = Score::default();
                for n in 0..FRAMES {
                    let (frame, truth) = compose(&photo, clip, n)?;
                    let t = Instant::now();
                    let found = detector.detect(&frame)?;
                    s.millis.push(t.elapsed().as_secs_f64() * 1000.0);
                    let boxes = tracker.update(&found);
                    s.frames += 1;
                    let mut matched = false;
                    for b in &boxes {
                        match &truth {
                            Some(t) if !matched && iou(b, t) >= HIT_IOU => matched = true,
                            _ => s.false_boxes += 1,
                        }
                    }
                    if truth.is_some() {
                        s.face_frames += 1;
                        s.hits += usize::from(matched);
                    }
                }
                total.face_frames += s.face_frames;
                total.hits += s.hits;
                total.frames += s.frames;
                total.false_boxes += s.false_boxes;
                total.millis.extend(&s.millis);
                per_clip.push((clip.name, s));
            }
            rows.push((name.clone(), smoothing, per_clip, total));
        }
    }
    println!("| detector | recall % (raw) | recall % (confirm+hold) | false boxes / 100 frames (confirm+hold) | ms/detection (median) | ms/detection (mean) |");
    println!("|---|---|---|---|---|---|");
    for pair in rows.chunks(2) {
        let [(name, _, _, raw), (_, _, _, smooth)] = pair else {
            continue;
        };
        let recall = |s: &Score| 100.0 * s.hits as f64 / s.face_frames.max(1) as f64;
        let mut ms = raw.millis.clone();
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            recall(raw),
            recall(smooth),
            100.0 * smooth.false_boxes as f64 / smooth.frames.max(1) as f64,
            ms[ms.len() / 2],
            mean
        );
    }
    println!();
    println!(
        "| detector | smoothing | clip | recall % | false boxes / 100 frames | ms/frame (median) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, smoothing, per_clip, total) in &rows {
        for (clip, s) in per_clip.iter().chain(std::iter::once(&(
            "ALL",
            Score {
                face_frames: total.face_frames,
                hits: total.hits,
                frames: total.frames,
                false_boxes: total.false_boxes,
                millis: total.millis.clone(),
            },
        ))) {
            let recall = if s.face_frames > 0 {
                format!("{:.1}", 100.0 * s.hits as f64 / s.face_frames as f64)
            } else {
                "—".into()
            };
            let mut ms = s.millis.clone();
            ms.sort_by(f64::total_cmp);
            println!(
                "| {name} | {} | {clip} | {recall} | {:.1} | {:.1} |",
                if *smoothing { "confirm+hold" } else { "raw" },
                100.0 * s.false_boxes as f64 / s.frames as f64,
                ms[ms.len() / 2]
            );
        }
    }
    Ok(())
}
