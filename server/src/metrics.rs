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
/// Viewer-link requests: playlist, parts, segments and the viewer page's status.
pub const VIEWER_REQUESTS: &str = "hls_face_viewer_requests_total";
/// Frames privacy mode pixelated whole (no detection of their shot covered them).
pub const FRAMES_HIDDEN: &str = "hls_face_frames_hidden_total";
/// Frames boxed before privacy was switched on and hidden whole at the encoder's input
/// (they had not been encoded yet when the switch arrived).
pub const FRAMES_HIDDEN_LATE: &str = "hls_face_frames_hidden_late_total";
/// Sessions refused (`why`: `sessions` the session limit, `cpu` no room by CPU, `lagging
/// encoder`, `client` the per-browser limit, `address` the per-address limit, `recordings`
/// max-retained recordings kept or coming, `sockets` the socket limit).
pub const REFUSED: &str = "hls_face_sessions_refused_total";
/// What sessions really cost on this machine against their plan, learned while they run
/// (1: as planned; admission multiplies every plan by it).
pub const SESSION_COST_SCALE: &str = "hls_face_session_cost_scale";
/// Resident memory of the server process (its ffmpeg children not included).
pub const PROCESS_RSS: &str = "hls_face_process_resident_bytes";
/// Open file descriptors of the server process.
pub const PROCESS_FDS: &str = "hls_face_process_open_fds";
/// ffmpeg children running now.
pub const CHILDREN: &str = "hls_face_ffmpeg_children";
/// Open WebSockets (streaming or not).
pub const SOCKETS: &str = "hls_face_sockets_open";
/// Sessions continued on a new socket after theirs dropped (counter).
pub const RESUMED: &str = "hls_face_sessions_resumed_total";
/// HLS requests held now, waiting for a part or a playlist update (gauge).
pub const HELD_REQUESTS: &str = "hls_face_hls_requests_held";
/// New sockets answered 503 before the upgrade because this node of a cluster has no room,
/// so the proxy tries another node (not refusals: the page never sees them).
pub const PASSED_ON: &str = "hls_face_sockets_passed_on_total";

/// A channel's source went down or a publisher was refused (`channel`, `why`: the fault's
/// label: unreachable, credentials, not-found, key-refused, unsupported-codec, silent,
/// ended, unreadable, no-room).
pub const CHANNEL_FAULTS: &str = "hls_face_channel_faults_total";
/// Per channel (`channel`, `state`): 1 for the state it is in, 0 for the others.
pub const CHANNEL_STATE: &str = "hls_face_channel_state";

/// Clients refused by `[auth]` (`why` = missing | wrong | expired | throttled).
pub const AUTH_REFUSED: &str = "hls_face_auth_refusals_total";
/// Browsers that signed in (`[auth]` passphrase or token).
pub const AUTH_SIGN_INS: &str = "hls_face_auth_sign_ins_total";

/// Settings reloads (`result` = ok | error).
pub const CONFIG_RELOADS: &str = "hls_face_config_reloads_total";
/// When the settings file was last reloaded (Unix seconds), and whether that worked (1/0).
pub const CONFIG_RELOADED_AT: &str = "hls_face_config_last_reload_timestamp_seconds";
pub const CONFIG_RELOAD_OK: &str = "hls_face_config_last_reload_success";

/// Every label value a labelled series takes, so `/metrics` lists each series with 0 from
/// start-up instead of only after the first event.
const LABELS: &[(&str, &str, &[&str])] = &[
    (FRAMES, "stage", &["decode", "detect", "encode"]),
    (FRAMES_DROPPED, "stage", &["detect", "encode"]),
    (FFMPEG_FAILURES, "role", &["decoder", "encoder", "remuxer"]),
    (
        REFUSED,
        "why",
        &[
            "sessions",
            "cpu",
            "lagging encoder",
            "client",
            "address",
            "recordings",
            "sockets",
        ],
    ),
    (
        AUTH_REFUSED,
        "why",
        &["missing", "wrong", "expired", "throttled"],
    ),
];

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
            register_zeroes();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(CONFIG_RELOADS, "Settings file reloads (result: ok, error).");
    describe_gauge!(
        CONFIG_RELOADED_AT,
        "When the settings file was last reloaded (Unix seconds)."
    );
    describe_gauge!(
        CONFIG_RELOAD_OK,
        "Whether the last settings reload applied (1) or was refused (0)."
    );
    describe_counter!(
        CHANNEL_FAULTS,
        "Camera channel faults: the source went down, or a publisher was refused (why)."
    );
    describe_gauge!(
        CHANNEL_STATE,
        "Camera channel state: 1 for the state each channel is in (connecting, waiting, live, down, stopped)."
    );
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
    describe_counter!(SEGMENTS, "HLS segments completed.");
    describe_counter!(FFMPEG_FAILURES, "ffmpeg children that failed, by role.");
    describe_counter!(BYTES_IN, Unit::Bytes, "Media bytes received from browsers.");
    describe_counter!(ERRORS, "Errors sent to browsers, by kind.");
    describe_counter!(RECORDINGS, "Recordings remuxed to MP4 for download.");
    describe_counter!(
        FRAMES_HIDDEN_LATE,
        "Frames boxed before privacy was switched on, hidden whole before they were encoded."
    );
    describe_counter!(
        AUTH_REFUSED,
        "Sign-ins, sessions and metrics scrapes refused by [auth], by why."
    );
    describe_counter!(AUTH_SIGN_INS, "Browsers that signed in ([auth]).");
    describe_counter!(
        VIEWER_REQUESTS,
        "Requests on viewer links: playlists, parts, segments and the viewer page's status."
    );
    describe_counter!(
        FRAMES_HIDDEN,
        "Frames privacy mode pixelated whole: no detection of their shot covered them."
    );
    describe_counter!(
        PASSED_ON,
        "New sockets this cluster node had no room for, answered 503 before the upgrade so the proxy tries another node."
    );
    describe_counter!(
        REFUSED,
        "Sessions refused, by why: sessions (the sessions' planned cost or the session limit), cpu (other software has the CPU), lagging encoder, client, address, recordings, sockets."
    );
    describe_gauge!(
        SESSION_COST_SCALE,
        "What sessions cost on this machine against their plan, learned while they run (1 = as planned); admission multiplies every plan by it."
    );
    describe_gauge!(
        PROCESS_RSS,
        Unit::Bytes,
        "Resident memory of the server process."
    );
    describe_gauge!(PROCESS_FDS, "Open file descriptors of the server process.");
    describe_gauge!(CHILDREN, "ffmpeg children running now.");
    describe_gauge!(SOCKETS, "Open WebSockets, streaming or not.");
    describe_counter!(
        RESUMED,
        "Sessions continued on a new socket after theirs dropped (within the grace period)."
    );
    describe_gauge!(
        HELD_REQUESTS,
        "HLS requests held now (blocking playlist reloads, preload-hinted parts)."
    );
}

/// Registers every series at 0 (counters and gauges) so scrapers see them from start-up.
fn register_zeroes() {
    for name in [
        SESSIONS_TOTAL,
        SEGMENTS,
        BYTES_IN,
        RECORDINGS,
        VIEWER_REQUESTS,
        FRAMES_HIDDEN,
        RESUMED,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for (name, label, values) in LABELS {
        for value in *values {
            metrics::counter!(*name, *label => *value).absolute(0);
        }
    }
    for kind in app::protocol::ErrorKind::ALL {
        metrics::counter!(ERRORS, "kind" => kind.code()).absolute(0);
    }
    for name in [SESSIONS_LIVE, CHILDREN, SOCKETS, HELD_REQUESTS] {
        metrics::gauge!(name).increment(0.0);
    }
    let _ = metrics::histogram!(DETECT_SECONDS);
    let _ = metrics::histogram!(ENCODE_SECONDS);
}

/// Reads the process's resident memory (bytes) and open descriptors from `/proc`.
pub fn process_figures() -> (Option<u64>, Option<u64>) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        // SAFETY: sysconf has no preconditions.
        .map(|pages| pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64);
    let fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    (rss, fds)
}

/// The metrics in Prometheus text format.
pub fn render(handle: Option<&PrometheusHandle>) -> String {
    match handle {
        Some(h) => {
            let (rss, fds) = process_figures();
            if let Some(rss) = rss {
                metrics::gauge!(PROCESS_RSS).set(rss as f64);
            }
            if let Some(fds) = fds {
                metrics::gauge!(PROCESS_FDS).set(fds as f64);
            }
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
        for series in [
            "hls_face_errors_total{kind=\"busy\"}",
            "hls_face_ffmpeg_failures_total{role=\"remuxer\"}",
            "hls_face_sessions_refused_total{why=\"lagging encoder\"}",
            "hls_face_sessions_refused_total{why=\"cpu\"}",
            "hls_face_errors_total{kind=\"overloaded\"}",
            "hls_face_frames_hidden_total",
            "hls_face_process_resident_bytes",
            "hls_face_process_open_fds",
            "hls_face_ffmpeg_children",
        ] {
            assert!(text.contains(series), "{series} missing from {text}");
        }
    }
}
