//! The connection layer of the real server: HTTPS with a certificate from the settings,
//! slow-header and silent connections closed, the connection cap, and the page still
//! served to everyone else meanwhile.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_page_and_upgrades_the_socket() -> Result<()> {
    let (cert, key) = certificate()?;
    let server = TestServer::start("https", |c| {
        c.site.tls_cert = Some(cert.clone());
        c.site.tls_key = Some(key.clone());
    })
    .await?;
    ensure!(server.server.scheme == "https");
    let base = format!("https://{}", server.host());
    let page = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg(format!("{base}/"))
        .output()?;
    let text = String::from_utf8_lossy(&page.stdout).to_string();
    ensure!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    ensure!(text.contains("csrf-token"), "{text}");
    let (cookie, token) = cookie_and_token(&text)?;
    // The WebSocket handshake over TLS, with the https Origin the page has.
    let upgrade = Command::new("curl")
        .args(["-sS", "-i", "--http1.1", "--max-time", "3", "--cacert"])
        .arg(&cert)
        .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
        .args(["-H", "Sec-WebSocket-Version: 13"])
        .args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
        .args([
            "-H",
            &format!("Origin: {base}"),
            "-H",
            &format!("Cookie: {cookie}"),
        ])
        .arg(format!("{base}/socket?csrf_token={token}"))
        .output()?;
    let head = String::from_utf8_lossy(&upgrade.stdout);
    ensure!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Plain HTTP to the HTTPS port gets no page, but a plain message saying to use https.
    let plain = http_get(&server.host(), "/", &[]).await?;
    ensure!(plain.status == 400, "plain HTTP: {}", plain.status);
    let words = String::from_utf8_lossy(&plain.body);
    ensure!(
        words.contains("speaks HTTPS") && words.contains("https://"),
        "{words}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_and_capped() -> Result<()> {
    let server = TestServer::start("slowloris", |c| {
        c.limits.header_timeout_secs = 1;
        c.limits.max_connections = 80;
    })
    .await?;
    let host = server.host();
    // 40 connections that trickle a header, 40 that say nothing.
    let mut slow = Vec::new();
    for i in 0..80 {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        if i % 2 == 0 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: ").await?;
        }
        slow.push(s);
    }
    // Over the cap: told "busy" (503, not a dropped connection a proxy would read as the
    // node gone) and closed at once while the others are held.
    let mut extra = tokio::net::TcpStream::connect(&host).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, extra.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("Retry-After: 1"),
        "a connection over the cap: {answer:?}"
    );
    let mut buf = [0u8; 64];
    // Every held connection is closed by the header deadline (1 s here).
    let started = Instant::now();
    for s in &mut slow {
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        ensure!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a slow connection was still open after {:?}",
            started.elapsed()
        );
    }
    // And the page is served again.
    let page = http_get(&host, "/", &[]).await?;
    ensure!(page.status == 200, "page: {}", page.status);
    server.stop().await
}
