//! `GET /hls/<session-id>/<file>` and `GET /view/<viewer-token>/<file>`: serve only plain
//! files inside that session's folder, with HLS content types and no caching of the
//! playlist; anything else is 404.
//!
//! Playlist requests may carry `_HLS_msn=N` (LL-HLS blocking reload): the response is held
//! until segment N exists or the recording ends, so players learn of a new segment the
//! moment it is written instead of polling. A viewer token reaches only the live stream
//! (playlist and segments, never the recording) and only while its session runs.

use super::AppState;
use crate::metrics;
use crate::pipeline::playlist::with_server_control;
use crate::session::registry::{Folder, PlaylistProgress, SessionId};
use app::hls_path::{content_type, PLAYLIST, RECORDING};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio_util::io::ReaderStream;

/// The viewer link's liveness probe (`app::hls_path::viewer_status`): 200 while the
/// session runs, 404 after.
pub const VIEWER_STATUS: &str = "status";

/// Longest a blocking playlist request is held (a few segment lengths).
const MAX_HOLD: Duration = Duration::from_secs(3);

/// The session owner's route: every file of the session, including the recording.
pub async fn serve(
    State(state): State<AppState>,
    Path((session, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let folder = SessionId::parse(&session).and_then(|id| state.shared.registry.folder(&id));
    match folder {
        Some(folder) => serve_file(folder, &file, query.as_deref()).await,
        None => not_found(),
    }
}

/// The viewer link's route: the live playlist and its segments, while the session runs.
pub async fn serve_viewer(
    State(state): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let registry = &state.shared.registry;
    let folder = SessionId::parse(&token)
        .and_then(|t| registry.viewer_session(&t))
        .and_then(|id| registry.folder(&id));
    if file == VIEWER_STATUS {
        // The viewer page asks this every second, to say "ended" as soon as it is.
        return match folder {
            Some(_) => ([(header::CACHE_CONTROL, "no-store")], "live").into_response(),
            None => not_found(),
        };
    }
    match folder {
        Some(folder) if file == PLAYLIST || in_live_window(&folder, &file).await => {
            ::metrics::counter!(metrics::VIEWER_REQUESTS).increment(1);
            serve_file(folder, &file, query.as_deref()).await
        }
        _ => not_found(),
    }
}

/// Whether `file` is a segment the live playlist lists now: a viewer reaches only the live
/// window, never the older segments kept for the owner's recording.
async fn in_live_window(folder: &Folder, file: &str) -> bool {
    match tokio::fs::read_to_string(folder.dir.join(PLAYLIST)).await {
        Ok(playlist) => playlist.lines().any(|line| line.trim() == file),
        Err(_) => false,
    }
}

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

async fn serve_file(folder: Folder, file: &str, query: Option<&str>) -> Response {
    let Some(mime) = content_type(file) else {
        return not_found();
    };
    let is_playlist = file == PLAYLIST;
    let msn = query
        .and_then(|q| super::query_param(q, "_HLS_msn"))
        .and_then(|v| v.parse::<u64>().ok());
    if let (true, Some(msn)) = (is_playlist, msn) {
        let mut progress = folder.progress.clone();
        let ready = |p: &PlaylistProgress| p.segments > msn || p.ended;
        // A timeout or a vanished session just answers with the playlist as it is.
        let _ = tokio::time::timeout(MAX_HOLD, progress.wait_for(ready)).await;
    }
    let path = folder.dir.join(file);
    // Only regular files, never symlinks (symlink_metadata does not follow them).
    let len = match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.file_type().is_file() => meta.len(),
        _ => return not_found(),
    };
    if is_playlist {
        let Ok(bytes) = tokio::fs::read(&path).await else {
            return not_found();
        };
        if bytes.is_empty() {
            // Never an empty playlist (a full disk truncates it): players retry.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "playlist not ready",
            )
                .into_response();
        }
        let text = with_server_control(&String::from_utf8_lossy(&bytes));
        return (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "no-cache, no-store"),
            ],
            text,
        )
            .into_response();
    }
    // Segments are small, but a recording may be hundreds of MB: stream every file.
    let Ok(handle) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let body = Body::from_stream(ReaderStream::new(handle));
    let mut response = (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, len.into());
    if file == RECORDING {
        headers.insert(
            header::CONTENT_DISPOSITION,
            header::HeaderValue::from_static("attachment; filename=\"hls-face-recording.mp4\""),
        );
    }
    response
}
