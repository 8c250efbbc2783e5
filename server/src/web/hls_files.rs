//! `GET /hls/<session-id>/<file>`: serves only plain files inside that session's folder,
//! with HLS content types and no caching of the playlist; anything else is 404.

use super::AppState;
use crate::session::registry::SessionId;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The content type of an allowed file name, or `None` if the name is not allowed.
///
/// Allowed: one path component of ASCII letters, digits, `_`, `-` and a single `.`
/// before a known extension; this rules out `..`, separators, encodings and hidden files.
pub fn content_type(file: &str) -> Option<&'static str> {
    let (stem, ext) = file.rsplit_once('.')?;
    let stem_ok = !stem.is_empty()
        && stem.len() <= 64
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !stem_ok {
        return None;
    }
    match ext {
        "m3u8" => Some("application/vnd.apple.mpegurl"),
        "ts" => Some("video/mp2t"),
        "m4s" => Some("video/iso.segment"),
        "mp4" => Some("video/mp4"),
        _ => None,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hls_names_are_allowed() {
        assert_eq!(
            content_type("playlist.m3u8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(content_type("seg_00001.ts"), Some("video/mp2t"));
        assert_eq!(content_type("init.mp4"), Some("video/mp4"));
        for bad in [
            "",
            ".m3u8",
            "..",
            "../playlist.m3u8",
            "a/b.ts",
            "/etc/passwd",
            "..%2F..%2Fetc",
            "%2e%2e.ts",
            "seg.ts.tmp",
            "playlist.m3u8.tmp",
            ".hidden.ts",
            "a b.ts",
            "x.html",
            "seg\\1.ts",
            "seg..ts",
        ] {
            assert_eq!(content_type(bad), None, "{bad:?}");
        }
    }
}
