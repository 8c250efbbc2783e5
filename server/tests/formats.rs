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

/// The decoder hands out every frame it has the bytes for, without waiting for more input:
/// a clip written whole with the input still open comes out whole. ffmpeg gave its raw
/// frame writer frame threads by default, which held each frame until the next one came
/// in (33 ms of latency at 30 fps, and a camera's last frame until the next arrived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoder_hands_out_each_frame_before_the_next_arrives() -> Result<()> {
    use server::child::Ffmpeg;
    use server::source::{Codec, Source};
    use server::video::decoder::Decoder;
    use server::video::frame::{FramePool, FrameRate, Shape};
    use std::time::Duration;
    use tokio::sync::mpsc;

    let dir = tempdir("decoder-hold")?;
    for (clip, codec) in [
        ("real-face-h264.mkv", Codec::H264),
        ("real-face.webm", Codec::Vp9),
    ] {
        let short = dir.join(format!("ten-{clip}"));
        ffmpeg_make(
            &[
                "-i",
                &media(clip).to_string_lossy(),
                "-frames:v",
                "10",
                "-an",
                "-c",
                "copy",
            ],
            &short,
        )?;
        let (chunk_tx, chunks) = mpsc::channel(4);
        let (frames_tx, mut frames) = mpsc::channel(64);
        let spawner = Ffmpeg::new("ffmpeg", 1 << 30);
        let decoder = Decoder::start(
            &*spawner,
            Source::Chunks { chunks, codec },
            Shape {
                width: 640,
                height: 480,
                fps: FrameRate::whole(30),
            },
            frames_tx,
            FramePool::default(),
        )?;
        chunk_tx.send(std::fs::read(&short)?.into()).await?;
        // The input stays open: every frame must come out anyway.
        let mut got = 0;
        while got < 10 {
            match tokio::time::timeout(Duration::from_secs(20), frames.recv()).await {
                Ok(Some(_)) => got += 1,
                Ok(None) => break,
                Err(_) => {
                    anyhow::bail!("{clip}: {got} of 10 frames came out while the input was open")
                }
            }
        }
        ensure!(got == 10, "{clip}: the decoder ended after {got} frames");
        drop(chunk_tx);
        while frames.recv().await.is_some() {}
        decoder.finish(Duration::from_secs(5)).await?;
    }
    Ok(())
}
