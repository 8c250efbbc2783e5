//! CSRF protection for the WebSocket: a random per-browser session cookie (HttpOnly,
//! SameSite=Strict) and a token derived from it with a per-process secret (HMAC-SHA256).
//! The page receives the token in its HTML; `/socket` upgrades only if the query token
//! matches the cookie's (constant-time) and the Origin is the page's own.

use super::AppState;
use app::CsrfToken;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "hls_face_sid";

/// The per-process secret behind every token (tokens die with the process).
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("operating system random source failed");
        CsrfKey(key)
    }

    /// The token for a session cookie value.
    pub fn token_for(&self, sid: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(sid.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` belongs to `sid`, compared in constant time.
    pub fn verify(&self, sid: &str, token: &str) -> bool {
        let expected = self.token_for(sid);
        expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The session cookie's value in `headers`, if well-formed.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| app::hls_path::is_hex_id(v))
}

/// Gives every page request a session cookie (creating one if needed) and puts the
/// matching token into the request extensions, where the shell renders it.
pub async fn ensure_session_cookie(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let existing = session_cookie(req.headers());
    // A browser session id has the same shape and randomness as a streaming session id.
    let sid = existing
        .clone()
        .unwrap_or_else(|| crate::session::registry::SessionId::random().to_string());
    let token = state.shared.csrf.token_for(&sid);
    req.extensions_mut().insert(CsrfToken(token));
    let live_sync = state.shared.config.pipeline.live_sync_seconds();
    req.extensions_mut().insert(app::LiveSync(live_sync));
    let mut response = next.run(req).await;
    if existing.is_none() {
        let cookie = format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Whether the request's Origin is this server (same host and port as the Host header).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_verify_only_for_their_own_session() {
        let key = CsrfKey::random();
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        let token = key.token_for(&a);
        assert!(key.verify(&a, &token));
        assert!(!key.verify(&b, &token), "another session's token");
        assert!(!key.verify(&a, ""), "empty token");
        assert!(!key.verify(&a, &token[..10]), "truncated token");
        assert!(
            !CsrfKey::random().verify(&a, &token),
            "token from another server run"
        );
    }

    #[test]
    fn reads_only_well_formed_session_cookies() {
        let sid = "0123456789abcdef0123456789abcdef";
        let h = headers(&[(header::COOKIE, &format!("x=1; {COOKIE}={sid}; y=2"))]);
        assert_eq!(session_cookie(&h).as_deref(), Some(sid));
        let h = headers(&[(header::COOKIE, &format!("{COOKIE}=../../etc"))]);
        assert_eq!(session_cookie(&h), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn origin_must_match_the_host() {
        let ok = headers(&[
            (header::ORIGIN, "http://127.0.0.1:3000"),
            (header::HOST, "127.0.0.1:3000"),
        ]);
        assert!(same_origin(&ok));
        for (origin, host) in [
            ("http://evil.example", "127.0.0.1:3000"),
            ("http://127.0.0.1:3001", "127.0.0.1:3000"),
            ("null", "127.0.0.1:3000"),
            ("http://127.0.0.1:3000.evil", "127.0.0.1:3000"),
        ] {
            let h = headers(&[(header::ORIGIN, origin), (header::HOST, host)]);
            assert!(!same_origin(&h), "{origin}");
        }
        assert!(
            !same_origin(&headers(&[(header::HOST, "127.0.0.1:3000")])),
            "no Origin"
        );
    }
}
