//! A network blip is not the end: a socket that drops mid-session (no close frame) can be
//! replaced within the grace period by a new socket of the same browser presenting the
//! session's resume token; the session, its playlist and its recording go on. After the
//! grace period, or from another browser, the resume is refused and the session has ended.

mod common;

use anyhow::{bail, ensure, Context, Result};
use app::protocol::{ClientMsg, ErrorKind, ServerMsg};
use common::*;
use server::hls::playlist::LlPlaylist;
use std::time::{Duration, Instant};

/// Starts a session; returns (session id, resume token).
async fn start(client: &mut Client) -> Result<(String, String)> {
    let started = client.start().await?;
    Ok((started.session_id, started.resume_token))
}

/// Chunks of the face clip as a recorder would send them.
fn chunks() -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(media("face.webm"))?;
    Ok(data.chunks(30_000).map(<[u8]>::to_vec).collect())
}

/// Waits for `ended`; returns the last stats before it (the server sends them just before).
async fn ended_with_stats(client: &mut Client) -> Result<app::protocol::Stats> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut last = None;
    loop {
        let msg = tokio::time::timeout(DEADLINE, client.ws.next())
            .await
            .context("no end before the deadline")?;
        let Some(Ok(Message::Text(text))) = msg else {
            match msg {
                Some(Ok(_)) => continue,
                _ => bail!("socket closed before the end"),
            }
        };
        match ServerMsg::decode(text.as_str())? {
            ServerMsg::Stats(stats) => last = Some(stats),
            ServerMsg::Ended { .. } => return last.context("no stats before the end"),
            ServerMsg::Error { kind, message } if kind.is_fatal() => {
                bail!("{kind:?} {message}")
            }
            _ => {}
        }
    }
}

async fn send_paced(client: &mut Client, chunks: &[Vec<u8>]) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(60));
    for chunk in chunks {
        tick.tick().await;
        client.send_binary(chunk.clone()).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_resumes_although_the_socket_limits_are_full() -> Result<()> {
    let server = TestServer::start("resume-full", |c| {
        c.limits.max_sockets = 2;
        c.limits.max_sockets_per_address = 2;
    })
    .await?;
    let host = server.host();
    let (cookie, token) = server.browser_session().await?;
    let mut first = socket_as(&host, &cookie, &token).await?;
    let (_, resume) = start(&mut first).await?;
    send_paced(&mut first, &chunks()?[..4]).await?;
    drop(first); // the network drops; the parked session keeps its socket place
                 // Another client takes the last place.
    let _idle = server.socket().await?;
    ensure!(
        socket_as(&host, &cookie, &token).await.is_err(),
        "a plain new socket is refused when the places are taken"
    );
    // The page coming back for its session is let in (once the server has noticed the drop
    // and parked the session), and resumes it.
    let deadline = Instant::now() + DEADLINE;
    let mut back = loop {
        match socket_resuming(&host, &cookie, &token).await {
            Ok(socket) => break socket,
            Err(e) if Instant::now() > deadline => return Err(e.context("resume socket")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await, // a retry, as the page's
        }
    };
    back.send(&ClientMsg::Resume { token: resume }).await?;
    back.wait_for("resumed", |m| matches!(m, ServerMsg::Resumed { .. }))
        .await?;
    // Claiming it with no session parked gets no such pass.
    let (other_cookie, other_token) = server.browser_session().await?;
    ensure!(socket_resuming(&host, &other_cookie, &other_token)
        .await
        .is_err());
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_the_same_session_and_loses_nothing() -> Result<()> {
    let server = TestServer::start("resume", |c| c.pipeline.hls.playlist_size = 100).await?;
    let host = server.host();
    let (cookie, token) = server.browser_session().await?;
    let mut first = socket_as(&host, &cookie, &token).await?;
    let (session, resume) = start(&mut first).await?;
    let all = chunks()?;
    let half = all.len() / 2;
    send_paced(&mut first, &all[..half]).await?;
    first
        .wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    // The network drops: the TCP connection goes without a close frame.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await; // the drop, not a wait for a condition

    // Another browser cannot take the session over.
    let (stranger_cookie, stranger_token) = server.browser_session().await?;
    let mut stranger = socket_as(&host, &stranger_cookie, &stranger_token).await?;
    stranger
        .send(&ClientMsg::Resume {
            token: resume.clone(),
        })
        .await?;
    match stranger.next().await? {
        Some(ServerMsg::Error {
            kind: ErrorKind::ResumeFailed,
            ..
        }) => {}
        other => bail!("a stranger's resume got {other:?}"),
    }

    // The page comes back on a new socket and sends what the server did not get.
    let mut second = socket_as(&host, &cookie, &token).await?;
    second.send(&ClientMsg::Resume { token: resume }).await?;
    let received = match second
        .wait_for("resumed", |m| matches!(m, ServerMsg::Resumed { .. }))
        .await?
    {
        ServerMsg::Resumed { chunks } => chunks as usize,
        _ => unreachable!(),
    };
    ensure!(received == half, "server has {received} of {half} chunks");
    send_paced(&mut second, &all[received..]).await?;
    second.send(&ClientMsg::Stop).await?;
    let last = ended_with_stats(&mut second).await?;
    second
        .wait_for("recording", |m| {
            matches!(m, ServerMsg::RecordingReady { .. })
        })
        .await?;

    // One playlist from start to end, and every frame of the clip in the recording.
    let playlist = http_get(&host, &format!("/hls/{session}/playlist.m3u8"), &[]).await?;
    let text = String::from_utf8(playlist.body)?;
    let parsed = LlPlaylist::parse(&text).context("playlist")?;
    ensure!(parsed.violations().is_empty(), "{:?}", parsed.violations());
    ensure!(parsed.ended && parsed.media_sequence == 0, "{text}");
    let recording = http_get(&host, &format!("/hls/{session}/recording.mp4"), &[]).await?;
    ensure!(recording.status == 200, "recording: {}", recording.status);
    // Nothing was lost to the blip: the decoder got every frame of the 6 s clip (180),
    // and the recording holds every frame the pipeline did not shed under load (on two
    // busy cores it may drop a few toward the encoder, by design; not the resume's doing).
    let frames = decode_frames(&recording.body, 640, 480)?.len() as u64;
    ensure!(
        last.frames_in >= 170,
        "the decoder got {} frames of the 6 s clip",
        last.frames_in
    );
    ensure!(
        frames + last.frames_dropped + 3 >= last.frames_in,
        "the recording has {frames} frames; {} decoded, {} shed under load",
        last.frames_in,
        last.frames_dropped
    );
    let metrics = http_get(&host, "/metrics", &[]).await?;
    // The recorder is the test process's: other tests' resumes count there too.
    let resumed = String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix("hls_face_sessions_resumed_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(resumed >= 1, "resumes counted: {resumed}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_the_session_has_ended() -> Result<()> {
    let server = TestServer::start("resume-late", |_| {}).await?;
    let host = server.host();
    let (cookie, token) = server.browser_session().await?;
    let mut first = socket_as(&host, &cookie, &token).await?;
    let (session, resume) = start(&mut first).await?;
    let all = chunks()?;
    send_paced(&mut first, &all[..all.len() / 2]).await?;
    drop(first);
    let dropped = Instant::now();
    // The session ends once the grace period is over: its playlist stops being live.
    let url = format!("/hls/{session}/playlist.m3u8");
    let mut ended = false;
    while dropped.elapsed() < Duration::from_secs(40) {
        let resp = http_get(&host, &url, &[]).await?;
        if resp.status == 404 || String::from_utf8_lossy(&resp.body).contains("#EXT-X-ENDLIST") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(ended, "the dropped session never ended");
    ensure!(
        dropped.elapsed() >= Duration::from_secs(5),
        "ended after {:?}, within the 6 s grace period",
        dropped.elapsed()
    );
    let mut late = socket_as(&host, &cookie, &token).await?;
    late.send(&ClientMsg::Resume { token: resume }).await?;
    match late.next().await? {
        Some(ServerMsg::Error {
            kind: ErrorKind::ResumeFailed,
            ..
        }) => {}
        other => bail!("a late resume got {other:?}"),
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_bursting_back_loses_no_frame_from_the_recording() -> Result<()> {
    // A slower x264 preset, so a burst outpaces the encoder as on a loaded machine.
    let server = TestServer::start("stall", |c| {
        c.pipeline.hls.playlist_size = 100;
        c.pipeline.hls.x264_preset = "medium".into();
    })
    .await?;
    let host = server.host();
    let mut c = server.socket().await?;
    // H.264, as Chromium records it: it decodes far faster than real time, so a backlog
    // reaches the encoder as a burst.
    c.send(&start_as("video/webm;codecs=h264")).await?;
    let ServerMsg::Started {
        session_id: session,
        ..
    } = c
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?
    else {
        unreachable!()
    };
    let data = std::fs::read(media("real-face-h264.mkv"))?;
    let all: Vec<Vec<u8>> = data.chunks(20_000).map(<[u8]>::to_vec).collect();
    let first = all.len() / 4;
    send_paced(&mut c, &all[..first]).await?;
    c.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    // The network holds everything for 3 s (the stall itself, not a wait for a condition),
    // then everything the recorder made meanwhile arrives at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for chunk in &all[first..] {
        c.send_binary(chunk.clone()).await?;
    }
    c.send(&ClientMsg::Stop).await?;
    let last = ended_with_stats(&mut c).await?;
    c.wait_for("recording", |m| {
        matches!(m, ServerMsg::RecordingReady { .. })
    })
    .await?;
    let recording = http_get(&host, &format!("/hls/{session}/recording.mp4"), &[]).await?;
    let frames = decode_frames(&recording.body, 640, 480)?.len() as u64;
    // The burst is encoded whole (a full encoder queue is waited on briefly): the
    // recording holds what was decoded. It used to lose ~2 s of such a burst.
    ensure!(
        last.frames_dropped <= 3,
        "{} frames dropped after the stall",
        last.frames_dropped
    );
    ensure!(
        frames + 3 >= last.frames_in,
        "the recording has {frames} of {} decoded frames",
        last.frames_in
    );
    server.stop().await
}
