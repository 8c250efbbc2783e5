//! The product features around a session, through the real server and real ffmpeg:
//! `/metrics`, the recording download, the viewer link and live detector settings.

mod common;

use anyhow::{bail, ensure, Context, Result};
use app::protocol::{ClientMsg, DetectorSettings, ErrorKind, ServerMsg, Setting};
use common::*;
use std::time::Duration;

/// Starts a session and returns (session id, viewer page path).
async fn start(client: &mut Client) -> Result<(String, String)> {
    let started = client.start().await?;
    ensure!(
        started.detector == DetectorSettings::default(),
        "Started carries the configured detector settings: {:?}",
        started.detector
    );
    Ok((started.session_id, started.viewer_url))
}

/// The value of the first sample line of `name` whose labels contain `labels`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (key, _) = l.split_once(' ').unwrap_or((l, ""));
            (key == name || key.starts_with(&format!("{name}{{"))) && key.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_frames_bytes_and_errors() -> Result<()> {
    let server = TestServer::start("metrics", |_| {}).await?;
    // A protocol error counts under its kind.
    let mut rude = server.socket().await?;
    rude.send_binary(vec![1, 2, 3]).await?;
    let _ = rude.next().await;

    let mut client = server.socket().await?;
    start(&mut client).await?;
    client.record_face_clip().await?;

    let resp = http_get(&server.host(), "/metrics", &[]).await?;
    ensure!(resp.status == 200, "status {}", resp.status);
    ensure!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "Prometheus text format"
    );
    let text = String::from_utf8(resp.body)?;
    let at_least = |name: &str, labels: &str, min: f64| -> Result<()> {
        let value = sample(&text, name, labels)
            .with_context(|| format!("{name}{{{labels}}} missing in:\n{text}"))?;
        ensure!(
            value >= min,
            "{name}{{{labels}}} = {value}, expected ≥ {min}"
        );
        Ok(())
    };
    at_least("hls_face_sessions_total", "", 1.0)?;
    at_least("hls_face_sessions_live", "", 0.0)?;
    at_least("hls_face_frames_total", "stage=\"decode\"", 100.0)?;
    at_least("hls_face_frames_total", "stage=\"encode\"", 100.0)?;
    at_least("hls_face_frames_total", "stage=\"detect\"", 10.0)?;
    at_least("hls_face_detect_seconds_count", "", 10.0)?;
    at_least("hls_face_detect_seconds_bucket", "le=\"+Inf\"", 10.0)?;
    at_least("hls_face_encode_seconds_count", "", 100.0)?;
    at_least("hls_face_segments_total", "", 5.0)?;
    let clip = std::fs::metadata(media("face.webm"))?.len() as f64;
    at_least("hls_face_bytes_in_total", "", clip)?;
    at_least("hls_face_errors_total", "kind=\"protocol\"", 1.0)?;
    ensure!(text.contains("# HELP hls_face_frames_dropped_total"));
    server.stop().await
}

/// Reads the MP4 at `path` with ffprobe: (codec, frames, seconds).
fn probe_mp4(path: &std::path::Path) -> Result<(String, u64, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration,format_name",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(path)
        .output()?;
    ensure!(out.status.success(), "ffprobe failed");
    let text = String::from_utf8(out.stdout)?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .with_context(|| format!("{k} missing in {text}"))
    };
    ensure!(field("format_name")?.contains("mp4"), "{text}");
    Ok((
        field("codec_name")?,
        field("nb_read_frames")?.parse()?,
        field("duration")?.parse()?,
    ))
}

/// Records the face clip and returns the RecordingReady URL.
async fn record_and_get_download(client: &mut Client) -> Result<String> {
    start(client).await?;
    client.record_face_clip().await?;
    match client
        .wait_for("recording", |m| {
            matches!(m, ServerMsg::RecordingReady { .. })
        })
        .await?
    {
        ServerMsg::RecordingReady {
            url,
            available_secs,
        } => {
            // The default retention is 600 s; the remux took a little of it.
            ensure!(
                (540..=600).contains(&available_secs),
                "available for {available_secs} s"
            );
            Ok(url)
        }
        other => bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_session_offers_its_whole_recording_as_one_mp4() -> Result<()> {
    let server = TestServer::start("recording", |_| {}).await?;
    let mut client = server.socket().await?;
    let url = record_and_get_download(&mut client).await?;
    ensure!(url.ends_with("/recording.mp4"), "{url}");
    ensure!(
        client.next().await?.is_none(),
        "the socket closes after the offer"
    );
    let resp = http_get(&server.host(), &url, &[]).await?;
    ensure!(resp.status == 200, "status {}", resp.status);
    ensure!(resp.header("content-type") == Some("video/mp4"));
    ensure!(resp
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment")));
    ensure!(resp.header("content-length") == Some(resp.body.len().to_string().as_str()));
    let dir = tempdir("recording")?;
    let file = dir.join("r.mp4");
    std::fs::write(&file, &resp.body)?;
    let (codec, frames, seconds) = probe_mp4(&file)?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(
        codec == "h264",
        "streams are copied, not re-encoded: {codec}"
    );
    // The clip is 6 s at 30 fps; all of it is in the recording (not only the live window).
    ensure!((170..=190).contains(&frames), "{frames} frames");
    ensure!((5.5..=6.6).contains(&seconds), "{seconds} s");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_keep_only_the_configured_length_or_none() -> Result<()> {
    // 2 s asked of a 6 s clip: the last two 1 s segments (the very last may be short).
    let server = TestServer::start("recording-limit", |c| {
        c.pipeline.recording.max_secs = 2;
    })
    .await?;
    let mut client = server.socket().await?;
    let url = record_and_get_download(&mut client).await?;
    let resp = http_get(&server.host(), &url, &[]).await?;
    ensure!(resp.status == 200, "status {}", resp.status);
    let dir = tempdir("recording-limit")?;
    let file = dir.join("r.mp4");
    std::fs::write(&file, &resp.body)?;
    let (_, frames, _) = probe_mp4(&file)?;
    std::fs::remove_dir_all(&dir)?;
    ensure!(
        (31..=60).contains(&frames),
        "two segments of at most 30 frames expected, got {frames} frames"
    );
    server.stop().await?;

    let server = TestServer::start("recording-off", |c| {
        c.pipeline.recording.max_secs = 0;
    })
    .await?;
    let mut client = server.socket().await?;
    let (session, _) = start(&mut client).await?;
    client.record_face_clip().await?;
    ensure!(
        client.next().await?.is_none(),
        "no download is offered when recordings are off"
    );
    let resp = http_get(&server.host(), &app::hls_path::recording_url(&session), &[]).await?;
    ensure!(resp.status == 404);
    server.stop().await
}

/// The first segment URI in a playlist.
fn first_segment(playlist: &str) -> Option<&str> {
    playlist
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_link_shows_the_live_stream_only_while_the_session_runs() -> Result<()> {
    let server = TestServer::start("viewer", |_| {}).await?;
    let host = server.host();
    let mut client = server.socket().await?;
    let (session, page) = start(&mut client).await?;
    let token = page
        .strip_prefix("/watch/")
        .context("viewer page path")?
        .to_string();
    ensure!(app::hls_path::is_hex_id(&token) && token != session);

    let html = http_get(&host, &page, &[]).await?;
    ensure!(html.status == 200);
    ensure!(String::from_utf8_lossy(&html.body).contains("data-testid=\"viewer\""));

    stream_file(&mut client, &media("face.webm"), 30_000, 20).await?;
    client
        .wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    let playlist_path = app::hls_path::viewer_playlist(&token);
    let playlist = http_get(&host, &playlist_path, &[]).await?;
    ensure!(playlist.status == 200, "status {}", playlist.status);
    let text = String::from_utf8(playlist.body)?;
    let segment = first_segment(&text).context("a segment is listed")?;
    let seg = http_get(&host, &format!("/view/{token}/{segment}"), &[]).await?;
    ensure!(seg.status == 200 && seg.header("content-type") == Some("video/iso.segment"));
    ensure!(!seg.body.is_empty());

    // The link reaches nothing else: not the recording, not other sessions.
    for path in [
        format!("/view/{token}/recording.mp4"),
        format!("/view/{token}/../{session}/playlist.m3u8"),
        app::hls_path::viewer_playlist(&session),
        app::hls_path::viewer_playlist(&"0".repeat(32)),
        format!("/view/{token}/{}", ".hidden.ts"),
    ] {
        let status = http_get(&host, &path, &[]).await?.status;
        ensure!(status == 404, "{path}: {status}");
    }

    client.stop_and_wait().await?;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = http_get(&host, &playlist_path, &[]).await?.status;
        if status == 404 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the viewer link still answers {status} after the session ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The owner's own URL still works during retention.
    let owner = http_get(&host, &app::hls_path::playlist_url(&session), &[]).await?;
    ensure!(owner.status == 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detector_settings_apply_live_and_bad_ones_change_nothing() -> Result<()> {
    let server = TestServer::start("settings", |_| {}).await?;
    let mut client = server.socket().await?;
    start(&mut client).await?;

    // The server runs CenterFace (the default): the page's settings are that detector's.
    let mut too_small = DetectorSettings::center_face();
    too_small.set(Setting::MinFace, 4.0);
    client.send(&ClientMsg::SetDetector(too_small)).await?;
    match client.next().await? {
        Some(ServerMsg::Error { kind, message }) => {
            ensure!(kind == ErrorKind::InvalidSettings, "{kind:?}");
            ensure!(message.contains("Min face size"), "{message}");
        }
        other => bail!("expected an invalidSettings error, got {other:?}"),
    }

    let clip = std::fs::read(media("face.webm"))?;
    let (first, second) = clip.split_at(clip.len() / 2);
    stream_bytes(&mut client, first, 30_000, 20).await?;
    let before = client
        .wait_stats("a face", |s| s.faces >= 1)
        .await
        .context("the face is found with the default settings (the bad ones changed nothing)")?;

    let mut huge = DetectorSettings::center_face();
    huge.set(Setting::MinFace, 1080.0);
    // Another detector's settings change nothing and say which detector runs.
    client
        .send(&ClientMsg::SetDetector(DetectorSettings::haar()))
        .await?;
    let message = loop {
        match client.next().await? {
            Some(ServerMsg::Error {
                kind: ErrorKind::InvalidSettings,
                message,
            }) => break message,
            Some(ServerMsg::PlaylistReady { .. }) => continue,
            other => bail!("expected an invalidSettings error, got {other:?}"),
        }
    };
    ensure!(message.contains("CenterFace"), "{message}");
    client.send(&ClientMsg::SetDetector(huge)).await?;
    stream_bytes(&mut client, second, 30_000, 20).await?;
    client
        .wait_stats("no face", |s| {
            s.faces == 0 && s.frames_in > before.frames_in + 15
        })
        .await
        .context("faces smaller than the new minimum are no longer reported")?;
    client.stop_and_wait().await?;
    server.stop().await
}
