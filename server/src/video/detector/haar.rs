//! OpenCV's Haar frontal-face cascade on a downscaled, equalised grey frame.

use super::{DetectorFactory, FaceDetector};
use crate::config::DetectorConfig;
use crate::error::ServerError;
use crate::video::detector::Tuning;
use crate::video::frame::{FaceBox, Frame};
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Haar cascade settings.
#[derive(Debug, Clone)]
pub struct HaarSettings {
    /// Width of the grey image the cascade scans.
    pub detect_width: u32,
    /// The live-tunable part: pyramid scale step, neighbouring hits needed, smallest face
    /// in full-frame pixels (the page may change them; see [`FaceDetector::configure`]).
    pub tuning: Tuning,
    /// OpenCV threads per detection (0 = OpenCV's default).
    pub threads: i32,
}

impl From<&DetectorConfig> for HaarSettings {
    fn from(c: &DetectorConfig) -> Self {
        HaarSettings {
            detect_width: c.detect_width,
            tuning: Tuning::from(c),
            threads: c.opencv_threads,
        }
    }
}

/// OpenCV's Haar frontal-face cascade on a downscaled, equalised grey frame.
pub struct HaarDetector {
    cascade: CascadeClassifier,
    settings: HaarSettings,
    grey: Mat,
    small: Mat,
    equalised: Mat,
}

impl HaarDetector {
    /// Loads the cascade XML.
    pub fn new(cascade: &Path, settings: HaarSettings) -> Result<Self, ServerError> {
        let path = cascade.to_string_lossy();
        let classifier = CascadeClassifier::new(cascade).map_err(|source| ServerError::OpenCv {
            what: format!("loading {path}"),
            source,
        })?;
        if settings.threads > 0 {
            opencv::core::set_num_threads(settings.threads)?;
        }
        if classifier.empty()? {
            return Err(ServerError::Detector(format!(
                "cascade {path} is empty or missing"
            )));
        }
        Ok(HaarDetector {
            cascade: classifier,
            settings,
            grey: Mat::default(),
            small: Mat::default(),
            equalised: Mat::default(),
        })
    }

    /// A factory for the server's sessions, from the pipeline config.
    pub fn factory(config: &DetectorConfig) -> DetectorFactory {
        let cascade = config.cascade.clone();
        let settings = HaarSettings::from(config);
        Arc::new(move || {
            Ok(Box::new(HaarDetector::new(&cascade, settings.clone())?) as Box<dyn FaceDetector>)
        })
    }
}

impl FaceDetector for HaarDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
        use opencv::imgproc;
        let flat = Mat::from_slice(&frame.data)?;
        let bgr = flat.reshape(3, frame.height as i32)?;
        imgproc::cvt_color_def(&bgr, &mut self.grey, imgproc::COLOR_BGR2GRAY)?;
        let scale = (self.settings.detect_width as f64 / frame.width as f64).min(1.0);
        let size = Size::new(
            (frame.width as f64 * scale).round() as i32,
            (frame.height as f64 * scale).round() as i32,
        );
        imgproc::resize(
            &self.grey,
            &mut self.small,
            size,
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        imgproc::equalize_hist(&self.small, &mut self.equalised)?;
        let tuning = self.settings.tuning;
        let min_side = ((tuning.min_face as f64 * scale).round() as i32).max(12);
        let mut found = Vector::<Rect>::new();
        self.cascade.detect_multi_scale(
            &self.equalised,
            &mut found,
            tuning.scale_factor as f64,
            tuning.min_neighbors as i32,
            0,
            Size::new(min_side, min_side),
            Size::new(0, 0),
        )?;
        let back = |v: i32| (v as f64 / scale).round() as i32;
        let min_face = tuning.min_face as i32;
        Ok(found
            .iter()
            .map(|r| FaceBox {
                x: back(r.x),
                y: back(r.y),
                width: back(r.width),
                height: back(r.height),
            })
            // The cascade's minimum is in scaled pixels; rounding can let a face a pixel
            // or two under the limit through.
            .filter(|b| b.width.min(b.height) >= min_face)
            .collect())
    }

    fn configure(&mut self, settings: &Tuning) {
        self.settings.tuning = *settings;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haar_honours_live_settings() {
        let config = DetectorConfig::default();
        let mut haar = HaarDetector::new(&config.cascade, HaarSettings::from(&config)).unwrap();
        assert_eq!(haar.settings.tuning, Tuning::default());
        let tuned = Tuning {
            scale_factor: 1.3,
            min_neighbors: 6,
            min_face: 120,
            ..Tuning::default()
        };
        haar.configure(&tuned);
        assert_eq!(haar.settings.tuning, tuned);
    }

    #[test]
    fn haar_reports_a_missing_cascade() {
        let settings = HaarSettings::from(&DetectorConfig::default());
        assert!(HaarDetector::new(Path::new("/nonexistent/cascade.xml"), settings).is_err());
    }

    #[test]
    fn haar_finds_no_face_in_a_flat_frame() {
        let config = DetectorConfig::default();
        let mut haar = HaarDetector::new(&config.cascade, HaarSettings::from(&config)).unwrap();
        let boxes = haar.detect(&Frame::filled(640, 480, [90, 90, 90])).unwrap();
        assert!(boxes.is_empty());
    }
}
