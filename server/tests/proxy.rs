//! hls-face behind Debian's nginx, started by `deploy/nginx/proxy` as an operator would:
//! the page, its WebSocket and a whole session through the proxy, plain and with TLS
//! terminated at nginx (the https Origin accepted through X-Forwarded-Proto, a foreign one
//! refused).

mod common;

use anyhow::{ensure, Result};
use app::protocol::ServerMsg;
use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_through_nginx() -> Result<()> {
    let public = free_addr()?;
    let server =
        TestServer::start("proxy", |c| c.site.allowed_hosts = vec![public.clone()]).await?;
    let nginx = Nginx::start(&public, &server.host(), None).await?;
    // The whole flow through the proxy: page, token, socket, stream, boxes, stop.
    let mut c = socket(&public).await?;
    let id = c.start_session().await?;
    stream_file(&mut c, &media("face.webm"), 30_000, 20).await?;
    c.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    c.wait_stats("a boxed face", |s| s.faces >= 1).await?;
    let playlist = http_get(&public, &app::hls_path::playlist_url(&id), &[]).await?;
    ensure!(
        playlist.status == 200,
        "playlist through nginx: {}",
        playlist.status
    );
    c.stop_and_wait().await?;
    drop(nginx);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_at_nginx_with_trusted_forwarded_headers() -> Result<()> {
    let (cert, key) = certificate()?;
    let public = free_addr()?;
    let server = TestServer::start("proxy-tls", |c| {
        c.site.trust_forwarded = true;
        c.site.allowed_hosts = vec![public.clone()];
    })
    .await?;
    let nginx = Nginx::start(&public, &server.host(), Some((&cert, &key))).await?;
    let base = format!("https://{public}");
    let curl = |args: &[&str]| -> Result<String> {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--http1.1", "--max-time", "5", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    // hls-face itself speaks plain HTTP: the scheme the browser used (https) reaches it in
    // X-Forwarded-Proto, trusted because of site.trust-forwarded.
    let page = curl(&[&format!("{base}/")])?;
    ensure!(page.contains("csrf-token"), "{page}");
    let (cookie, token) = cookie_and_token(&page)?;
    let upgrade = |origin: &str| {
        curl(&[
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            &format!("Origin: {origin}"),
            "-H",
            &format!("Cookie: {cookie}"),
            &format!("{base}/socket?csrf_token={token}"),
        ])
    };
    let ok = upgrade(&base)?;
    ensure!(
        ok.starts_with("HTTP/1.1 101"),
        "https origin through nginx: {ok}"
    );
    let foreign = upgrade("https://evil.example")?;
    ensure!(
        foreign.starts_with("HTTP/1.1 403"),
        "foreign origin: {foreign}"
    );
    drop(nginx);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_forge_its_address_through_nginx() -> Result<()> {
    // One session per address, counted on the address nginx reports (trusted): a client
    // that writes its own Forwarded or X-Forwarded-For header must not pose as another.
    let public = free_addr()?;
    let server = TestServer::start("proxy-forged", |c| {
        c.site.trust_forwarded = true;
        c.site.allowed_hosts = vec![public.clone()];
        c.limits.max_sessions_per_address = 1;
    })
    .await?;
    let nginx = Nginx::start(&public, &server.host(), None).await?;
    let open = |forged: (&'static str, &'static str)| {
        let public = public.clone();
        async move {
            let (cookie, token) = browser_session(&public).await?;
            let origin = format!("http://{public}");
            let url = format!("ws://{public}/socket?csrf_token={token}");
            connect(&url, &[("Cookie", &cookie), ("Origin", &origin), forged]).await
        }
    };
    let mut first = open(("X-Forwarded-For", "198.51.100.1")).await?;
    first.start_session().await?;
    for forged in [
        ("X-Forwarded-For", "198.51.100.2"),
        ("Forwarded", "for=198.51.100.3;proto=http"),
    ] {
        let mut other = open(forged).await?;
        other.send(&start_msg()).await?;
        let refused = other
            .wait_for("refusal", |m| matches!(m, ServerMsg::Error { .. }))
            .await?;
        ensure!(
            matches!(
                refused,
                ServerMsg::Error {
                    kind: app::protocol::ErrorKind::ClientLimit,
                    ..
                }
            ),
            "a forged {} header was believed: {refused:?}",
            forged.0
        );
    }
    drop(first);
    drop(nginx);
    server.stop().await
}
