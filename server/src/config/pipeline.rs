//! `[pipeline]` with the sections the pipeline is made of — `[hls]`, `[detector]`,
//! `[recording]` — and what the pipeline derives from them.

use app::protocol::DetectorSettings;
use serde::Deserialize;
use std::path::PathBuf;

/// `[pipeline]`: where sessions live and the programs they run; with the `[hls]`,
/// `[detector]` and `[recording]` sections, which the settings file writes at the top level
/// and the pipeline receives here together.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct PipelineConfig {
    /// Parent of the per-session folders.
    pub runtime_dir: PathBuf,
    /// ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Address space each ffmpeg child (and ffprobe) may use, in MiB.
    pub child_memory_mb: u64,
    /// Stats push interval.
    pub stats_interval_ms: u64,
    /// `[hls]`: the output stream.
    pub hls: HlsConfig,
    /// `[detector]`: face detection and the boxes drawn from it.
    pub detector: DetectorConfig,
    /// `[recording]`: what a stopped session offers for download.
    pub recording: RecordingConfig,
}

/// `[hls]`: the output frame rate, the encoder and the LL-HLS stream's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct HlsConfig {
    /// Output frame rate.
    pub frame_rate: u32,
    /// Segment length in seconds (one keyframe each).
    pub segment_seconds: f64,
    /// Longest LL-HLS part in seconds (`PART-TARGET`).
    pub part_seconds: f64,
    /// Parts players stay behind the newest one (`PART-HOLD-BACK` = this × `PART-TARGET`).
    pub hold_back_parts: u32,
    /// Segments kept in the live playlist.
    pub playlist_size: u32,
    /// libx264 preset.
    pub x264_preset: String,
}

/// `[detector]`: which detector, how often and how finely it looks, and how its boxes hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct DetectorConfig {
    /// Face detector.
    pub kind: DetectorKind,
    /// Haar cascade file.
    pub cascade: PathBuf,
    /// CenterFace ONNX model file.
    pub model: PathBuf,
    /// Width the frame is scaled to for CenterFace.
    pub dnn_width: u32,
    /// Minimum CenterFace score.
    pub dnn_threshold: f32,
    /// Detections in a row before a box is drawn.
    pub confirm_detections: u32,
    /// Missed detections a drawn box survives.
    pub hold_detections: u32,
    /// Detector working width.
    pub detect_width: u32,
    /// Haar scale factor.
    pub scale_factor: f64,
    /// Haar min neighbours.
    pub min_neighbors: i32,
    /// Smallest face in full-frame pixels.
    pub min_face: u32,
    /// Most detections a session runs per second.
    pub detect_fps: u32,
    /// Most detections a session runs per second in privacy mode (each frame waits for a
    /// detection at or after it, so this also bounds the wait).
    pub privacy_detect_fps: u32,
    /// OpenCV worker threads per detection (0: OpenCV's default, all cores).
    pub opencv_threads: i32,
    /// Detector threads shared by every session, each with its own detector (0: one per
    /// core). A stateful detector (Haar scanning regions of interest) runs one thread per
    /// session instead.
    pub threads: u32,
    /// Detections between full-frame scans; in between, only the regions around known
    /// faces are scanned. 0 or 1 scans the whole frame every time.
    pub roi_full_scan_every: u32,
    /// Longest a live frame waits for a detection at or after it (boxes then sit where the
    /// face is on that frame); 0, the default: frames never wait, the follower carries the
    /// newest detection's faces to them.
    pub max_hold_ms: u64,
}

/// `[recording]`: the download a stopped session offers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct RecordingConfig {
    /// Longest recording kept for download, in seconds (older segments are deleted);
    /// 0 keeps only the live window and offers no download.
    pub max_secs: u64,
}

/// The sections the pipeline is made of: written at the top level of the settings file
/// (`[hls]`, `[detector]`, `[recording]`), received inside [`PipelineConfig`].
pub(super) const PIPELINE_SECTIONS: [&str; 3] = ["hls", "detector", "recording"];

/// Keys that lived in `[pipeline]` before it was split, and their section and key now: an
/// old settings file or variable gets told instead of "unknown field".
pub(super) const MOVED_KEYS: &[(&str, &str, &str)] = &[
    ("frame-rate", "hls", "frame-rate"),
    ("segment-seconds", "hls", "segment-seconds"),
    ("part-seconds", "hls", "part-seconds"),
    ("playlist-size", "hls", "playlist-size"),
    ("x264-preset", "hls", "x264-preset"),
    ("detector", "detector", "kind"),
    ("cascade", "detector", "cascade"),
    ("model", "detector", "model"),
    ("dnn-width", "detector", "dnn-width"),
    ("dnn-threshold", "detector", "dnn-threshold"),
    ("confirm-detections", "detector", "confirm-detections"),
    ("hold-detections", "detector", "hold-detections"),
    ("detect-width", "detector", "detect-width"),
    ("scale-factor", "detector", "scale-factor"),
    ("min-neighbors", "detector", "min-neighbors"),
    ("min-face", "detector", "min-face"),
    ("detect-fps", "detector", "detect-fps"),
    ("opencv-threads", "detector", "opencv-threads"),
    ("roi-full-scan-every", "detector", "roi-full-scan-every"),
    ("max-hold-ms", "detector", "max-hold-ms"),
    ("recording-max-secs", "recording", "max-secs"),
];

/// Which face detector sessions and `process` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// OpenCV's Haar frontal-face cascade: fast, but boxes textures (fruit, foliage) as
    /// faces and misses turned, small or badly lit ones.
    Haar,
    /// CenterFace, a small CNN through OpenCV's dnn module: accurate on real footage.
    Centerface,
}

impl PipelineConfig {
    /// The pipeline's own values, then its sections'.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        self.hls.check()?;
        self.detector.check()?;
        super::first_failure(&[
            (
                self.recording.max_secs <= 6 * 3600,
                "recording.max-secs must be at most 21600 (6 hours)",
            ),
            (
                self.stats_interval_ms >= 50,
                "pipeline.stats-interval-ms must be at least 50",
            ),
            (
                (256..=65_536).contains(&self.child_memory_mb),
                "pipeline.child-memory-mb must be 256..=65536",
            ),
        ])
    }

    /// The ffmpeg children's spawner, with their memory cap.
    pub fn spawner(&self) -> std::sync::Arc<crate::child::Ffmpeg> {
        crate::child::Ffmpeg::new(&self.ffmpeg, self.child_memory_bytes())
    }

    /// [`Self::child_memory_mb`] in bytes.
    pub fn child_memory_bytes(&self) -> u64 {
        self.child_memory_mb.saturating_mul(1024 * 1024)
    }

    /// Whether live sessions keep their segments for a recording download.
    pub fn records(&self) -> bool {
        self.recording.max_secs > 0
    }

    /// How far behind the live edge players stay, in seconds (`PART-HOLD-BACK`).
    pub fn live_sync_seconds(&self) -> f32 {
        app::hls_path::live_sync_seconds(self.hls.part_seconds, self.hls.hold_back_parts)
    }
}

impl DetectorConfig {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        super::first_failure(&[
            (
                self.detect_width >= 64,
                "detector.detect-width must be at least 64",
            ),
            (
                (64..=1920).contains(&self.dnn_width),
                "detector.dnn-width must be 64..=1920",
            ),
            (
                self.dnn_threshold > 0.0 && self.dnn_threshold < 1.0,
                "detector.dnn-threshold must be in (0, 1)",
            ),
            (
                (1..=10).contains(&self.confirm_detections),
                "detector.confirm-detections must be 1..=10",
            ),
            (
                (1..=60).contains(&self.detect_fps),
                "detector.detect-fps must be 1..=60",
            ),
            (
                (1..=60).contains(&self.privacy_detect_fps),
                "detector.privacy-detect-fps must be 1..=60",
            ),
            (
                self.opencv_threads >= 0,
                "detector.opencv-threads must not be negative",
            ),
            (self.threads <= 64, "detector.threads must be at most 64"),
            (
                [DetectorKind::Haar, DetectorKind::Centerface]
                    .iter()
                    .all(|&kind| self.page_settings_of(kind).check().is_ok()),
                "detector.scale-factor, min-neighbors, dnn-threshold and min-face must be within \
                 the limits the page allows (1.05-1.5, 1-10, 0.1-0.95, 16-1080)",
            ),
            (
                self.roi_full_scan_every <= 300,
                "detector.roi-full-scan-every must be at most 300",
            ),
            (
                self.max_hold_ms <= 2000,
                "detector.max-hold-ms must be at most 2000",
            ),
        ])
    }

    /// The part of these settings the page may change live, as the page shows it for this
    /// detector (checked against the same limits when the settings are loaded).
    pub fn page_settings(&self) -> DetectorSettings {
        self.page_settings_of(self.kind)
    }

    /// [`DetectorConfig::page_settings`] as they would be for detector `kind`.
    fn page_settings_of(&self, kind: DetectorKind) -> DetectorSettings {
        match kind {
            DetectorKind::Haar => DetectorSettings::Haar {
                scale_factor: self.scale_factor as f32,
                min_neighbors: self.min_neighbors.max(0) as u32,
                min_face: self.min_face,
            },
            DetectorKind::Centerface => DetectorSettings::CenterFace {
                threshold: self.dnn_threshold,
                min_face: self.min_face,
            },
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            runtime_dir: "target/hls-face-runtime".into(),
            ffmpeg: "ffmpeg".into(),
            child_memory_mb: 1024,
            stats_interval_ms: 500,
            hls: HlsConfig::default(),
            detector: DetectorConfig::default(),
            recording: RecordingConfig::default(),
        }
    }
}

impl HlsConfig {
    /// Frames in a live stream's first segment: what a player needs to start (its hold-back
    /// and one part more), so the stream is playable that soon; 0 when that is no shorter
    /// than a whole segment.
    pub fn first_segment_frames(&self) -> u32 {
        // Whole frames a part holds (a part closes with its last frame that fits).
        let per_part = (self.part_seconds * f64::from(self.frame_rate) + 1e-6)
            .floor()
            .max(1.0) as u32;
        let frames = (self.hold_back_parts + 1) * per_part;
        let whole = (f64::from(self.frame_rate) * self.segment_seconds).round() as u32;
        if frames < whole {
            frames
        } else {
            0
        }
    }

    pub(crate) fn check(&self) -> Result<(), &'static str> {
        super::first_failure(&[
            (
                self.frame_rate >= 1 && self.frame_rate <= 60,
                "hls.frame-rate must be 1..=60",
            ),
            (
                (0.5..=6.0).contains(&self.segment_seconds),
                "hls.segment-seconds must be 0.5..=6",
            ),
            (
                self.part_seconds >= 0.03 && self.part_seconds * 2.0 <= self.segment_seconds,
                "hls.part-seconds must be at least 0.03 and at most half of segment-seconds",
            ),
            (
                self.part_seconds * f64::from(self.frame_rate) >= 0.999,
                "hls.part-seconds must hold at least one frame (1 / hls.frame-rate)",
            ),
            (
                (2..=10).contains(&self.hold_back_parts),
                "hls.hold-back-parts must be 2..=10 (the spec's least is 2)",
            ),
            (
                self.playlist_size >= 2,
                "hls.playlist-size must be at least 2",
            ),
        ])
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            frame_rate: 30,
            segment_seconds: 0.5,
            part_seconds: 0.034,
            hold_back_parts: 6,
            playlist_size: 12,
            x264_preset: "ultrafast".into(),
        }
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            kind: DetectorKind::Centerface,
            cascade: "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml".into(),
            model: "models/centerface.onnx".into(),
            dnn_width: 224,
            dnn_threshold: 0.5,
            confirm_detections: 2,
            hold_detections: 2,
            detect_width: 320,
            scale_factor: DetectorSettings::DEFAULT_SCALE_FACTOR,
            min_neighbors: DetectorSettings::DEFAULT_MIN_NEIGHBORS as i32,
            min_face: DetectorSettings::DEFAULT_MIN_FACE,
            detect_fps: 2,
            privacy_detect_fps: 6,
            opencv_threads: 1,
            threads: 0,
            roi_full_scan_every: 10,
            max_hold_ms: 0,
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { max_secs: 1800 }
    }
}

impl From<&HlsConfig> for crate::hls::packager::PackagerSettings {
    fn from(hls: &HlsConfig) -> Self {
        crate::hls::packager::PackagerSettings {
            segment_seconds: hls.segment_seconds,
            part_seconds: hls.part_seconds,
            hold_back_parts: hls.hold_back_parts,
            window: hls.playlist_size as usize,
            clock_origin: None,
        }
    }
}
