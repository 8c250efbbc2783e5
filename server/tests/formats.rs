//! Every recorder format a browser may send, through the real server and ffmpeg: fragmented
//! MP4 (Safari, iOS), H.264 in Matroska (Chromium's `video/webm;codecs=h264`), VP9 WebM;
//! and what happens when an MP4 stream goes bad or has another size than announced.

mod common;

use anyhow::{ensure, Result};
use app::protocol::{ClientMsg, ErrorKind, ServerMsg};
use common::*;

/// Streams `clip` announced as `mime`, waits until faces are boxed, stops, and checks the
/// session ended with its playlist.
async fn stream_and_box(server: &TestServer, clip: &str, mime: &str) -> Result<()> {
    let mut c = server.socket().await?;
    c.send(&start_as(mime)).await?;
    c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    let data = std::fs::read(media(clip))?;
    // About real time: the clips run ~1.5-1.9 Mbit/s.
    stream_bytes(&mut c, &data, 20_000, 12).await?;
    c.wait_stats("a boxed face", |s| s.faces >= 1).await?;
    c.stop_and_wait().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safari_mp4_chromium_h264_and_vp9_all_stream_with_boxes() -> Result<()> {
    let server = TestServer::start("formats", |_| {}).await?;
    for (clip, mime) in [
        ("face-safari.mp4", "video/mp4;codecs=avc1.42E01E"),
        ("face-safari-small.mp4", "video/mp4;codecs=avc1"),
        ("real-face-h264.mkv", "video/x-matroska;codecs=avc1"),
        ("real-face.webm", "video/webm;codecs=vp9"),
    ] {
        stream_and_box(&server, clip, mime)
            .await
            .map_err(|e| e.context(format!("{clip} as {mime}")))?;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_mp4_is_refused_and_ends_only_its_session() -> Result<()> {
    let server = TestServer::start("formats-bad", |_| {}).await?;
    let mp4 = std::fs::read(media("face-safari.mp4"))?;
    // WebM bytes announced as MP4: refused at the first chunk.
    let mut c = server.socket().await?;
    c.send(&start_as("video/mp4;codecs=avc1")).await?;
    c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    c.send_binary(std::fs::read(media("face.webm"))?[..4000].to_vec())
        .await?;
    let err = c
        .wait_for("an error", |m| matches!(m, ServerMsg::Error { .. }))
        .await;
    ensure!(
        format!("{err:?}").contains("BadMedia"),
        "WebM as MP4: {err:?}"
    );

    // A valid start, then garbage: the session ends with an error, another goes on.
    let mut other = server.socket().await?;
    other.send(&start_as("video/mp4;codecs=avc1")).await?;
    other
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    let mut c = server.socket().await?;
    c.send(&start_as("video/mp4;codecs=avc1")).await?;
    c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    stream_bytes(&mut c, &mp4[..mp4.len() / 3], 20_000, 12).await?;
    c.wait_stats("frames", |s| s.frames_out > 0).await?;
    let garbage: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = stream_bytes(&mut c, &garbage, 20_000, 12).await;
    let _ = c.send(&ClientMsg::Stop).await;
    let ended = loop {
        match c.next().await? {
            Some(ServerMsg::Error { kind, .. }) => break Some(kind),
            Some(ServerMsg::Ended { .. }) => break None,
            Some(_) => continue,
            None => break Some(ErrorKind::Pipeline),
        }
    };
    // The live MP4's box walk refuses the garbage as bad media (its box sizes are
    // impossible); were it to pass, the decoder would give up or skip it and end cleanly at
    // Stop. It never hangs, and the other session is untouched.
    ensure!(
        matches!(
            ended,
            None | Some(ErrorKind::Pipeline) | Some(ErrorKind::BadMedia)
        ),
        "garbage after a valid start: {ended:?}"
    );
    stream_bytes(&mut other, &mp4, 20_000, 12).await?;
    other.wait_stats("a boxed face", |s| s.faces >= 1).await?;
    other.stop_and_wait().await?;
    server.stop().await
}
