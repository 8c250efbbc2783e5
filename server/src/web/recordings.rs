//! `GET /recordings.json`: the recordings the server keeps for the asking browser (by its
//! session cookie), so a reloaded page, or one opened after a restart, offers them again.

use super::{csrf, AppState};
use crate::session::ids::ClientId;
use app::protocol::{KeptRecording, KeptRecordings};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /recordings.json`: this browser's kept recordings (none without a valid cookie).
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let client =
        csrf::session_cookie(&headers, &state.shared.csrf).and_then(|sid| ClientId::parse(&sid));
    let body = match client {
        Some(client) => {
            let kept = state.shared.registry.recordings_of(&client);
            KeptRecordings {
                recordings: kept
                    .ready
                    .iter()
                    .map(|(id, left)| KeptRecording {
                        url: app::hls_path::recording_url(id.as_str()),
                        available_secs: left.as_secs(),
                    })
                    .collect(),
                finishing: u32::try_from(kept.finishing).unwrap_or(u32::MAX),
            }
        }
        None => KeptRecordings::default(),
    };
    ([(header::CACHE_CONTROL, "private, no-store")], Json(body)).into_response()
}
