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
    let opened = Instant::now();
    let mut slow = Vec::new();
    for i in 0..80 {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        if i % 2 == 0 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: ").await?;
        }
        slow.push(s);
    }
    // Over the cap, with no connection idle for a second yet to give way: told "busy" (503,
    // not a dropped connection a proxy would read as the node gone) and closed at once.
    let mut extra = tokio::net::TcpStream::connect(&host).await?;
    if opened.elapsed() < Duration::from_millis(900) {
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, extra.read_to_end(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer);
        ensure!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("Retry-After: 1"),
            "a connection over the cap: {answer:?}"
        );
    } else {
        eprintln!(
            "opening 80 connections took {:?}: the busy answer is not checked",
            opened.elapsed()
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_give_way_when_the_server_is_full() -> Result<()> {
    let server = TestServer::start("keepalive", |c| c.limits.max_connections = 64).await?;
    let host = server.host();
    // One client holds every connection: each made a request and keeps its connection
    // open, asking nothing more (as 530 connections asking every 5 s did).
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        s.write_all(format!("GET /token HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await??;
        ensure!(
            n > 0 && buf.starts_with(b"HTTP/1.1 200"),
            "a held connection's request"
        );
        held.push(s);
    }
    // A new visitor is let in once those connections have been idle a moment: the idlest
    // gives way (a 503 "busy" before that is the honest answer).
    // (Well before the header deadline, 10 s, or the silent one, 60 s, would close them.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = http_get(&host, "/", &[]).await?;
        if page.status == 200 {
            break;
        }
        ensure!(page.status == 503, "a new visitor got {}", page.status);
        ensure!(Instant::now() < deadline, "idle connections never gave way");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The one that gave way was closed; a connection answering a request never is.
    let mut closed = 0;
    for s in &mut held {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    ensure!(closed >= 1, "no idle connection was closed");
    server.stop().await
}
