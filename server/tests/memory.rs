//! Memory under floods, measured on the real binary (its own process, so the figure is the
//! server's alone): sockets holding unfinished large frames are capped and their memory is
//! returned; plain and idle connections leave RSS near its baseline.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Opens a WebSocket by hand and sends the first half of a ~1.9 MiB binary frame; `None`
/// if the server refused the upgrade.
async fn unfinished_frame(
    addr: &str,
    cookie: &str,
    token: &str,
) -> Result<Option<tokio::net::TcpStream>> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "GET /socket?csrf_token={token} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Cookie: {cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tokio::time::timeout(DEADLINE, s.read(&mut byte)).await?? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Ok(None);
    }
    let total: u64 = 1_900_000;
    let mut frame = vec![0x82, 0xFF]; // FIN + binary; masked, 64-bit length
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]); // mask key
    frame.extend(std::iter::repeat_n(0u8, 1_000_000));
    s.write_all(&frame).await?;
    Ok(Some(s))
}

/// Resident memory of `pid` in MiB.
fn rss_mb(pid: u32) -> Result<f64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: f64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096.0 / (1024.0 * 1024.0))
}

/// The server's RSS once start-up is done: a page loaded (lazily built things exist) and a
/// session started and stopped (its Start waits until the shared detector threads, which
/// load their models in the background at start, have them).
async fn settled_rss(addr: &str, pid: u32) -> Result<f64> {
    http_get(addr, "/", &[]).await?;
    let mut c = socket(addr).await?;
    c.start().await?;
    c.stop_and_wait().await?;
    rss_mb(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_sockets_and_connections_leave_memory_near_baseline() -> Result<()> {
    let runtime = tempdir("memory")?;
    let (mut child, pid, addr) = spawn_server(&runtime).await?;
    let baseline = settled_rss(&addr, pid).await?;

    // 80 sockets (the cap is 64) each start a 1.9 MiB binary frame and stop half-way.
    let (cookie, token) = browser_session(&addr).await?;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        match unfinished_frame(&addr, &cookie, &token).await? {
            Some(stream) => held.push(stream),
            None => refused += 1,
        }
    }
    ensure!(
        refused >= 16,
        "the socket cap let {} of 80 in",
        80 - refused
    );
    let during = rss_mb(pid)?;
    drop(held);
    // 300 connections that only say hello and leave, 100 that stay silent until closed.
    for _ in 0..300 {
        http_get(&addr, "/", &[]).await?;
    }
    let mut silent = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(b"").await?;
        silent.push(s);
    }
    drop(silent);
    // Memory comes back (glibc returns large blocks at once; allow for caches).
    let deadline = Instant::now() + DEADLINE;
    let after = loop {
        let now = rss_mb(pid)?;
        if now < baseline + 40.0 || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("RSS baseline {baseline:.1} MiB, during the socket flood {during:.1} MiB, after {after:.1} MiB");
    ensure!(
        during < baseline + 200.0,
        "64 sockets with unfinished frames took {:.0} MiB",
        during - baseline
    );
    ensure!(
        after < baseline + 40.0,
        "RSS stayed at {after:.1} MiB after the floods (baseline {baseline:.1} MiB)"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&runtime);
    Ok(())
}

/// Names of the process's threads (`/proc/<pid>/task/*/comm`).
fn thread_names(pid: u32) -> Result<Vec<String>> {
    Ok(threads(pid)?.into_iter().map(|(name, _)| name).collect())
}

/// (name, nice) of the process's threads.
fn threads(pid: u32) -> Result<Vec<(String, i32)>> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // stat: "pid (comm) state …", nice is the 19th field; comm may hold spaces.
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let nice = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(16))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        found.push((comm.trim().to_string(), nice));
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_the_detector_threads_and_their_models() -> Result<()> {
    let runtime = tempdir("memory-sessions")?;
    let (mut child, pid, addr) = spawn_server(&runtime).await?;
    // The shared threads make their detectors (CenterFace) at start: one per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shared = |names: &[String]| {
        names
            .iter()
            .filter(|n| {
                n.strip_prefix("detect-")
                    .is_some_and(|k| k.parse::<u32>().is_ok())
            })
            .count()
    };
    let deadline = Instant::now() + DEADLINE;
    while shared(&thread_names(pid)?) < cores {
        ensure!(Instant::now() < deadline, "no shared detector threads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let baseline = settled_rss(&addr, pid).await?;
    // Four sessions of real footage at real time, detecting as they go.
    let mut runs = Vec::new();
    for _ in 0..4 {
        let mut c = socket(&addr).await?;
        c.start().await?;
        runs.push(tokio::spawn(async move {
            stream_file(&mut c, &media("real-face.webm"), 30_000, 9).await?;
            c.wait_for("playlist", |m| {
                matches!(m, app::protocol::ServerMsg::PlaylistReady { .. })
            })
            .await?;
            Ok::<_, anyhow::Error>(c)
        }));
    }
    let mut clients = Vec::new();
    for run in runs {
        clients.push(run.await??);
    }
    let names = thread_names(pid)?;
    let during = rss_mb(pid)?;
    println!("RSS with the detectors made {baseline:.1} MiB, with 4 sessions {during:.1} MiB");
    ensure!(
        shared(&names) == cores,
        "the sessions run on the {cores} shared detector threads: {names:?}"
    );
    ensure!(
        !names
            .iter()
            .any(|n| n.starts_with("detect-") && n.len() > 9),
        "no session has a detector thread of its own: {names:?}"
    );
    // A detector of its own cost each session ~13 MiB more (the network and its buffers).
    ensure!(
        during < baseline + 4.0 * 30.0,
        "4 sessions took {:.0} MiB",
        during - baseline
    );
    for mut c in clients {
        c.stop_and_wait().await?;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&runtime);
    Ok(())
}
