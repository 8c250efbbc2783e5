//! Face detection beside the frame path: the [`FaceDetector`] trait and what one detection
//! [`Found`], the detector the config asks for ([`factory_for`]); the detectors: the Haar
//! cascade ([`haar`]), the CenterFace network ([`centerface`]) and the region-of-interest
//! wrapper that scans only around known faces between full scans ([`roi`]); and the
//! [`worker`] thread that runs a detector over the newest frame only and
//! publishes its boxes, tagged with the number of the frame they were found in.

pub mod centerface;
pub mod haar;
pub mod roi;
pub mod worker;

pub use haar::{HaarDetector, HaarSettings};
pub use worker::{Detection, DetectorCounters, DetectorPool, DetectorWorker};

use super::frame::{FaceBox, Frame};
use crate::config::{DetectorConfig, DetectorKind};
use crate::error::ServerError;
use std::sync::Arc;

/// What one detection found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// Faces at the detector's threshold: these are boxed.
    pub sure: Vec<FaceBox>,
    /// Candidates just under it: not boxed, but privacy mode hides them too.
    pub faint: Vec<FaceBox>,
}

/// The detector's live settings, as the pipeline holds them (the socket converts the page's
/// per-detector settings into these). Each detector reads what it has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Haar: pyramid step.
    pub scale_factor: f32,
    /// Haar: neighbouring hits needed.
    pub min_neighbors: u32,
    /// CenterFace: lowest confidence (0–1) a face is boxed at.
    pub threshold: f32,
    /// Every detector: the smallest face reported, in frame pixels.
    pub min_face: u32,
}

impl From<&DetectorConfig> for Tuning {
    /// The settings a session starts with.
    fn from(c: &DetectorConfig) -> Self {
        Tuning {
            scale_factor: c.scale_factor as f32,
            min_neighbors: c.min_neighbors.max(0) as u32,
            threshold: c.dnn_threshold,
            min_face: c.min_face,
        }
    }
}

impl Default for Tuning {
    /// The shipped defaults.
    fn default() -> Self {
        Tuning::from(&DetectorConfig::default())
    }
}

/// Finds faces in a frame.
pub trait FaceDetector: Send {
    /// Boxes of the faces in `frame`, in full-frame pixels.
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError>;

    /// The faces and, where the detector has scores, the faint candidates under its
    /// threshold (by default none).
    fn detect_all(&mut self, frame: &Frame) -> Result<Found, ServerError> {
        Ok(Found {
            sure: self.detect(frame)?,
            faint: Vec::new(),
        })
    }

    /// Applies settings changed live from the page (already range-checked). Detectors
    /// apply what they have: the Haar cascade its scale factor, neighbours and smallest
    /// face (which bounds its search); CenterFace its threshold. The frame path draws only
    /// faces of at least the smallest face size, whatever the detector.
    fn configure(&mut self, settings: &Tuning);
}

/// Makes a detector on the detector thread (OpenCV objects stay on the thread that made them).
pub type DetectorFactory =
    Arc<dyn Fn() -> Result<Box<dyn FaceDetector>, ServerError> + Send + Sync>;

/// The detector the config asks for. The Haar cascade scans regions of interest between
/// full-frame scans when `roi-full-scan-every` > 1 (see [`roi`]); CenterFace always
/// sees the whole frame (it needs the context around a face: in a tight region its boxes
/// go astray — `scripts/quality` measured it).
pub fn factory_for(config: &DetectorConfig) -> DetectorFactory {
    let base = base_factory_for(config);
    let (every, min_face) = (config.roi_full_scan_every, config.min_face);
    if every <= 1 || uses_centerface(config) {
        return base;
    }
    Arc::new(move || {
        let roi = roi::RoiDetector::new(base()?, every, min_face);
        Ok(Box::new(roi) as Box<dyn FaceDetector>)
    })
}

/// The whole-frame detector the config asks for: `haar`, or `centerface` when its model
/// file is present (otherwise Haar, with a warning saying why).
pub fn base_factory_for(config: &DetectorConfig) -> DetectorFactory {
    if config.kind == DetectorKind::Centerface {
        if uses_centerface(config) {
            let (model, width, threshold, threads) = (
                config.model.clone(),
                config.dnn_width,
                config.dnn_threshold,
                config.opencv_threads,
            );
            return Arc::new(move || {
                let d = centerface::CenterFace::new(&model, width, threshold, threads)?;
                Ok(Box::new(d) as Box<dyn FaceDetector>)
            });
        }
        tracing::warn!(
            "detector \"centerface\" asked for, but its model {} is missing (run scripts/setup); using the Haar cascade",
            config.model.display()
        );
    }
    HaarDetector::factory(config)
}

/// Whether one detector can serve many sessions in turn: it keeps nothing between frames
/// but its settings (CenterFace, or Haar scanning whole frames). Haar scanning regions of
/// interest remembers each session's faces, so each session needs its own.
pub fn shareable(config: &DetectorConfig) -> bool {
    config.roi_full_scan_every <= 1 || uses_centerface(config)
}

/// The detector threads shared by every session, each with a detector from `factory` (the
/// one `config` asks for; `detector.threads` of them, 0: one per core), or `None` when the
/// detector cannot be shared.
pub fn shared_pool(
    config: &DetectorConfig,
    factory: DetectorFactory,
) -> Result<Option<Arc<DetectorPool>>, ServerError> {
    if !shareable(config) {
        return Ok(None);
    }
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    DetectorPool::new(factory, threads, "detect").map(|p| Some(Arc::new(p)))
}

/// Whether the config gets CenterFace (asked for, and its model is present).
/// The detector [`factory_for`] really makes: CenterFace falls back to the Haar cascade
/// when its model is missing. The page's settings follow this one.
pub fn running_kind(config: &DetectorConfig) -> DetectorKind {
    if config.kind == DetectorKind::Centerface && !uses_centerface(config) {
        DetectorKind::Haar
    } else {
        config.kind
    }
}

fn uses_centerface(config: &DetectorConfig) -> bool {
    config.kind == DetectorKind::Centerface && config.model.is_file()
}
