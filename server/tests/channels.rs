//! Camera channels against real components: GStreamer's RTSP server (scripts/rtsp-camera,
//! Debian's gir1.2-gst-rtsp-server-1.0) as the IP camera serving real footage, killed and
//! restarted mid-stream; ffmpeg pushing SRT as OBS does; a file loop. Each channel's state
//! is read as the Channels page reads it, and its served frames are checked for faces by
//! the reference detector.

mod common;

use anyhow::{anyhow, ensure, Context, Result};
use common::*;
use server::config::{ChannelConfig, Secret};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The RTSP camera: scripts/rtsp-camera on `port`, serving `clip` (H.264) at real time.
struct Camera {
    child: tokio::process::Child,
}

impl Camera {
    async fn start(port: u16, auth: Option<(&str, &str)>) -> Result<Self> {
        let mut command = tokio::process::Command::new("/usr/bin/python3");
        command
            .arg(repo_root().join("scripts/rtsp-camera"))
            .args(["--port", &port.to_string(), "--minutes", "3", "--clip"])
            .arg(media("real-face-h264.mkv"))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some((user, password)) = auth {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.spawn().context("scripts/rtsp-camera")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(DEADLINE, lines.next_line()).await??;
        ensure!(ready.as_deref() == Some("ready"), "camera said {ready:?}");
        Ok(Camera { child })
    }

    /// Pulls the plug: SIGKILL, no goodbye to its clients.
    async fn unplug(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn channel(name: &str, source: &str) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        source: Secret::new(source),
        passphrase: None,
        privacy: true,
        width: 640,
        height: 480,
        frame_rate: None,
        node: None,
    }
}

/// The channel's state as the page reads it.
async fn status(host: &str, name: &str) -> Result<serde_json::Value> {
    let r = http_get(host, &format!("/channel/{name}/status"), &[]).await?;
    ensure!(r.status == 200, "status {}", r.status);
    Ok(serde_json::from_slice(&r.body)?)
}

/// Waits until channel `name`'s state satisfies `pred`; returns that state.
async fn wait_state(
    host: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut last = serde_json::Value::Null;
    while tokio::time::Instant::now() < until {
        last = status(host, name).await?;
        if pred(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow!("channel {name} never became {what}; last: {last}"))
}

fn is(state: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |s| s["state"] == state
}

/// The frames of the first complete segments listed in the channel's running stream, at
/// least `seconds` of them by the segment length (the run's first segment may be shorter),
/// fetched through its stable playlist address (the redirect to the run) as a player does.
async fn served_frames(host: &str, name: &str, seconds: f64) -> Result<Vec<Vec<u8>>> {
    let segment = server::config::HlsConfig::default().segment_seconds;
    let count = (seconds / segment).ceil().max(1.0) as usize;
    let redirect = http_get(host, &format!("/channel/{name}/playlist.m3u8"), &[]).await?;
    ensure!(
        redirect.status == 302,
        "stable address: {}",
        redirect.status
    );
    let playlist_url = redirect
        .header("location")
        .ok_or_else(|| anyhow!("no location"))?
        .to_string();
    let base = playlist_url.trim_end_matches("playlist.m3u8").to_string();
    let mut segments = Vec::new();
    let until = tokio::time::Instant::now() + DEADLINE;
    while segments.len() < count && tokio::time::Instant::now() < until {
        let playlist = http_get(host, &playlist_url, &[]).await?;
        let text = String::from_utf8(playlist.body)?;
        segments = text
            .lines()
            .filter(|l| l.starts_with("seg_"))
            .map(str::to_string)
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(
        segments.len() >= count,
        "only {} segments listed",
        segments.len()
    );
    let mut bytes = http_get(host, &format!("{base}init.mp4"), &[]).await?.body;
    for segment in segments.iter().take(count) {
        let r = http_get(host, &format!("{base}{segment}"), &[]).await?;
        ensure!(r.status == 200, "{segment}: {}", r.status);
        bytes.extend(r.body);
    }
    decode_frames(&bytes, 640, 480)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ip_camera_plays_with_every_face_hidden_and_comes_back_after_a_power_cut() -> Result<()>
{
    let port = free_port()?;
    let camera = Camera::start(port, None).await?;
    let source = format!("rtsp://127.0.0.1:{port}/cam");
    let public = free_addr()?;
    let server = TestServer::start("channel-rtsp", |c| {
        c.channels = vec![channel("lobby", &source)];
        c.site.allowed_hosts = vec![public.clone()];
    })
    .await?;
    let host = server.host();
    let live = wait_state(&host, "lobby", "live", is("live")).await?;
    let run = live["run"].as_str().unwrap_or_default().to_string();

    // A viewer behind nginx (deploy/nginx/proxy) gets every served frame with its face
    // hidden (the clip has a face in every frame).
    let nginx = Nginx::start(&public, &host, None).await?;
    let frames = served_frames(&public, "lobby", 3.0).await?;
    drop(nginx);
    ensure!(frames.len() >= 60, "only {} frames", frames.len());
    let found = faces_found(&frames)?;
    ensure!(
        found.is_empty(),
        "faces visible in {} of {} frames",
        found.len(),
        frames.len()
    );
    // The card's thumbnail is a JPEG of the processed output.
    let thumb = http_get(&host, "/channel/lobby/thumbnail.jpg", &[]).await?;
    ensure!(
        thumb.status == 200 && thumb.body.starts_with(&[0xff, 0xd8]),
        "thumbnail"
    );
    let list = http_get(&host, "/channels.json", &[]).await?;
    let list: serde_json::Value = serde_json::from_slice(&list.body)?;
    ensure!(
        list[0]["name"] == "lobby" && list[0]["state"] == "live",
        "{list}"
    );

    // The camera loses power: the channel says so, and keeps trying.
    camera.unplug().await?;
    let down = wait_state(&host, "lobby", "down", is("down")).await?;
    ensure!(down["run"].is_null(), "no run while down: {down}");
    let old = http_get(&host, &format!("/channel/lobby/{run}/playlist.m3u8"), &[]).await?;
    ensure!(
        old.status == 404,
        "the old run's stream is gone: {}",
        old.status
    );
    let unreachable = wait_state(&host, "lobby", "unreachable", |s| {
        s["why"] == "camera unreachable"
    })
    .await?;
    ensure!(unreachable["state"] == "down", "{unreachable}");
    // Power back: the channel is live again on a new run, without anyone restarting it.
    let _camera = Camera::start(port, None).await?;
    let back = wait_state(&host, "lobby", "live again", is("live")).await?;
    ensure!(
        back["run"].as_str() != Some(run.as_str()),
        "a new run: {back}"
    );
    let frames = served_frames(&host, "lobby", 2.0).await?;
    ensure!(faces_found(&frames)?.is_empty(), "faces after the restart");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_and_wrong_hosts_are_named_and_disturb_no_other_channel() -> Result<()> {
    let port = free_port()?;
    let _camera = Camera::start(port, Some(("viewer", "right-password"))).await?;
    let closed = free_port()?;
    let server = TestServer::start("channel-faults", |c| {
        c.channels = vec![
            channel(
                "badpass",
                &format!("rtsp://viewer:wrong-password@127.0.0.1:{port}/cam"),
            ),
            channel("nohost", &format!("rtsp://127.0.0.1:{closed}/cam")),
            channel(
                "nopath",
                &format!("rtsp://viewer:right-password@127.0.0.1:{port}/nothing"),
            ),
            channel(
                "demo",
                &format!("file:{}", media("real-face-h264.mkv").display()),
            ),
        ];
    })
    .await?;
    let host = server.host();
    let creds = wait_state(&host, "badpass", "refused", |s| {
        s["why_label"] == "credentials"
    })
    .await?;
    ensure!(
        creds["why"] == "wrong credentials" && creds["state"] == "down",
        "{creds}"
    );
    let gone = wait_state(&host, "nohost", "unreachable", |s| {
        s["why_label"] == "unreachable"
    })
    .await?;
    ensure!(gone["why"] == "camera unreachable", "{gone}");
    wait_state(&host, "nopath", "not found", |s| {
        s["why_label"] == "not-found"
    })
    .await?;
    // The file loop beside them plays.
    wait_state(&host, "demo", "live", is("live")).await?;
    let frames = served_frames(&host, "demo", 2.0).await?;
    ensure!(
        faces_found(&frames)?.is_empty(),
        "faces in the demo channel"
    );
    let metrics = http_get(&host, "/metrics", &[]).await?;
    let metrics = String::from_utf8(metrics.body)?;
    ensure!(
        metrics.contains("hls_face_channel_faults_total{channel=\"badpass\",why=\"credentials\"}"),
        "faults in /metrics"
    );
    ensure!(
        metrics.contains("hls_face_channel_state{channel=\"demo\",state=\"live\"} 1"),
        "state in /metrics"
    );
    ensure!(!metrics.contains("wrong-password"), "a secret in /metrics");
    let page = http_get(&host, "/channels.json", &[]).await?;
    ensure!(
        !String::from_utf8_lossy(&page.body).contains("password"),
        "a secret on the page"
    );
    server.stop().await
}

/// ffmpeg pushing MPEG-TS over SRT to `port` with `passphrase`, from the face clip looped
/// at real time for `seconds`.
fn publisher(port: u16, passphrase: &str, seconds: u32) -> Result<tokio::process::Child> {
    push(port, passphrase, &media("real-face-h264.mkv"), seconds)
}

/// ffmpeg pushing `clip` (looped, at real time, for `seconds`) over SRT, as OBS would.
fn push(
    port: u16,
    passphrase: &str,
    clip: &std::path::Path,
    seconds: u32,
) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(clip)
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "mpegts"])
        .arg(format!(
            "srt://127.0.0.1:{port}?passphrase={passphrase}&pbkeylen=16"
        ))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

/// A server with one SRT channel `name` on `port` (passphrase `right-key-1234`), once the
/// channel waits for its publisher.
async fn srt_server(name: &'static str, port: u16) -> Result<TestServer> {
    let server = TestServer::start(name, |c| {
        let mut obs = channel(name, &format!("srt://127.0.0.1:{port}"));
        obs.passphrase = Some(Secret::new("right-key-1234"));
        c.channels = vec![obs];
    })
    .await?;
    wait_state(&server.host(), name, "waiting", is("waiting")).await?;
    Ok(server)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_srt_publisher_needs_the_key_and_a_taken_key_refuses_a_second() -> Result<()> {
    let port = free_port()?;
    let server = srt_server("obs", port).await?;
    let host = server.host();
    // The wrong key: refused in the handshake, the page says so.
    let mut wrong = publisher(port, "wrong-key-1234", 2)?;
    let status = tokio::time::timeout(DEADLINE, wrong.wait()).await??;
    ensure!(!status.success(), "a wrong key must be refused");
    let refused = wait_state(&host, "obs", "key refused", |s| {
        s["why_label"] == "key-refused"
    })
    .await?;
    ensure!(refused["state"] == "waiting", "{refused}");
    // The right key: live, faces hidden.
    let mut first = publisher(port, "right-key-1234", 40)?;
    wait_state(&host, "obs", "live", is("live")).await?;
    // A second publisher on the taken key is turned away; the first goes on.
    let mut second = publisher(port, "right-key-1234", 3)?;
    let second_status = tokio::time::timeout(DEADLINE, second.wait()).await??;
    ensure!(
        !second_status.success(),
        "a second publisher must be refused"
    );
    let frames = served_frames(&host, "obs", 2.0).await?;
    ensure!(faces_found(&frames)?.is_empty(), "faces in the SRT channel");
    ensure!(
        status_of(&host).await? == "live",
        "the first publisher was disturbed"
    );
    // The publisher stops: the channel waits for the next one.
    first.start_kill()?;
    first.wait().await?;
    wait_state(&host, "obs", "waiting again", is("waiting")).await?;
    server.stop().await
}

async fn status_of(host: &str) -> Result<String> {
    Ok(status(host, "obs").await?["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// `parts` (MPEG-TS files) one after another in `dir/name`: one stream whose resolution,
/// codec or timestamps change at each join, as a publisher's may.
fn joined(
    dir: &std::path::Path,
    name: &str,
    parts: &[std::path::PathBuf],
) -> Result<std::path::PathBuf> {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend(std::fs::read(part)?);
    }
    let clip = dir.join(name);
    std::fs::write(&clip, bytes)?;
    Ok(clip)
}

/// A TS clip of `seconds` of ffmpeg's test picture at `size`, H.264 (its own timestamps
/// from zero: concatenated, the clips' timestamps jump back at each join).
fn test_clip(
    dir: &std::path::Path,
    name: &str,
    size: &str,
    seconds: u32,
) -> Result<std::path::PathBuf> {
    encoded_clip(dir, name, size, seconds, "libx264")
}

/// Like [`test_clip`], encoded with `codec` (libx264, libx265).
fn encoded_clip(
    dir: &std::path::Path,
    name: &str,
    size: &str,
    seconds: u32,
    codec: &str,
) -> Result<std::path::PathBuf> {
    let out = dir.join(name);
    // (x265 writes its banner to stderr whatever ffmpeg's log level: kept, shown on failure.)
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args([
            "-t",
            &seconds.to_string(),
            "-c:v",
            codec,
            "-preset",
            "ultrafast",
        ])
        .args(["-g", "30", "-pix_fmt", "yuv420p", "-f", "mpegts"])
        .arg(&out)
        .output()?;
    ensure!(
        made.status.success(),
        "ffmpeg could not make {name}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_that_changes_resolution_sends_4k_and_jumps_in_time_stays_live() -> Result<()> {
    let dir = tempdir("channel-changes")?;
    let parts = [
        test_clip(&dir, "a.ts", "640x480", 3)?,
        test_clip(&dir, "4k.ts", "3840x2160", 2)?,
        test_clip(&dir, "b.ts", "1280x720", 3)?,
    ];
    let clip = joined(&dir, "changes.ts", &parts)?;
    let port = free_port()?;
    let server = srt_server("changes", port).await?;
    let host = server.host();
    let mut publisher = push(port, "right-key-1234", &clip, 30)?;
    let live = wait_state(&host, "changes", "live", is("live")).await?;
    // Past the 4K part and into the 720p one: the same run still plays, at the channel's
    // size (decode_frames checks every frame is 640x480).
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut frames = Vec::new();
    while tokio::time::Instant::now() < until {
        let now = status(&host, "changes").await?;
        ensure!(now["run"] == live["run"], "the run restarted: {now}");
        frames = served_frames(&host, "changes", 6.0)
            .await
            .unwrap_or_default();
        // Six seconds, less a short first segment.
        if frames.len() >= 6 * 30 - 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        frames.len() >= 6 * 30 - 15,
        "only {} frames through the changes",
        frames.len()
    );
    let metrics = String::from_utf8(http_get(&host, "/metrics", &[]).await?.body)?;
    ensure!(
        !metrics.contains("hls_face_channel_faults_total{channel=\"changes\",why=\"unreadable\"}"),
        "the decoder failed on the changes"
    );
    publisher.start_kill()?;
    publisher.wait().await?;
    std::fs::remove_dir_all(&dir)?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h265_source_plays_like_an_h264_one_and_starts_again_with_its_node() -> Result<()> {
    let dir = tempdir("channel-hevc")?;
    let clip = encoded_clip(&dir, "hevc.ts", "640x480", 4, "libx265")?;
    let server = TestServer::start("channel-hevc", |c| {
        c.channels = vec![channel("hevc", &format!("file:{}", clip.display()))];
    })
    .await?;
    let host = server.host();
    wait_state(&host, "hevc", "live", is("live")).await?;
    // The first segment is short (6 frames), the next two whole.
    let frames = served_frames(&host, "hevc", 3.0).await?;
    ensure!(frames.len() >= 60, "only {} frames", frames.len());
    server.stop().await?;
    // The node restarts: its channels come from the settings and start again by themselves.
    let server = TestServer::start("channel-hevc", |c| {
        c.channels = vec![channel("hevc", &format!("file:{}", clip.display()))];
    })
    .await?;
    wait_state(&server.host(), "hevc", "live after a restart", is("live")).await?;
    ensure!(!served_frames(&server.host(), "hevc", 0.5).await?.is_empty());
    server.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codec_switch_inside_one_connection_is_shown_as_no_video() -> Result<()> {
    let dir = tempdir("channel-switch")?;
    let parts = [
        test_clip(&dir, "h264.ts", "640x480", 4)?,
        encoded_clip(&dir, "hevc.ts", "640x480", 12, "libx265")?,
    ];
    let clip = joined(&dir, "switch.ts", &parts)?;
    let port = free_port()?;
    let server = srt_server("switch", port).await?;
    let host = server.host();
    let mut publisher = push(port, "right-key-1234", &clip, 16)?;
    wait_state(&host, "switch", "live", is("live")).await?;
    // The ingest keeps the first codec: frames stop, and the page says so instead of "Live".
    let quiet = wait_state(&host, "switch", "live without video", |s| {
        s["why_label"] == "no-video"
    })
    .await?;
    ensure!(quiet["state"] == "live", "{quiet}");
    publisher.start_kill()?;
    publisher.wait().await?;
    std::fs::remove_dir_all(&dir)?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_that_connects_and_sends_nothing_is_named_and_holds_no_key() -> Result<()> {
    let port = free_port()?;
    let server = srt_server("quiet", port).await?;
    let host = server.host();
    // SRT's own tool (Debian's srt-tools) connects with the right key and relays a UDP
    // port nobody sends to: the handshake completes, no byte of media follows.
    let udp = free_port()?;
    let mut silent = tokio::process::Command::new("srt-live-transmit")
        .arg("-a:no")
        .arg(format!("udp://127.0.0.1:{udp}"))
        .arg(format!(
            "srt://127.0.0.1:{port}?passphrase=right-key-1234&pbkeylen=16"
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("srt-live-transmit (Debian package srt-tools)")?;
    // Dropped after the ingest's 5 s of silence, and named: not "camera unreachable".
    let named = wait_state(&host, "quiet", "silent", |s| s["why_label"] == "silent").await?;
    ensure!(
        named["state"] == "waiting" && named["why"] == "the source connected but sent no video",
        "{named}"
    );
    let metrics = String::from_utf8(http_get(&host, "/metrics", &[]).await?.body)?;
    ensure!(
        metrics.contains("hls_face_channel_faults_total{channel=\"quiet\",why=\"silent\"}"),
        "the fault is counted"
    );
    silent.start_kill()?;
    silent.wait().await?;
    // The key is free again: a real publisher goes live and clears the note.
    let _real = publisher(port, "right-key-1234", 30)?;
    let live = wait_state(&host, "quiet", "live", is("live")).await?;
    ensure!(live["why"].is_null(), "{live}");
    server.stop().await
}
