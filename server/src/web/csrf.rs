//! CSRF protection for the WebSocket: a random per-browser session cookie (HttpOnly,
//! SameSite=Strict, signed by the server so a made-up value is replaced) and a token derived
//! from it with a per-process secret (HMAC-SHA256). The page receives the token in its
//! HTML; `/socket` upgrades only if the query token matches the cookie's (constant-time)
//! and the one Origin header is the page's own, scheme included. Every request's Host must
//! be one this server answers to (no DNS rebinding).

use super::AppState;
use app::CsrfToken;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "hls_face_sid";

/// The key's file in the runtime folder when `site.csrf-key-file` is not set.
const KEPT_KEY: &str = ".csrf.key";

/// Hex digits of the cookie's signature (64 bits: forging one is out of reach).
const COOKIE_MAC_HEX: usize = 16;

/// The secret behind every token: per process (tokens die with it), or shared by the
/// nodes of a cluster through `site.csrf-key-file`.
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("operating system random source failed");
        CsrfKey(key)
    }

    /// The key in `path`: 64 hex digits (surrounding whitespace ignored), as
    /// `openssl rand -hex 32` writes it. Every node of a cluster reads the same file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, crate::error::ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::error::ServerError::io("cannot read site.csrf-key-file", path, e)
        })?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
            crate::error::ServerError::Config(format!(
                "site.csrf-key-file {} must hold 64 hex digits (openssl rand -hex 32)",
                path.display()
            ))
        })?;
        Ok(CsrfKey(key))
    }

    /// The key kept in `dir` (`.csrf.key`, readable by the server's user only), made on
    /// first use: page tokens, cookies and the kept recordings they name outlive a restart.
    pub fn kept_in(dir: &std::path::Path) -> Result<Self, crate::error::ServerError> {
        let path = dir.join(KEPT_KEY);
        if let Ok(key) = Self::from_file(&path) {
            return Ok(key);
        }
        let key = Self::random();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let partial = dir.join(format!("{KEPT_KEY}.part"));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)?;
            file.write_all(hex::encode(key.0).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        };
        write().map_err(|e| {
            crate::error::ServerError::io("cannot keep the page-token key", &path, e)
        })?;
        Ok(key)
    }

    /// The signature of a sign-in cookie's text (see `crate::auth::Gate`).
    pub fn sign_in_mac(&self, text: &str) -> String {
        self.mac(b"sign-in:", text)
    }

    /// The token for a session cookie value.
    pub fn token_for(&self, sid: &str) -> String {
        self.mac(b"token:", sid)
    }

    fn mac(&self, purpose: &[u8], sid: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose);
        mac.update(sid.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The cookie value for a browser session id: the id and its signature.
    pub fn cookie_value(&self, sid: &str) -> String {
        format!("{sid}.{}", &self.mac(b"cookie:", sid)[..COOKIE_MAC_HEX])
    }

    /// The session id of a cookie value this server signed (`None` for anything else).
    pub fn verify_cookie(&self, value: &str) -> Option<String> {
        let (sid, mac) = value.split_once('.')?;
        if !app::hls_path::is_hex_id(sid) {
            return None;
        }
        let expected = self.cookie_value(sid);
        let ok: bool = expected.as_bytes().ct_eq(value.as_bytes()).into();
        (ok && mac.len() == COOKIE_MAC_HEX).then(|| sid.to_string())
    }

    /// Whether `token` belongs to `sid`, compared in constant time.
    pub fn verify(&self, sid: &str, token: &str) -> bool {
        let expected = self.token_for(sid);
        expected.len() == token.len() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// The browser session id of the session cookie in `headers`, if this server signed it.
pub fn session_cookie(headers: &HeaderMap, key: &CsrfKey) -> Option<String> {
    cookies(headers, COOKIE).find_map(|value| key.verify_cookie(&value))
}

/// The values of the cookies called `name` in `headers`.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(move |cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

/// Gives every page request a session cookie (creating one if needed) and puts the
/// matching token into the request extensions, where the shell renders it.
pub async fn ensure_session_cookie(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let existing = session_cookie(req.headers(), &state.shared.csrf);
    // A browser session id has the same shape and randomness as every other id.
    let sid = existing
        .clone()
        .unwrap_or_else(|| crate::session::ids::ClientId::random().to_string());
    let token = state.shared.csrf.token_for(&sid);
    req.extensions_mut().insert(CsrfToken(token));
    let live_sync = state.shared.config.pipeline.live_sync_seconds();
    req.extensions_mut().insert(app::LiveSync(live_sync));
    let mut response = next.run(req).await;
    if existing.is_none() {
        let cookie = Cookie::build((COOKIE, state.shared.csrf.cookie_value(&sid)))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The one value of header `name`, or `None` if it is missing, repeated or not text.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// Whether the request's one Origin is this server as the browser reached it: `scheme`
/// (`http` or `https`) and exactly the one Host header.
pub fn same_origin(headers: &HeaderMap, scheme: &str) -> bool {
    let (Some(origin), Some(host)) = (
        single(headers, header::ORIGIN),
        single(headers, header::HOST),
    ) else {
        return false;
    };
    origin_is(origin, scheme, host)
}

/// Whether `origin` is exactly `scheme://host`.
fn origin_is(origin: &str, scheme: &str, host: &str) -> bool {
    origin
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Like [`same_origin`], with the scheme and host a trusted reverse proxy reports: the
/// `Forwarded` header's `proto=`/`host=` or `X-Forwarded-Proto`/`X-Forwarded-Host`,
/// falling back to `scheme` and the Host header for what it does not say.
pub fn same_forwarded_origin(headers: &HeaderMap, scheme: &str) -> bool {
    let Some(origin) = single(headers, header::ORIGIN) else {
        return false;
    };
    let forwarded = single(headers, header::FORWARDED).unwrap_or_default();
    // The first (client-side) element: `for=…;proto=https;host=cam.example`.
    let first = forwarded.split(',').next().unwrap_or_default();
    let param = |name: &str| {
        first
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches('"').to_string())
    };
    let x_header = |name: &str| {
        single(
            headers,
            header::HeaderName::from_bytes(name.as_bytes()).ok()?,
        )
        .map(|v| v.split(',').next().unwrap_or_default().trim().to_string())
    };
    let proto = param("proto")
        .or_else(|| x_header("x-forwarded-proto"))
        .unwrap_or_else(|| scheme.to_string());
    let host = param("host")
        .or_else(|| x_header("x-forwarded-host"))
        .or_else(|| single(headers, header::HOST).map(str::to_string));
    host.is_some_and(|h| origin_is(origin, &proto.to_ascii_lowercase(), &h))
}

/// Which Host headers this server answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    port: u16,
    /// Any IP address at our port (we listen on all addresses).
    any_ip: bool,
    /// Exact `host[:port]` values allowed (lowercase).
    names: Vec<String>,
}

impl HostPolicy {
    /// The listen address `bound` (its IP and `localhost` at its port; any IP address when
    /// it listens on all of them) plus the operator's `extra` names (`host` or `host:port`,
    /// e.g. the name a proxy or certificate uses).
    pub fn new(bound: std::net::SocketAddr, extra: &[String]) -> Self {
        let port = bound.port();
        let mut names = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        names.push(match bound.ip() {
            std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        });
        names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
        HostPolicy {
            port,
            any_ip: bound.ip().is_unspecified(),
            names,
        }
    }

    /// Whether a request with this Host header is for us.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        if !self.any_ip {
            return false;
        }
        // host:port with an IP literal (v4, or v6 in brackets) and our port.
        let Some((ip, port)) = host.rsplit_once(':') else {
            return false;
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        port.parse() == Ok(self.port) && ip.parse::<std::net::IpAddr>().is_ok()
    }
}

/// Refuses (421 Misdirected Request) a request whose one Host header is not ours.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    // HTTP/2 carries the host in the request's authority instead of a Host header.
    let host =
        single(req.headers(), header::HOST).or_else(|| req.uri().authority().map(|a| a.as_str()));
    let ok = host.is_some_and(|h| {
        state
            .shared
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .allows(h)
    });
    if ok {
        next.run(req).await
    } else {
        (
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that host name; add it to [site] allowed-hosts",
        )
            .into_response()
    }
}

/// The address a client's sessions are counted against: the peer's, or behind a trusted
/// proxy (`trust_forwarded`) the last `X-Forwarded-For` hop, the address that proxy itself
/// saw (earlier hops are whatever the client wrote). `None`: no peer address is known (a
/// socket served outside the listener, as in unit tests).
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    trust_forwarded: bool,
) -> Option<std::net::IpAddr> {
    if trust_forwarded {
        let last_hop = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|hop| hop.trim().parse().ok());
        if last_hop.is_some() {
            return last_hop;
        }
    }
    peer
}

/// The client's address (behind a trusted proxy, the one the proxy reports).
pub fn requester(
    state: &super::AppState,
    headers: &HeaderMap,
    connected: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> std::net::IpAddr {
    client_address(
        headers,
        connected.map(|c| c.0 .0.ip()),
        state.shared.config.site.trust_forwarded,
    )
    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_reports_one() {
        let peer = Some(std::net::IpAddr::from([10, 0, 0, 2]));
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        assert_eq!(client_address(&headers, peer, false), peer, "not trusted");
        assert_eq!(
            client_address(&headers, peer, true),
            Some(std::net::IpAddr::from([203, 0, 113, 7])),
            "the last hop, the one the proxy saw"
        );
        let garbage = HeaderMap::from_iter([(
            header::HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("unknown"),
        )]);
        assert_eq!(client_address(&garbage, peer, true), peer);
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_shared_key_file_gives_every_node_the_same_tokens() {
        let dir = std::env::temp_dir().join(format!("hls-face-csrf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
        let (a, b) = (
            CsrfKey::from_file(&file).unwrap(),
            CsrfKey::from_file(&file).unwrap(),
        );
        let sid = "0123456789abcdef0123456789abcdef";
        assert!(b.verify(sid, &a.token_for(sid)));
        assert_eq!(b.verify_cookie(&a.cookie_value(sid)).as_deref(), Some(sid));
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            std::fs::write(&file, bad).unwrap();
            assert!(CsrfKey::from_file(&file).is_err(), "{bad:?}");
        }
        assert!(CsrfKey::from_file(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
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
    fn reads_only_session_cookies_this_server_signed() {
        let key = CsrfKey::random();
        let sid = "0123456789abcdef0123456789abcdef";
        let value = key.cookie_value(sid);
        let h = headers(&[(header::COOKIE, &format!("x=1; {COOKIE}={value}; y=2"))]);
        assert_eq!(session_cookie(&h, &key).as_deref(), Some(sid));
        for forged in [
            sid.to_string(),
            format!("{sid}.0000000000000000"),
            "../../etc".to_string(),
            CsrfKey::random().cookie_value(sid),
        ] {
            let h = headers(&[(header::COOKIE, &format!("{COOKIE}={forged}"))]);
            assert_eq!(session_cookie(&h, &key), None, "{forged}");
        }
        assert_eq!(session_cookie(&HeaderMap::new(), &key), None);
        // A stale cookie of the same name (an older secret, another path) beside the valid
        // one, in one header or in two, does not hide it.
        let stale = CsrfKey::random().cookie_value("ffffffffffffffffffffffffffffffff");
        let one = headers(&[(
            header::COOKIE,
            &format!("{COOKIE}={stale}; {COOKIE}={value}"),
        )]);
        assert_eq!(session_cookie(&one, &key).as_deref(), Some(sid));
        let two = headers(&[
            (header::COOKIE, &format!("{COOKIE}={stale}")),
            (header::COOKIE, &format!("a=b; {COOKIE}={value}")),
        ]);
        assert_eq!(session_cookie(&two, &key).as_deref(), Some(sid));
    }

    #[test]
    fn a_trusted_proxy_reports_the_origin_the_browser_used() {
        let proxied = headers(&[
            (header::ORIGIN, "https://cam.example"),
            (header::HOST, "127.0.0.1:3000"),
            (
                header::HeaderName::from_static("x-forwarded-proto"),
                "https",
            ),
            (
                header::HeaderName::from_static("x-forwarded-host"),
                "cam.example",
            ),
        ]);
        assert!(
            !same_origin(&proxied, "http"),
            "untrusted: the Host is what counts"
        );
        assert!(same_forwarded_origin(&proxied, "http"));
        let standard = headers(&[
            (header::ORIGIN, "https://cam.example:8443"),
            (header::HOST, "cam.example:8443"),
            (header::FORWARDED, "for=192.0.2.1;proto=https, for=10.0.0.1"),
        ]);
        assert!(same_forwarded_origin(&standard, "http"));
        let evil = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::HOST, "127.0.0.1:3000"),
            (header::FORWARDED, "proto=https;host=cam.example"),
        ]);
        assert!(!same_forwarded_origin(&evil, "http"));
    }

    #[test]
    fn hosts_are_the_listen_address_localhost_and_configured_names() {
        let local = HostPolicy::new("127.0.0.1:3000".parse().unwrap(), &[]);
        assert!(local.allows("127.0.0.1:3000") && local.allows("LOCALHOST:3000"));
        assert!(!local.allows("evil.example:3000"));
        assert!(!local.allows("192.168.1.5:3000"), "not listening there");
        let all = HostPolicy::new("0.0.0.0:3000".parse().unwrap(), &["cam.example".into()]);
        assert!(all.allows("192.168.1.5:3000") && all.allows("[fe80::1]:3000"));
        assert!(all.allows("cam.example"));
        assert!(!all.allows("192.168.1.5:3001") && !all.allows("evil.example:3000"));
    }

    #[test]
    fn origin_must_match_the_host() {
        let ok = headers(&[
            (header::ORIGIN, "http://127.0.0.1:3000"),
            (header::HOST, "127.0.0.1:3000"),
        ]);
        assert!(same_origin(&ok, "http"));
        assert!(!same_origin(&ok, "https"), "the scheme counts");
        let two = headers(&[
            (header::ORIGIN, "http://127.0.0.1:3000"),
            (header::ORIGIN, "http://evil.example"),
            (header::HOST, "127.0.0.1:3000"),
        ]);
        assert!(!same_origin(&two, "http"), "exactly one Origin");
        for (origin, host) in [
            ("http://evil.example", "127.0.0.1:3000"),
            ("http://127.0.0.1:3001", "127.0.0.1:3000"),
            ("null", "127.0.0.1:3000"),
            ("http://127.0.0.1:3000.evil", "127.0.0.1:3000"),
        ] {
            let h = headers(&[(header::ORIGIN, origin), (header::HOST, host)]);
            assert!(!same_origin(&h, "http"), "{origin}");
        }
        assert!(
            !same_origin(&headers(&[(header::HOST, "127.0.0.1:3000")]), "http"),
            "no Origin"
        );
    }
}
