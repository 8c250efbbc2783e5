//! `GET /hls/<session-id>/<file>`: serves only plain files inside that session's folder,
//! with HLS content types and no caching of the playlist; anything else is 404.
//! Playlist requests may carry `_HLS_msn=N` (LL-HLS blocking reload): the response is
//! held until segment N exists or the recording ends, so players learn of a new segment
//! the moment it is written instead of polling.

use super::AppState;
use crate::pipeline::playlist::with_server_control;
use crate::session::registry::{PlaylistProgress, SessionId};
use app::hls_path::{content_type, PLAYLIST};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Longest a blocking playlist request is held (a few segment lengths).
const MAX_HOLD: Duration = Duration::from_secs(3);

/// The handler.
pub async fn serve(
    State(state): State<AppState>,
    Path((session, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let not_found = || StatusCode::NOT_FOUND.into_response();
    let (Some(id), Some(mime)) = (SessionId::parse(&session), content_type(&file)) else {
        return not_found();
    };
    let Some(folder) = state.shared.registry.folder(&id) else {
        return not_found();
    };
    let is_playlist = file == PLAYLIST;
    let msn = query
        .as_deref()
        .and_then(|q| super::query_param(q, "_HLS_msn"))
        .and_then(|v| v.parse::<u64>().ok());
    if let (true, Some(msn)) = (is_playlist, msn) {
        let mut progress = folder.progress.clone();
        let ready = |p: &PlaylistProgress| p.segments > msn || p.ended;
        // A timeout or a vanished session just answers with the playlist as it is.
        let _ = tokio::time::timeout(MAX_HOLD, progress.wait_for(ready)).await;
    }
    let path = folder.dir.join(&file);
    // Only regular files, never symlinks (symlink_metadata does not follow them).
    match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.file_type().is_file() => {}
        _ => return not_found(),
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return not_found();
    };
    if is_playlist {
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
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        Body::from(bytes),
    )
        .into_response()
}
