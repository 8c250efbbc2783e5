//! The camera channels' HTTP surface: `/channels.json` (every channel's state), and under
//! `/channel/<name>/`: `status` (its state), `thumbnail.jpg` (its latest processed frame),
//! `playlist.m3u8` (a stable address that redirects to the running stream) and
//! `<run>/<file>` (the running stream's LL-HLS files, served like a session's).

use super::AppState;
use crate::channel::Channel;
use crate::session::registry::SessionId;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::net::SocketAddr;
use std::sync::Arc;

/// `GET /channels.json`.
pub async fn list(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=1")],
        Json(state.shared.channels.infos()),
    )
        .into_response()
}

fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        "",
    )
        .into_response()
}

fn channel(state: &AppState, name: &str) -> Option<Arc<Channel>> {
    state.shared.channels.get(name)
}

/// Notes the requester as a viewer of `channel`.
fn saw(state: &AppState, channel: &Channel, headers: &HeaderMap, peer: Option<SocketAddr>) {
    let trust = state.shared.config.site.trust_forwarded;
    if let Some(address) = super::csrf::client_address(headers, peer.map(|p| p.ip()), trust) {
        channel.saw_viewer(address);
    }
}

/// `GET /channel/<name>/<file>`: status, thumbnail, or the stable playlist address.
pub async fn file(
    State(state): State<AppState>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    let Some(channel) = channel(&state, &name) else {
        return gone();
    };
    match file.as_str() {
        "status" => (
            [(header::CACHE_CONTROL, "public, max-age=1")],
            Json(channel.info()),
        )
            .into_response(),
        "thumbnail.jpg" => match channel.thumbnail() {
            Some(jpeg) => (
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (header::CACHE_CONTROL, "public, max-age=2"),
                ],
                jpeg,
            )
                .into_response(),
            None => gone(),
        },
        app::hls_path::PLAYLIST => match channel.run() {
            // The stream of this run: its names are its own, so a cache never mixes the
            // parts of two runs (a camera that reconnected starts a new stream).
            Some(run) => (
                StatusCode::FOUND,
                [
                    (
                        header::LOCATION,
                        app::channels::run_playlist(&name, run.as_str()),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
            )
                .into_response(),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, "2"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                "the channel's source is not live",
            )
                .into_response(),
        },
        _ => gone(),
    }
}

/// `GET /channel/<name>/<run>/<file>`: the running stream's playlist, init, parts and
/// segments (a finished run's are gone).
pub async fn stream(
    State(state): State<AppState>,
    Path((name, run, file)): Path<(String, String, String)>,
    reload: Result<Query<super::hls_files::Reload>, QueryRejection>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let Some(channel) = channel(&state, &name) else {
        return gone();
    };
    let current = channel.run();
    let Some(id) = SessionId::parse(&run).filter(|id| current.as_ref() == Some(id)) else {
        return gone();
    };
    let Some(folder) = state.shared.registry.folder(&id) else {
        return gone();
    };
    saw(
        &state,
        &channel,
        &headers,
        peer.map(|Extension(ConnectInfo(p))| p),
    );
    super::hls_files::serve_stream(folder.stream, &file, reload.map(|q| q.0)).await
}
