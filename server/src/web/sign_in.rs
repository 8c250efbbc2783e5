//! The HTTP side of `[auth]`: `GET /auth` (what the server asks for, and whether this
//! browser has signed in), `POST /auth` (the passphrase or token → a signed sign-in
//! cookie), and the check the socket and `/metrics` make. Refusals are typed, logged and
//! counted.

use super::{csrf, AppState};
use crate::auth::{Gate, Refusal};
use crate::config::AuthMode;
use crate::metrics;
use app::protocol::{AuthAsk, AuthStatus, SignIn};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cookie::{Cookie, SameSite};
use std::net::SocketAddr;
use std::sync::Arc;

/// The sign-in cookie's name.
pub const COOKIE: &str = "hls_face_auth";

/// The longest passphrase or token accepted (a JWT with many claims fits).
const MAX_SECRET: usize = 8 * 1024;

/// Whether the request comes from a client that may stream: a signed-in browser (its
/// session cookie plus its sign-in cookie), or `Authorization: Bearer` with a token (or, for
/// a passphrase, the passphrase itself). Always `Ok` without `[auth]`. The caller counts a
/// refusal ([`refused`]) where it refuses.
pub async fn check(
    state: &AppState,
    headers: &HeaderMap,
    from: std::net::IpAddr,
) -> Result<(), Refusal> {
    let gate = state.shared.gate();
    if !gate.required() {
        return Ok(());
    }
    match (cookie_sign_in(state, &gate, headers), bearer(headers)) {
        (Some(Ok(())), _) => Ok(()),
        (_, Some(secret)) => check_secret(gate, secret, from).await,
        (Some(Err(refusal)), None) => Err(refusal),
        (None, None) => Err(Refusal::Missing),
    }
}

/// Checks a passphrase or token off the async workers (argon2 takes tens of ms on purpose).
async fn check_secret(
    gate: Arc<Gate>,
    secret: String,
    from: std::net::IpAddr,
) -> Result<(), Refusal> {
    tokio::task::spawn_blocking(move || gate.check_secret(&secret, from))
        .await
        .unwrap_or(Err(Refusal::Wrong))
}

/// Counts and logs a refusal.
pub fn refused(refusal: Refusal) {
    ::metrics::counter!(metrics::AUTH_REFUSED, "why" => refusal.label()).increment(1);
    tracing::info!(why = refusal.label(), "auth refused");
}

/// What the request's sign-in cookie says for its browser (`None`: no session cookie or
/// no sign-in cookie).
fn cookie_sign_in(
    state: &AppState,
    gate: &Gate,
    headers: &HeaderMap,
) -> Option<Result<(), Refusal>> {
    let sid = csrf::session_cookie(headers, &state.shared.csrf)?;
    let value = csrf::cookies(headers, COOKIE).next()?;
    Some(gate.cookie_signs_in(&sid, &value, |text| state.shared.csrf.sign_in_mac(text)))
}

/// The `Authorization: Bearer …` secret, if any.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && secret.len() <= MAX_SECRET)
        .then(|| secret.trim().to_string())
}

/// `GET /auth`.
pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let gate = state.shared.gate();
    let asks = match gate.mode() {
        AuthMode::None => None,
        AuthMode::Passphrase => Some(AuthAsk::Passphrase),
        AuthMode::Jwt => Some(AuthAsk::Token),
    };
    // Only the cookie counts here: asking must not spend a guess.
    let signed_in =
        asks.is_none() || cookie_sign_in(&state, &gate, &headers).is_some_and(|r| r.is_ok());
    (
        [(header::CACHE_CONTROL, "private, no-store")],
        Json(AuthStatus { asks, signed_in }),
    )
        .into_response()
}

/// `POST /auth`: `{"secret": …}` with the page's token in `x-csrf-token`. 204 with the
/// sign-in cookie; 401 for a wrong or expired secret, 429 after too many tries, 403
/// without a valid page token, 400 for a malformed body.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    connected: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: axum::body::Bytes,
) -> Response {
    let gate = state.shared.gate();
    let Some(sid) = csrf::session_cookie(&headers, &state.shared.csrf).filter(|sid| {
        headers
            .get("x-csrf-token")
            .and_then(|t| t.to_str().ok())
            .is_some_and(|token| state.shared.csrf.verify(sid, token))
    }) else {
        return plain(StatusCode::FORBIDDEN, "Reload the page and try again.");
    };
    if !gate.required() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let Ok(SignIn { secret }) = serde_json::from_slice::<SignIn>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "Send {\"secret\": …}.");
    };
    if secret.is_empty() || secret.len() > MAX_SECRET {
        refused(Refusal::Wrong);
        return plain(StatusCode::UNAUTHORIZED, words(gate.mode(), Refusal::Wrong));
    }
    let from = csrf::requester(&state, &headers, connected);
    match check_secret(gate.clone(), secret, from).await {
        Ok(()) => {
            ::metrics::counter!(metrics::AUTH_SIGN_INS).increment(1);
            tracing::info!("a browser signed in");
            let (value, lasts) = gate.sign_in_cookie(&sid, |t| state.shared.csrf.sign_in_mac(t));
            let cookie = Cookie::build((COOKIE, value))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.shared.scheme == "https")
                .max_age(cookie::time::Duration::seconds(lasts.as_secs() as i64))
                .build();
            (
                StatusCode::NO_CONTENT,
                [(header::SET_COOKIE, cookie.to_string())],
            )
                .into_response()
        }
        Err(refusal) => {
            refused(refusal);
            let status = match refusal {
                Refusal::Throttled => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            plain(status, words(gate.mode(), refusal))
        }
    }
}

/// The sentence the page shows for a refused sign-in.
fn words(mode: AuthMode, refusal: Refusal) -> &'static str {
    match (refusal, mode) {
        (Refusal::Throttled, _) => {
            "Too many tries from this network: wait a minute, then try again."
        }
        (Refusal::Expired, _) => "That access token has expired: get a new one.",
        (_, AuthMode::Jwt) => "That access token is not valid for this server.",
        _ => "That passphrase is not right.",
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}
