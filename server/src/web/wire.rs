//! The browser's wire types ↔ the pipeline's own, converted here at the socket so the
//! pipeline never sees the browser's types: the recorder's codec, and the page's
//! per-detector settings ↔ the detector's [`Tuning`].

use crate::config::DetectorKind;
use crate::source::Codec;
use crate::video::detector::Tuning;
use app::protocol::{DetectorSettings, InputCodec};

/// The codec a recorder announced, as the decoder reads it.
pub fn codec(codec: InputCodec) -> Codec {
    match codec {
        InputCodec::Vp8 => Codec::Vp8,
        InputCodec::Vp9 => Codec::Vp9,
        InputCodec::H264 => Codec::H264,
    }
}

/// `tuning` as the page shows it for the server's detector `kind`.
pub fn to_page(kind: DetectorKind, tuning: Tuning) -> DetectorSettings {
    match kind {
        DetectorKind::Haar => DetectorSettings::Haar {
            scale_factor: tuning.scale_factor,
            min_neighbors: tuning.min_neighbors,
            min_face: tuning.min_face,
        },
        DetectorKind::Centerface => DetectorSettings::CenterFace {
            threshold: tuning.threshold,
            min_face: tuning.min_face,
        },
    }
}

/// The session's `current` tuning with the page's `settings` applied, or the sentence the
/// page is told: settings of another detector, or a value out of its limits.
pub fn from_page(
    kind: DetectorKind,
    current: Tuning,
    settings: DetectorSettings,
) -> Result<Tuning, String> {
    let ours = to_page(kind, current);
    if !settings.same_detector(&ours) {
        return Err(format!(
            "This server runs the {} detector; its settings are {}.",
            ours.name(),
            ours.settings()
                .iter()
                .map(|s| s.label().to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    settings.check()?;
    let mut tuning = current;
    match settings {
        DetectorSettings::Haar {
            scale_factor,
            min_neighbors,
            min_face,
        } => {
            tuning.scale_factor = scale_factor;
            tuning.min_neighbors = min_neighbors;
            tuning.min_face = min_face;
        }
        DetectorSettings::CenterFace {
            threshold,
            min_face,
        } => {
            tuning.threshold = threshold;
            tuning.min_face = min_face;
        }
    }
    Ok(tuning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_changes_only_its_detectors_settings() {
        let current = Tuning::default();
        let page = DetectorSettings::CenterFace {
            threshold: 0.8,
            min_face: 100,
        };
        let tuned = from_page(DetectorKind::Centerface, current, page).unwrap();
        assert_eq!((tuned.threshold, tuned.min_face), (0.8, 100));
        assert_eq!(tuned.scale_factor, current.scale_factor, "not CenterFace's");
        assert_eq!(to_page(DetectorKind::Centerface, tuned), page);
        // Haar settings sent to a CenterFace server say which detector runs.
        let why = from_page(DetectorKind::Centerface, current, DetectorSettings::haar());
        assert_eq!(
            why,
            Err(
                "This server runs the CenterFace detector; its settings are confidence \
                 threshold, min face size."
                    .into()
            )
        );
        // Out of range: refused with the page's sentence.
        let high = DetectorSettings::CenterFace {
            threshold: 1.5,
            min_face: 100,
        };
        assert!(from_page(DetectorKind::Centerface, current, high).is_err());
        let haar = from_page(DetectorKind::Haar, current, DetectorSettings::haar()).unwrap();
        assert_eq!(to_page(DetectorKind::Haar, haar), DetectorSettings::haar());
    }
}
