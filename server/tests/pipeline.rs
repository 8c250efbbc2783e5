//! The real session pipeline through the real server: WebM chunks in over the WebSocket,
//! HLS out over HTTP, decoded and checked for green boxes where the face is.

mod common;

use anyhow::{ensure, Result};
use app::protocol::{ClientMsg, ServerMsg};
use common::*;

const W: usize = 640;
const H: usize = 480;

/// Where the astronaut's face can be in tests/media's face clip: the photo is scaled to
/// 400×400 and drifts x 60..180, y 20..60, and the face sits at about (140–230, 45–150)
/// of the scaled photo. The box centre must fall inside this (with margin).
const FACE_CENTRE_X: std::ops::Range<usize> = 190..430;
const FACE_CENTRE_Y: std::ops::Range<usize> = 60..240;

struct Recording {
    playlist: String,
    frames: Vec<Vec<u8>>,
}

/// Streams `clip` through a fresh session, stops it, and decodes every listed segment.
async fn record(server: &TestServer, clip: &str) -> Result<Recording> {
    let mut client = server.socket().await?;
    client
        .send(&ClientMsg::Start {
            mime_type: "video/webm;codecs=vp9".into(),
            width: W as u32,
            height: H as u32,
        })
        .await?;
    let started = client
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    let ServerMsg::Started { session_id } = started else {
        unreachable!()
    };
    // ~30 KB chunks 20 times a second: faster than real time, like a burst after a stall.
    stream_file(&mut client, &media(clip), 30_000, 20).await?;
    let ready = client
        .wait_for("playlist ready", |m| {
            matches!(m, ServerMsg::PlaylistReady { .. })
        })
        .await?;
    let ServerMsg::PlaylistReady { url, .. } = ready else {
        unreachable!()
    };
    ensure!(
        url == format!("/hls/{session_id}/playlist.m3u8"),
        "unexpected url {url}"
    );
    client.send(&ClientMsg::Stop).await?;
    let ended = client
        .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    ensure!(
        ended
            == ServerMsg::Ended {
                url: Some(url.clone())
            },
        "unexpected {ended:?}"
    );

    let resp = http_get(&server.host(), &url, &[]).await?;
    ensure!(resp.status == 200, "playlist status {}", resp.status);
    ensure!(resp.header("content-type") == Some("application/vnd.apple.mpegurl"));
    ensure!(resp
        .header("cache-control")
        .is_some_and(|c| c.contains("no-cache")));
    let playlist = String::from_utf8(resp.body)?;
    let mut frames = Vec::new();
    for segment in playlist.lines().filter(|l| l.ends_with(".ts")) {
        let resp = http_get(&server.host(), &format!("/hls/{session_id}/{segment}"), &[]).await?;
        ensure!(
            resp.status == 200,
            "segment {segment} status {}",
            resp.status
        );
        ensure!(resp.header("content-type") == Some("video/mp2t"));
        frames.extend(decode_frames(&resp.body, W, H)?);
    }
    Ok(Recording { playlist, frames })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_clip_comes_back_as_hls_with_boxes_on_the_face() -> Result<()> {
    // A window long enough to keep the whole 6 s clip in the final playlist.
    let server = TestServer::start("face", |c| c.pipeline.playlist_size = 100).await?;
    let rec = record(&server, "face.webm").await?;
    ensure!(
        rec.playlist.contains("#EXT-X-ENDLIST"),
        "stop must end the playlist:\n{}",
        rec.playlist
    );
    ensure!(
        rec.frames.len() >= 60,
        "only {} frames came back",
        rec.frames.len()
    );

    let mut boxed = 0;
    for (i, frame) in rec.frames.iter().enumerate() {
        let (count, bbox) = green_pixels(frame, W);
        if count < 200 {
            continue; // a frame before the first detection, or a miss
        }
        boxed += 1;
        let (x0, y0, x1, y1) = bbox.unwrap();
        let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2);
        ensure!(
            FACE_CENTRE_X.contains(&cx) && FACE_CENTRE_Y.contains(&cy),
            "frame {i}: green box centred at ({cx},{cy}), bbox {bbox:?}, not on the face"
        );
    }
    let share = boxed as f64 / rec.frames.len() as f64;
    ensure!(
        share > 0.8,
        "only {boxed} of {} frames carry a face box",
        rec.frames.len()
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_face_clip_has_no_boxes() -> Result<()> {
    let server = TestServer::start("noface", |c| c.pipeline.playlist_size = 100).await?;
    let rec = record(&server, "noface.webm").await?;
    ensure!(
        rec.frames.len() >= 60,
        "only {} frames came back",
        rec.frames.len()
    );
    for (i, frame) in rec.frames.iter().enumerate() {
        let (count, bbox) = green_pixels(frame, W);
        ensure!(count < 50, "frame {i} has {count} green pixels at {bbox:?}");
    }
    server.stop().await
}
