//! `GET /hls/<session-id>/<file>`: serves only plain files inside that session's folder,
//! with HLS content types and no caching of the playlist; anything else is 404.

use super::AppState;
use crate::session::registry::SessionId;
use app::hls_path::content_type;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The handler.
pub async fn serve(
    State(state): State<AppState>,
    Path((session, file)): Path<(String, String)>,
) -> Response {
    let not_found = || StatusCode::NOT_FOUND.into_response();
    let (Some(id), Some(mime)) = (SessionId::parse(&session), content_type(&file)) else {
        return not_found();
    };
    let Some(dir) = state.shared.registry.folder(&id) else {
        return not_found();
    };
    let path = dir.join(&file);
    // Only regular files, never symlinks (symlink_metadata does not follow them).
    match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.file_type().is_file() => {}
        _ => return not_found(),
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return not_found();
    };
    let cache = if file.ends_with(".m3u8") {
        "no-cache, no-store"
    } else {
        "private, max-age=60"
    };
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache)],
        Body::from(bytes),
    )
        .into_response()
}
