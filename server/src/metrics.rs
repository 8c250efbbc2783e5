//! Process-wide Prometheus metrics: their names and help texts, the recorder, and the text
//! served at `GET /metrics`.
//!
//! Stages record through the `metrics` facade (a hash lookup per call, cheap at 30 fps);
//! the recorder is installed once per process, so servers started in one process (tests)
//! share their figures, as Prometheus would see one process.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Sessions running a pipeline now.
pub const SESSIONS_LIVE: &str = "hls_face_sessions_live";
/// Sessions started since the process began.
pub const SESSIONS_TOTAL: &str = "hls_face_sessions_total";
/// Frames through a stage (`stage` = decode | detect | encode).
pub const FRAMES: &str = "hls_face_frames_total";
/// Frames a stage let go (`stage` = detect: skipped for a newer one; encode: backlog).
pub const FRAMES_DROPPED: &str = "hls_face_frames_dropped_total";
/// Seconds one face detection took.
pub const DETECT_SECONDS: &str = "hls_face_detect_seconds";
/// Seconds one frame took to enter the encoder (ffmpeg's stdin accepts it once it has
/// room: this is the encoder's pace as the pipeline feels it).
pub const ENCODE_SECONDS: &str = "hls_face_encode_seconds";
/// HLS segments written.
pub const SEGMENTS: &str = "hls_face_segments_total";
/// ffmpeg children that exited with a failure (`role` = decoder | encoder | remuxer).
pub const FFMPEG_FAILURES: &str = "hls_face_ffmpeg_failures_total";
/// Media bytes received from browsers.
pub const BYTES_IN: &str = "hls_face_bytes_in_total";
/// Errors sent to browsers (`kind` = the protocol's error kind).
pub const ERRORS: &str = "hls_face_errors_total";
/// Recordings remuxed to MP4 for download.
pub const RECORDINGS: &str = "hls_face_recordings_total";
/// Viewer-link requests served (playlist and segments).
pub const VIEWER_REQUESTS: &str = "hls_face_viewer_requests_total";

/// Histogram buckets in seconds: 1 ms to 1 s, dense where detection and encoding live.
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032, 0.05, 0.1, 0.25, 1.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once) and returns the handle that renders it; `None`
/// if another recorder was installed first (then `/metrics` says so).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(builder) => builder.build_recorder(),
                Err(e) => {
                    tracing::warn!("metrics buckets rejected: {e}");
                    PrometheusBuilder::new().build_recorder()
                }
            };
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!("metrics recorder not installed: {e}");
                return None;
            }
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_gauge!(SESSIONS_LIVE, "Sessions running a pipeline now.");
    describe_counter!(SESSIONS_TOTAL, "Sessions started.");
    describe_counter!(FRAMES, "Frames through a stage (decode, detect, encode).");
    describe_counter!(
        FRAMES_DROPPED,
        "Frames let go: detect = skipped for a newer frame, encode = encoder backlog."
    );
    describe_histogram!(
        DETECT_SECONDS,
        Unit::Seconds,
        "Duration of one face detection."
    );
    describe_histogram!(
        ENCODE_SECONDS,
        Unit::Seconds,
        "Time one frame waited to enter the encoder's input."
    );
    describe_counter!(SEGMENTS, "HLS segments written.");
    describe_counter!(FFMPEG_FAILURES, "ffmpeg children that failed, by role.");
    describe_counter!(BYTES_IN, Unit::Bytes, "Media bytes received from browsers.");
    describe_counter!(ERRORS, "Errors sent to browsers, by kind.");
    describe_counter!(RECORDINGS, "Recordings remuxed to MP4 for download.");
    describe_counter!(VIEWER_REQUESTS, "Requests served through viewer links.");
}

/// The metrics in Prometheus text format.
pub fn render(handle: Option<&PrometheusHandle>) -> String {
    match handle {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => "# metrics recorder unavailable in this process\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_metrics_with_help_and_labels() {
        let handle = install();
        metrics::counter!(FRAMES, "stage" => "decode").increment(3);
        metrics::histogram!(DETECT_SECONDS).record(0.005);
        let text = render(handle.as_ref());
        assert!(text.contains("# HELP hls_face_frames_total"), "{text}");
        assert!(
            text.contains("hls_face_frames_total{stage=\"decode\"}"),
            "{text}"
        );
        assert!(
            text.contains("hls_face_detect_seconds_bucket{le=\"0.006\"}"),
            "{text}"
        );
    }
}
