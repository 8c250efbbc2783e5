//! The real session pipeline through the real server: WebM chunks in over the WebSocket,
//! HLS out over HTTP, decoded and checked for green boxes where the face is.

mod common;

use anyhow::{ensure, Context, Result};
use app::protocol::{ClientMsg, ServerMsg};
use common::*;
use server::hls::playlist::LlPlaylist;

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

/// Starts a 640×480 VP9 session on `client`; its id.
async fn start_vp9(client: &mut Client) -> Result<String> {
    client
        .send(&ClientMsg::Start {
            mime_type: "video/webm;codecs=vp9".into(),
            width: W as u32,
            height: H as u32,
        })
        .await?;
    match client
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?
    {
        ServerMsg::Started { session_id, .. } => Ok(session_id),
        _ => unreachable!("waited for started"),
    }
}

/// Streams `clip` through a fresh session, stops it, and decodes every listed segment.
async fn record(server: &TestServer, clip: &str) -> Result<Recording> {
    record_with(server, clip, false).await
}

async fn record_with(server: &TestServer, clip: &str, privacy: bool) -> Result<Recording> {
    let mut client = server.socket().await?;
    if privacy {
        client.send(&ClientMsg::SetPrivacy { on: true }).await?;
    }
    let session_id = start_vp9(&mut client).await?;
    // ~30 KB chunks 10 times a second: about real time, like a camera.
    stream_file(&mut client, &media(clip), 30_000, 10).await?;
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
    let parsed = LlPlaylist::parse(&playlist).context("not a playlist")?;
    ensure!(
        parsed.violations().is_empty(),
        "LL-HLS rules broken: {:?}",
        parsed.violations()
    );
    // The init segment and the segments in order make one fragmented MP4.
    let mut media = Vec::new();
    let map = parsed.map.clone().context("no EXT-X-MAP")?;
    for file in std::iter::once(&map).chain(parsed.segments.iter().map(|s| &s.uri)) {
        let resp = http_get(&server.host(), &format!("/hls/{session_id}/{file}"), &[]).await?;
        ensure!(resp.status == 200, "{file} status {}", resp.status);
        let expected = if *file == map {
            "video/mp4"
        } else {
            "video/iso.segment"
        };
        ensure!(resp.header("content-type") == Some(expected), "{file} type");
        media.extend(resp.body);
    }
    let frames = decode_frames(&media, W, H)?;
    Ok(Recording { playlist, frames })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_clip_comes_back_as_hls_with_boxes_on_the_face() -> Result<()> {
    // A window long enough to keep the whole 6 s clip in the final playlist.
    let server = TestServer::start("face", |c| c.pipeline.hls.playlist_size = 100).await?;
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
    // Once the first detection is confirmed, faces stay boxed (held through misses); the
    // frames before it depend on the machine's speed, so they only count towards a floor.
    let first = rec
        .frames
        .iter()
        .position(|f| green_pixels(f, W).0 >= 200)
        .unwrap_or(rec.frames.len());
    let after = rec.frames.len() - first;
    // Which frames carry a box ('#') and which do not ('.'), for a failure's message.
    let pattern: String = rec
        .frames
        .iter()
        .map(|f| {
            if green_pixels(f, W).0 >= 200 {
                '#'
            } else {
                '.'
            }
        })
        .collect();
    let boxed_after = rec.frames[first..]
        .iter()
        .filter(|f| green_pixels(f, W).0 >= 200)
        .count();
    ensure!(
        first < rec.frames.len() / 2,
        "the first box came only at frame {first}: {pattern}"
    );
    ensure!(
        boxed_after as f64 > 0.9 * after as f64,
        "only {boxed_after} of {after} frames after the first box carry one ({boxed} in all): {pattern}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_face_clip_has_no_boxes() -> Result<()> {
    let server = TestServer::start("noface", |c| c.pipeline.hls.playlist_size = 100).await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_mode_pixelates_faces_instead_of_boxing_them() -> Result<()> {
    let server = TestServer::start("privacy", |c| c.pipeline.hls.playlist_size = 100).await?;
    let rec = record_with(&server, "face.webm", true).await?;
    ensure!(
        rec.frames.len() >= 60,
        "only {} frames came back",
        rec.frames.len()
    );
    for (i, frame) in rec.frames.iter().enumerate() {
        let (count, _) = green_pixels(frame, W);
        ensure!(count < 50, "frame {i} has a green box in privacy mode");
    }
    // The recording's frames are the clip's frames, one for one: compare the face area of
    // each with the source. Pixelated into flat 16×16 blocks, its detail collapses.
    let source = decode_frames(&std::fs::read(media("face.webm"))?, W, H)?;
    let pixelated = rec
        .frames
        .iter()
        .zip(&source)
        .enumerate()
        .filter(|(n, (out, src))| {
            let region = face_centre(*n);
            detail(out, region) * 1.6 < detail(src, region)
        })
        .count();
    // Frames before the first confirmed detection keep their face (how many depends on the
    // machine's load); a third is a floor no unblurred recording comes near.
    ensure!(
        pixelated * 3 > rec.frames.len(),
        "only {pixelated} of {} frames have a pixelated face",
        rec.frames.len()
    );
    server.stop().await
}

/// The central part of the astronaut's face in frame `n` of scripts/media's face clip
/// (the photo scaled to 400 px at x = 120 + 60 sin(2πt/4), y = 40 + 20 sin(2πt/3)).
fn face_centre(n: usize) -> (usize, usize, usize, usize) {
    let t = n as f64 / 30.0;
    let tau = std::f64::consts::TAU;
    let x = 120.0 + 60.0 * (tau * t / 4.0).sin();
    let y = 40.0 + 20.0 * (tau * t / 3.0).sin();
    let k = 400.0 / 512.0;
    let (fx, fy, fw, fh) = (x + 172.0 * k, y + 40.0 * k, 112.0 * k, 130.0 * k);
    let (cx0, cy0) = (fx + fw * 0.25, fy + fh * 0.25);
    (
        cx0 as usize,
        cy0 as usize,
        (cx0 + fw * 0.5) as usize,
        (cy0 + fh * 0.5) as usize,
    )
}

/// Mean horizontal green-channel difference inside a region: how much detail it holds.
fn detail(frame: &[u8], (x0, y0, x1, y1): (usize, usize, usize, usize)) -> f64 {
    let (mut sum, mut count) = (0u64, 0u64);
    for y in y0..y1 {
        for x in x0..x1 {
            let (i, j) = ((y * W + x) * 3 + 1, (y * W + x + 1) * 3 + 1);
            sum += u64::from(frame[i].abs_diff(frame[j]));
            count += 1;
        }
    }
    sum as f64 / count.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_boxed_before_the_privacy_switch_and_not_yet_encoded_are_hidden() -> Result<()> {
    // A slow x264 preset keeps frames waiting in the encoder's queue, as a loaded machine
    // does: those boxed before the switch must not be encoded as they are.
    let server = TestServer::start("privacy-late", |c| {
        c.pipeline.hls.playlist_size = 100;
        c.pipeline.hls.x264_preset = "veryslow".into();
    })
    .await?;
    let late = || async {
        let text = String::from_utf8(http_get(&server.host(), "/metrics", &[]).await?.body)?;
        Ok::<f64, anyhow::Error>(
            text.lines()
                .find_map(|l| l.strip_prefix("hls_face_frames_hidden_late_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0),
        )
    };
    let before = late().await?;
    let mut client = server.socket().await?;
    client.start_session().await?;
    let face = std::fs::read(media("face.webm"))?;
    // Boxed frames sent well ahead of what the slow encoder takes.
    stream_bytes(&mut client, &face[..face.len() / 2], 30_000, 40).await?;
    client
        .wait_for("playlist ready", |m| {
            matches!(m, ServerMsg::PlaylistReady { .. })
        })
        .await?;
    client.send(&ClientMsg::SetPrivacy { on: true }).await?;
    stream_bytes(&mut client, &face[face.len() / 2..], 30_000, 40).await?;
    client.send(&ClientMsg::Stop).await?;
    client
        .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    let hidden_late = late().await? - before;
    ensure!(
        hidden_late >= 1.0,
        "no frame waiting for the encoder at the switch was hidden ({hidden_late})"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coded_frames_are_reported_with_their_server_times() -> Result<()> {
    // The test clip's frame codes (the latency budget's server half): each coded frame's
    // decode, hand-over to the encoder and part publication, in that order, in the stats.
    let server = TestServer::start("frame-times", |_| {}).await?;
    let mut client = server.socket().await?;
    start_vp9(&mut client).await?;
    stream_file(&mut client, &media("face.webm"), 30_000, 10).await?;
    let mut times = Vec::new();
    while times.len() < 30 {
        let stats = client
            .wait_stats("stats with frame times", |s| !s.frame_times.is_empty())
            .await?;
        times.extend(stats.frame_times);
    }
    for t in &times {
        ensure!(
            t.decoded <= t.sent && t.sent <= t.published,
            "out of order: {t:?}"
        );
    }
    // The clip's codes count its frames: consecutive frames, consecutive codes (the
    // decoder resamples to 30 fps, so a code may repeat or skip one, never more).
    for pair in times.windows(2) {
        let step = pair[1].code.wrapping_sub(pair[0].code);
        ensure!(step <= 2, "codes {} then {}", pair[0].code, pair[1].code);
    }
    server.stop().await
}
