//! The live stream as LL-HLS clients see it, through the real server and ffmpeg: every
//! playlist keeps the spec's rules, a blocking reload is answered when the asked-for part
//! exists, a client that ignores parts (ffmpeg) plays the live playlist to its end, and the
//! recording still downloads.

mod common;

use anyhow::{bail, ensure, Context, Result};
use app::protocol::ServerMsg;
use common::*;
use server::hls::playlist::LlPlaylist;
use server::hls::stream::Resource;
use std::time::{Duration, Instant};

/// Fetches and checks a playlist; returns it parsed.
async fn playlist(host: &str, path: &str) -> Result<(LlPlaylist, Duration)> {
    let started = Instant::now();
    let resp = http_get(host, path, &[]).await?;
    let took = started.elapsed();
    ensure!(resp.status == 200, "{path}: {}", resp.status);
    let text = String::from_utf8(resp.body)?;
    let parsed = LlPlaylist::parse(&text).with_context(|| format!("not a playlist: {text}"))?;
    let violations = parsed.violations();
    ensure!(violations.is_empty(), "{violations:?} in\n{text}");
    Ok((parsed, took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlists_keep_the_rules_and_blocking_reloads_wait_for_their_part() -> Result<()> {
    let server = TestServer::start("llhls", |_| {}).await?;
    let host = server.host();
    let mut client = server.socket().await?;
    let session = client.start_session().await?;
    let url = format!("/hls/{session}/playlist.m3u8");
    let feeder = tokio::spawn(async move {
        stream_file(&mut client, &media("real-face.webm"), 30_000, 12).await?;
        client.stop_and_wait().await?;
        // The recording is made after the stream ends; the page is told when it is ready.
        client
            .wait_for("recording ready", |m| {
                matches!(m, ServerMsg::RecordingReady { .. })
            })
            .await?;
        anyhow::Ok(())
    });

    // A client that ignores parts reads the live playlist until ENDLIST.
    let probe_url = format!("http://{host}{url}");
    let ready = eventually(DEADLINE, || {
        std::process::Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &probe_url])
            .status()
            .is_ok_and(|s| s.success())
    })
    .await;
    ensure!(ready, "the playlist never appeared");
    // ffmpeg's HLS reader ignores parts: it must play the segments to the end.
    let probe = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i", &probe_url])
            .args(["-map", "0:v:0", "-vf", "scale=64:48", "-f", "rawvideo"])
            .args(["-pix_fmt", "gray", "pipe:1"])
            .output()
    });

    // Follow the live edge the way hls.js does: ask for the next part, get it when it exists.
    let mut answered = 0;
    let mut next: Option<(u64, usize)> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let path = match next {
            Some((msn, part)) => format!("{url}?_HLS_msn={msn}&_HLS_part={part}"),
            None => url.clone(),
        };
        let (p, took) = playlist(&host, &path).await?;
        if p.ended {
            break;
        }
        if let Some((msn, part)) = next {
            let listed = |s: &[server::hls::playlist::ListedPart]| {
                s.iter()
                    .any(|x| Resource::parse(&x.uri) == Some(Resource::Part(msn, part)))
            };
            let has = listed(&p.growing) || p.segments.iter().any(|s| listed(&s.parts));
            ensure!(has, "answered without part {msn}.{part}");
            ensure!(took < Duration::from_secs(3), "held {took:?}");
            answered += 1;
        }
        let hint = p.preload_hint.as_deref().context("no preload hint")?;
        next = match Resource::parse(hint) {
            Some(Resource::Part(msn, part)) => Some((msn, part)),
            other => bail!("hint {hint} is {other:?}"),
        };
    }
    ensure!(answered >= 30, "only {answered} blocking reloads answered");
    feeder.await??;

    let (last, _) = playlist(&host, &url).await?;
    ensure!(
        last.ended && last.preload_hint.is_none(),
        "Stop ends the playlist"
    );
    let out = probe.await??;
    ensure!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = out.stdout.len() / (64 * 48);
    ensure!(
        frames >= 60,
        "ffmpeg read only {frames} frames of the live playlist"
    );

    let recording = http_get(&host, &format!("/hls/{session}/recording.mp4"), &[]).await?;
    ensure!(recording.status == 200, "recording: {}", recording.status);
    let frames = decode_frames(&recording.body, 640, 480)?;
    ensure!(frames.len() >= 180, "recording has {} frames", frames.len());
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_reload_too_far_ahead_is_refused_at_once() -> Result<()> {
    let server = TestServer::start("llhls-far", |_| {}).await?;
    let host = server.host();
    let mut client = server.socket().await?;
    let session = client.start_session().await?;
    let url = format!("/hls/{session}/playlist.m3u8");
    stream_file(&mut client, &media("face.webm"), 30_000, 12).await?;
    client
        .wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    for query in ["_HLS_msn=1000", "_HLS_msn=1&_HLS_part=500", "_HLS_part=2"] {
        let started = Instant::now();
        let resp = http_get(&host, &format!("{url}?{query}"), &[]).await?;
        ensure!(resp.status == 400, "{query}: {}", resp.status);
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "{query} was held"
        );
    }
    client.stop_and_wait().await?;
    server.stop().await
}
