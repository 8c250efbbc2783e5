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
