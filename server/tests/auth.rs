//! `[auth]` against the real server: a passphrase (argon2) and bearer JWTs decide who may
//! start sessions and read `/metrics`; viewer links stay capabilities; refusals are typed,
//! counted and throttled.

mod common;

use anyhow::{anyhow, ensure, Result};
use app::protocol::{AuthAsk, ErrorKind, ServerMsg};
use common::*;
use server::config::{AuthMode, JwtAlgorithm};

/// The first message after Start: `Started`, or the error kind it was refused with.
async fn start_outcome(c: &mut Client) -> Result<Result<(), ErrorKind>> {
    c.send(&start_msg()).await?;
    loop {
        match c.next().await? {
            Some(ServerMsg::Started { .. }) => return Ok(Ok(())),
            Some(ServerMsg::Error { kind, .. }) => return Ok(Err(kind)),
            Some(_) => {}
            None => return Err(anyhow!("socket closed")),
        }
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The refusal and sign-in counters: (missing, wrong, expired, sign-ins).
fn counts(text: &str) -> [f64; 4] {
    [
        metric(text, "hls_face_auth_refusals_total{why=\"missing\"}"),
        metric(text, "hls_face_auth_refusals_total{why=\"wrong\"}"),
        metric(text, "hls_face_auth_refusals_total{why=\"expired\"}"),
        metric(text, "hls_face_auth_sign_ins_total"),
    ]
}

/// The metrics counters are process-wide: the tests of this file take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_lets_in_only_who_knows_it_and_viewer_links_stay_open() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let hash = server::auth::hash_passphrase("correct horse battery")?;
    let server = TestServer::start("auth-pass", |c| {
        c.auth.mode = AuthMode::Passphrase;
        c.auth.passphrase_hash = hash;
        c.auth.protect_metrics = true;
        c.auth.max_attempts_per_minute = 5;
    })
    .await?;
    let host = server.host();
    let bearer = [("Authorization", "Bearer correct horse battery")];
    let before = counts(&String::from_utf8_lossy(
        &http_get(&host, "/metrics", &bearer).await?.body,
    ));
    let (cookie, token) = server.browser_session().await?;
    let status = auth_status(&host, &cookie).await?;
    ensure!(
        status.asks == Some(AuthAsk::Passphrase) && !status.signed_in,
        "{status:?}"
    );

    // Not signed in: Start is refused with a typed error, nothing starts.
    let mut c = socket_as(&host, &cookie, &token).await?;
    ensure!(start_outcome(&mut c).await? == Err(ErrorKind::AuthRequired));

    // A wrong passphrase, and a right one without the page's token, are refused.
    ensure!(sign_in(&host, &cookie, &token, "wrong guess").await?.0 == 401);
    ensure!(
        sign_in(&host, &cookie, "0000", "correct horse battery")
            .await?
            .0
            == 403
    );
    let (ok, signed) = sign_in(&host, &cookie, &token, "correct horse battery").await?;
    ensure!(ok == 204, "status {ok}");
    let signed = signed.ok_or_else(|| anyhow!("no sign-in cookie"))?;
    let both = format!("{cookie}; {signed}");
    ensure!(auth_status(&host, &both).await?.signed_in);
    // The sign-in belongs to its browser: another browser's cookie with it is not let in.
    let (stranger, stranger_token) = server.browser_session().await?;
    let mut s = socket_as(&host, &format!("{stranger}; {signed}"), &stranger_token).await?;
    ensure!(start_outcome(&mut s).await? == Err(ErrorKind::AuthRequired));

    // Signed in: a session starts and streams; its viewer link needs no sign-in.
    let mut c = socket_as(&host, &both, &token).await?;
    c.send(&start_msg()).await?;
    let ServerMsg::Started { viewer_url, .. } = c
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?
    else {
        unreachable!()
    };
    stream_file(&mut c, &media("face.webm"), 30_000, 20).await?;
    c.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    let token_part = viewer_url.rsplit('/').next().unwrap_or_default();
    let viewer = http_get(&host, &format!("/view/{token_part}/playlist.m3u8"), &[]).await?;
    ensure!(viewer.status == 200, "viewer link: {}", viewer.status);

    // /metrics asks too: the passphrase as a bearer secret opens it.
    let closed = http_get(&host, "/metrics", &[]).await?;
    ensure!(
        closed.status == 401,
        "metrics without proof: {}",
        closed.status
    );
    let open = http_get(&host, "/metrics", &bearer).await?;
    ensure!(
        open.status == 200,
        "metrics with the passphrase: {}",
        open.status
    );
    let after = counts(&String::from_utf8_lossy(&open.body));
    // Missing: the first Start and the closed /metrics; wrong: the guess and the stranger.
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    ensure!(
        delta == [2.0, 2.0, 0.0, 1.0],
        "refusals and sign-ins counted: {delta:?}"
    );

    // Guessing is throttled per network: 5 checks a minute (4 spent above, the two metrics
    // scrapes included), then 429 even for the right one.
    let first = sign_in(&host, &cookie, &token, "another guess").await?.0;
    ensure!(first == 401, "the fifth check: {first}");
    let last = sign_in(&host, &cookie, &token, "another guess").await?.0;
    ensure!(last == 429, "after the allowance: {last}");
    ensure!(
        sign_in(&host, &cookie, &token, "correct horse battery")
            .await?
            .0
            == 429
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_jwts_start_sessions_and_expired_or_foreign_ones_do_not() -> Result<()> {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let _serial = SERIAL.lock().await;
    let dir = tempdir("auth-jwt")?;
    let key_file = dir.join("jwt.key");
    let secret = b"an operator secret of more than 32 bytes";
    std::fs::write(&key_file, secret)?;
    let server = TestServer::start("auth-jwt", |c| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.jwt_key_file = Some(key_file.clone());
        c.auth.jwt_algorithm = JwtAlgorithm::HS256;
        c.auth.jwt_issuer = Some("https://sso.example".into());
    })
    .await?;
    let host = server.host();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = |exp: u64, iss: &str, key: &[u8]| {
        encode(
            &Header::default(),
            &serde_json::json!({"sub": "camera-desk", "exp": exp, "iss": iss}),
            &EncodingKey::from_secret(key),
        )
    };
    let (cookie, page_token) = server.browser_session().await?;
    let status = auth_status(&host, &cookie).await?;
    ensure!(status.asks == Some(AuthAsk::Token), "{status:?}");
    let url = format!("ws://{host}/socket?csrf_token={page_token}");
    let origin = format!("http://{host}");
    let with = |bearer: String| {
        vec![
            ("Cookie".to_string(), cookie.clone()),
            ("Origin".to_string(), origin.clone()),
            ("Authorization".to_string(), format!("Bearer {bearer}")),
        ]
    };
    let open = |headers: Vec<(String, String)>| {
        let url = url.clone();
        async move {
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            connect(&url, &refs).await
        }
    };
    let before = counts(&String::from_utf8_lossy(
        &http_get(&host, "/metrics", &[]).await?.body,
    ));
    let good = token(now + 600, "https://sso.example", secret)?;
    let mut c = open(with(good.clone())).await?;
    ensure!(
        start_outcome(&mut c).await? == Ok(()),
        "a valid token starts a session"
    );
    drop(c);
    let expired = token(now - 600, "https://sso.example", secret)?;
    let mut c = open(with(expired)).await?;
    ensure!(start_outcome(&mut c).await? == Err(ErrorKind::AuthRequired));
    let foreign = token(now + 600, "https://elsewhere.example", secret)?;
    let mut c = open(with(foreign)).await?;
    ensure!(start_outcome(&mut c).await? == Err(ErrorKind::AuthRequired));
    let forged = token(
        now + 600,
        "https://sso.example",
        b"not the operator's secret, 32+ bytes",
    )?;
    let mut c = open(with(forged)).await?;
    ensure!(start_outcome(&mut c).await? == Err(ErrorKind::AuthRequired));
    // The page's way: the token pasted into the sign-in form gives the browser a cookie.
    let (ok, signed) = sign_in(&host, &cookie, &page_token, &good).await?;
    ensure!(ok == 204 && signed.is_some(), "status {ok}");
    let metrics = http_get(&host, "/metrics", &[]).await?;
    ensure!(
        metrics.status == 200,
        "metrics are open unless protect-metrics"
    );
    let after = counts(&String::from_utf8_lossy(&metrics.body));
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    ensure!(
        delta == [0.0, 2.0, 1.0, 1.0],
        "refusals and sign-ins counted: {delta:?}"
    );
    server.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
