//! Hostile clients and hard days, against the real server and ffmpeg: no slot held by a
//! client that sends no video, no stream that outgrows its announcement, timestamps that
//! cannot multiply frames, one server per runtime folder, viewer links limited to the live
//! window, strict Origin/Host/cookie checks, disk space checked, metrics from start-up.

mod common;

use anyhow::{bail, ensure, Context, Result};
use app::protocol::{ErrorKind, ServerMsg};
use common::*;
use std::time::{Duration, Instant};

/// Waits for an error of `kind` (other messages are skipped).
async fn expect_error(c: &mut Client, kind: ErrorKind) -> Result<()> {
    loop {
        match c.next().await? {
            Some(ServerMsg::Error { kind: got, .. }) if got == kind => return Ok(()),
            Some(ServerMsg::Error { kind: got, .. }) => bail!("expected {kind:?}, got {got:?}"),
            Some(_) => continue,
            None => bail!("closed without the {kind:?} error"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_jump_is_clamped_and_the_session_ends_soon_after_stop() -> Result<()> {
    let server = TestServer::start("gap", |_| {}).await?;
    let mut c = server.socket().await?;
    c.start_session().await?;
    // 60 frames with a 10-hour jump after the 30th: ~1 million frames at 30 fps unclamped.
    stream_file(&mut c, &media("gap.webm"), 30_000, 20).await?;
    let stopped = Instant::now();
    c.stop_and_wait().await?;
    ensure!(
        stopped.elapsed() < Duration::from_secs(15),
        "the session took {:?} to end after Stop",
        stopped.elapsed()
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_decode_to_nothing_do_not_hold_a_slot() -> Result<()> {
    let server = TestServer::start("garbage", |c| c.limits.idle_timeout_secs = 3).await?;
    // A valid WebM header followed by garbage, a packet every half second for far longer
    // than the idle time: refused as bad media, within the idle time (bytes do not reset it).
    let mut c = server.socket().await?;
    c.start_session().await?;
    let webm = std::fs::read(media("face.webm"))?;
    c.send_binary(webm[..200].to_vec()).await?;
    let started = Instant::now();
    let kind = error_while_sending(&mut c, vec![0x55; 4000], Duration::from_millis(500)).await?;
    ensure!(kind == ErrorKind::BadMedia, "{kind:?}");
    ensure!(started.elapsed() < Duration::from_secs(10));

    // A real stream that then trickles a byte a second: idle once frames stop, although
    // bytes keep coming.
    let mut c = server.socket().await?;
    c.start_session().await?;
    stream_bytes(&mut c, &webm[..webm.len() / 3], 30_000, 20).await?;
    c.wait_stats("frames", |s| s.frames_in > 0).await?;
    let kind = error_while_sending(&mut c, vec![0x00], Duration::from_secs(1)).await?;
    ensure!(kind == ErrorKind::Idle, "{kind:?}");
    server.stop().await
}

/// Sends `packet` every `every` while waiting for the server's error (at most 20 s): the
/// kind of the first error. A send that fails (the server closed after its error) is
/// not the test's failure; the error read after it is what counts.
async fn error_while_sending(
    c: &mut Client,
    packet: Vec<u8>,
    every: Duration,
) -> Result<ErrorKind> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ensure!(
            Instant::now() < deadline,
            "no error while bytes kept coming"
        );
        let _ = c.send_binary(packet.clone()).await;
        match tokio::time::timeout(every, c.next()).await {
            Err(_) | Ok(Ok(Some(ServerMsg::PlaylistReady { .. }))) => continue,
            Ok(Ok(Some(ServerMsg::Error { kind, .. }))) => return Ok(kind),
            Ok(Ok(other)) => bail!("expected an error, got {other:?}"),
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_larger_than_announced_and_another_codec_are_bad_media() -> Result<()> {
    let server = TestServer::start("oversize", |_| {}).await?;
    for (clip, mime) in [
        ("huge.webm", "video/webm;codecs=vp9"),
        ("real-face-h264.mkv", "video/webm;codecs=vp9"),
        ("face.webm", "video/webm;codecs=h264"),
    ] {
        let mut c = server.socket().await?;
        c.send(&start_as(mime)).await?;
        c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
            .await?;
        let data = std::fs::read(media(clip))?;
        // The stream is refused while it is still being sent; a closed socket ends it.
        let _ = stream_bytes(&mut c, &data[..data.len().min(300_000)], 30_000, 20).await;
        expect_error(&mut c, ErrorKind::BadMedia)
            .await
            .with_context(|| format!("{clip} announced as {mime}"))?;
    }
    // A live MP4 whose moov lists 20 million samples (what a recorder never sends, and what
    // makes a demuxer build an index of hundreds of MB) is refused before the decoder.
    let mut c = server.socket().await?;
    c.send(&start_as("video/mp4;codecs=avc1.42E01E")).await?;
    c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    let (ftyp, moov) = sample_table_header(1, 20_000_000);
    c.send_binary([ftyp, moov].concat()).await?;
    expect_error(&mut c, ErrorKind::BadMedia)
        .await
        .context("a live MP4 with a sample table")?;
    // A mimeType that names no codec the server decodes is refused at Start.
    let mut c = server.socket().await?;
    c.send(&start_as("video/webm;codecs=av1")).await?;
    expect_error(&mut c, ErrorKind::UnsupportedMedia).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_browser_runs_two_sessions_and_sessions_have_a_maximum_length() -> Result<()> {
    let server = TestServer::start("per-client", |c| c.limits.max_session_secs = 4).await?;
    let (cookie, token) = server.browser_session().await?;
    let url = format!("ws://{}/socket?csrf_token={token}", server.host());
    let origin = server.base();
    let headers = [("Cookie", cookie.as_str()), ("Origin", origin.as_str())];
    let mut a = connect(&url, &headers).await?;
    let mut b = connect(&url, &headers).await?;
    let mut third = connect(&url, &headers).await?;
    a.start_session().await?;
    b.start_session().await?;
    third.send(&start_msg()).await?;
    expect_error(&mut third, ErrorKind::ClientLimit).await?;
    // Another browser is not affected.
    let mut other = server.socket().await?;
    other.start_session().await?;
    // A session that keeps streaming is ended at its maximum length (4 s here).
    let started = Instant::now();
    let webm = std::fs::read(media("face.webm"))?;
    let feed = async {
        for piece in webm.chunks(10_000) {
            if a.send_binary(piece.to_vec()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    };
    feed.await;
    expect_error(&mut a, ErrorKind::TooLong).await?;
    ensure!(started.elapsed() < Duration::from_secs(20));
    // It ends like a Stop: the recording is kept and offered.
    a.wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    a.wait_for("the recording offer", |m| {
        matches!(m, ServerMsg::RecordingReady { .. })
    })
    .await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_cookies_do_not_reset_the_per_address_limit() -> Result<()> {
    let server = TestServer::start("per-address", |c| {
        c.limits.max_sessions_per_address = 2;
        c.limits.max_sessions = 8;
    })
    .await?;
    // Every socket() loads the page again: a fresh cookie each time, one address.
    let mut a = server.socket().await?;
    let mut b = server.socket().await?;
    a.start_session().await?;
    b.start_session().await?;
    let mut third = server.socket().await?;
    third.send(&start_msg()).await?;
    expect_error(&mut third, ErrorKind::ClientLimit).await?;
    // A place given back is the address's again.
    a.stop_and_wait().await?;
    let mut fourth = server.socket().await?;
    fourth.start_session().await?;
    let metrics = http_get(&server.host(), "/metrics", &[]).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    ensure!(
        text.contains("hls_face_sessions_refused_total{why=\"address\"} 1"),
        "the refusal is counted by its cause"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_folder_is_refused_and_foreign_files_stay() -> Result<()> {
    let first = TestServer::start("lock", |_| {}).await?;
    std::fs::write(first.runtime.join("operator-notes.txt"), b"mine")?;
    let runtime = first.runtime.clone();
    let second = TestServer::start("lock-2", |c| c.pipeline.runtime_dir = runtime.clone()).await;
    let err = match second {
        Ok(_) => bail!("a second server started on the same runtime folder"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("another hls-face server") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
    let mut c = first.socket().await?;
    c.start_session().await?;
    c.record_face_clip().await?;
    first.server.shutdown.cancel();
    tokio::time::timeout(DEADLINE, first.server.wait()).await??;
    ensure!(
        runtime.join("operator-notes.txt").exists(),
        "the server removed a file it did not create"
    );
    std::fs::remove_dir_all(&runtime)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_links_reach_only_the_live_window() -> Result<()> {
    // A 2-segment window (2 s): the face clip's first segments leave it while it streams.
    let server = TestServer::start("window", |c| c.pipeline.hls.playlist_size = 2).await?;
    let mut c = server.socket().await?;
    c.send(&start_msg()).await?;
    let ServerMsg::Started {
        session_id,
        viewer_url,
        ..
    } = c
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?
    else {
        unreachable!()
    };
    let token = viewer_url
        .rsplit('/')
        .next()
        .context("viewer url")?
        .to_string();
    stream_file(&mut c, &media("face.webm"), 30_000, 20).await?;
    c.wait_stats("segments", |s| s.segments >= 4).await?;
    let host = server.host();
    let dir = server.runtime.join(&session_id);
    ensure!(dir.join("seg_00000.m4s").exists(), "kept for the recording");
    for route in [format!("/view/{token}"), format!("/hls/{session_id}")] {
        let old = http_get(&host, &format!("{route}/seg_00000.m4s"), &[]).await?;
        ensure!(old.status == 404, "history through {route}: {}", old.status);
    }
    let playlist = http_get(&host, &format!("/view/{token}/playlist.m3u8"), &[]).await?;
    let text = String::from_utf8_lossy(&playlist.body).to_string();
    let live = text
        .lines()
        .rfind(|l| l.ends_with(".m4s") && !l.starts_with('#'))
        .context("no segment listed")?;
    let seg = http_get(&host, &format!("/view/{token}/{live}"), &[]).await?;
    ensure!(seg.status == 200, "live segment: {}", seg.status);
    c.stop_and_wait().await?;
    c.wait_for("recording", |m| {
        matches!(m, ServerMsg::RecordingReady { .. })
    })
    .await?;
    // The owner gets the whole session as the recording.
    let recording = http_get(&host, &format!("/hls/{session_id}/recording.mp4"), &[]).await?;
    ensure!(recording.status == 200, "recording: {}", recording.status);
    let frames = decode_frames(&recording.body, 640, 480)?;
    ensure!(frames.len() >= 120, "recording has {} frames", frames.len());
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_host_and_cookie_are_checked_strictly() -> Result<()> {
    let server = TestServer::start("origin", |_| {}).await?;
    let host = server.host();
    let (cookie, token) = server.browser_session().await?;
    let url = format!("ws://{host}/socket?csrf_token={token}");
    let https = format!("https://{host}");
    for (what, headers) in [
        (
            "https origin on an http server",
            vec![("Cookie", cookie.as_str()), ("Origin", https.as_str())],
        ),
        (
            "two Origin headers",
            vec![
                ("Cookie", cookie.as_str()),
                ("Origin", "http://evil.example"),
                ("Origin", &server.base()),
            ],
        ),
    ] {
        let status = tokio::time::timeout(DEADLINE, refused_status(&url, &headers))
            .await
            .with_context(|| format!("{what}: no answer"))?;
        ensure!(status == Some(403), "{what}: {status:?}");
    }
    // DNS rebinding: a foreign Host with a matching Origin.
    let head = raw(
        &host,
        &format!(
            "GET /socket?csrf_token={token} HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\n\
             Cookie: {cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    )
    .await
    .context("upgrade with a foreign Host")?;
    ensure!(head.starts_with("HTTP/1.1 421"), "{head}");
    let page = raw(
        &host,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await?;
    ensure!(page.starts_with("HTTP/1.1 421"), "{page}");
    // A made-up session cookie is replaced by one the server signed.
    let forged = "hls_face_sid=0123456789abcdef0123456789abcdef";
    let resp = http_get(&host, "/", &[("Cookie", forged)]).await?;
    let set = resp.header("set-cookie").context("no fresh cookie")?;
    ensure!(
        set.starts_with("hls_face_sid=") && !set.starts_with(forged),
        "{set}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_refuses_new_sessions_and_ends_running_ones_with_their_playlist() -> Result<()> {
    let server = TestServer::start("disk", |c| c.limits.min_free_disk_mb = u64::MAX >> 21).await?;
    let mut c = server.socket().await?;
    c.send(&start_msg()).await?;
    expect_error(&mut c, ErrorKind::Storage).await?;
    server.stop().await?;

    // Running out while streaming: the limit is set just under what is free now, so the
    // session's own segments cross it.
    let probe = tempdir("disk-probe")?;
    let free_mb = server::disk::free_bytes(&probe)? >> 20;
    let server = TestServer::start("disk-run", |c| c.limits.min_free_disk_mb = free_mb - 1).await?;
    let mut c = server.socket().await?;
    let id = c.start_session().await?;
    let webm = std::fs::read(media("real-face.webm"))?;
    let feed = async {
        for _ in 0..20 {
            for piece in webm.chunks(30_000) {
                if c.send_binary(piece.to_vec()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), feed)
        .await
        .ok();
    expect_error(&mut c, ErrorKind::Storage).await?;
    let playlist = http_get(&server.host(), &format!("/hls/{id}/playlist.m3u8"), &[]).await?;
    let playlist = String::from_utf8_lossy(&playlist.body);
    ensure!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_list_every_series_from_start_up_and_sockets_are_capped() -> Result<()> {
    let server = TestServer::start("metrics-cap", |c| {
        c.limits.max_sessions = 2;
        c.limits.max_sockets = 3;
    })
    .await?;
    let metrics = http_get(&server.host(), "/metrics", &[]).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    for series in [
        "hls_face_sessions_live",
        "hls_face_errors_total{kind=\"busy\"}",
        "hls_face_process_resident_bytes",
        "hls_face_process_open_fds",
        "hls_face_ffmpeg_children",
        "hls_face_sockets_open",
    ] {
        ensure!(text.contains(series), "{series} missing:\n{text}");
    }
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.socket().await?);
    }
    // The server counts a socket once its task runs: wait until it shows all three.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = http_get(&server.host(), "/metrics", &[]).await?;
        if String::from_utf8_lossy(&m.body).contains("hls_face_sockets_open 3") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the server never counted 3 sockets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cookie, token) = server.browser_session().await?;
    let url = format!("ws://{}/socket?csrf_token={token}", server.host());
    let status = refused_status(&url, &[("Cookie", &cookie), ("Origin", &server.base())]).await;
    ensure!(status == Some(503), "socket over the cap: {status:?}");
    drop(open);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_pushed_far_faster_than_real_time_is_refused_beside_a_healthy_session() -> Result<()>
{
    let server = TestServer::start("ahead", |_| {}).await?;
    // A minute of real footage (the face clip looped), pushed as fast as the link allows.
    let dir = tempdir("ahead")?;
    let long = dir.join("minute.webm");
    let face = media("face.webm");
    ffmpeg_make(
        &[
            "-stream_loop",
            "9",
            "-i",
            face.to_str().unwrap_or_default(),
            "-c",
            "copy",
        ],
        &long,
    )?;
    let data = std::fs::read(&long)?;

    let mut healthy = server.socket().await?;
    healthy.start_session().await?;
    let healthy_run = tokio::spawn(async move {
        stream_file(&mut healthy, &media("face.webm"), 30_000, 8).await?;
        healthy.send(&app::protocol::ClientMsg::Stop).await?;
        healthy
            .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
            .await?;
        Ok::<_, anyhow::Error>(())
    });

    let mut pusher = server.socket().await?;
    pusher.start_session().await?;
    let started = Instant::now();
    let mut refused = None;
    for piece in data.chunks(64 * 1024) {
        if pusher.send_binary(piece.to_vec()).await.is_err() {
            break;
        }
        if let Ok(Ok(Some(ServerMsg::Error { kind, .. }))) =
            tokio::time::timeout(Duration::from_millis(1), pusher.next()).await
        {
            refused = Some(kind);
            break;
        }
    }
    let kind = match refused {
        Some(kind) => kind,
        None => {
            let deadline = Instant::now() + DEADLINE;
            loop {
                ensure!(
                    Instant::now() < deadline,
                    "a minute pushed at once was never refused"
                );
                match pusher.next().await? {
                    Some(ServerMsg::Error { kind, .. }) => break kind,
                    Some(_) => continue,
                    None => bail!("closed without an error"),
                }
            }
        }
    };
    ensure!(kind == ErrorKind::RateLimited, "refused as {kind:?}");
    // Refused while the minute was still ahead of real time (a session at real time would
    // have needed the whole minute). How soon depends on how fast this machine decodes:
    // the rule fires once decoding has gained 10 s on the clock.
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "refused only after {:?}",
        started.elapsed()
    );

    // The healthy session beside it streamed at its own pace and ended normally.
    healthy_run.await??;
    std::fs::remove_dir_all(&dir)?;
    server.stop().await
}

/// Start for an H.264 stream of `width`×`height`.
fn start_sized(width: u32, height: u32) -> app::protocol::ClientMsg {
    app::protocol::ClientMsg::Start {
        mime_type: "video/mp4;codecs=avc1.42E01F".into(),
        width,
        height,
    }
}

/// A server where the plan alone decides admission (the machine's CPU is not read: tests
/// share it with compilers), at the default 90 % ceiling of this machine's cores.
async fn plan_only_server(name: &str) -> Result<TestServer> {
    TestServer::start(name, |c| {
        c.limits.max_cpu_percent = 90;
        c.limits.measure_cpu = false;
        c.limits.max_sessions = 8;
        c.limits.max_sessions_per_address = 8;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_planned_by_pixels_and_privacy_at_their_cost() -> Result<()> {
    let server = plan_only_server("plan").await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let budget = cores * 0.9;
    let full_hd = server::session::capacity::session_share(server::source::Codec::H264, 1920, 1080);
    let vga = server::session::capacity::session_share(server::source::Codec::H264, 640, 480);
    // As many 1080p sessions as the plan holds are admitted, and the next is refused as
    // busy, although far fewer than max-sessions run.
    let fit = ((budget + 1e-9) / full_hd).floor() as usize;
    ensure!(
        (1..8).contains(&fit),
        "{fit} 1080p sessions on {cores} cores"
    );
    let mut held = Vec::new();
    for _ in 0..fit {
        let mut c = server.socket().await?;
        c.start_with(&start_sized(1920, 1080)).await?;
        held.push(c);
    }
    let mut refused = server.socket().await?;
    refused.send(&start_sized(1920, 1080)).await?;
    expect_error(&mut refused, ErrorKind::Busy).await?;
    let metrics = http_get(&server.host(), "/metrics", &[]).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    ensure!(
        text.contains("hls_face_sessions_refused_total{why=\"sessions\"}"),
        "the refusal is counted as sessions: {text}"
    );
    // What is left holds smaller pictures: 640×480 sessions fill the rest of the plan.
    let left = budget - fit as f64 * full_hd;
    let small = ((left + 1e-9) / vga).floor() as usize;
    for _ in 0..small {
        let mut c = server.socket().await?;
        c.start_with(&start_sized(640, 480)).await?;
        held.push(c);
    }
    // Ending a 1080p session gives its share back.
    let mut first = held.remove(0);
    first.stop_and_wait().await?;
    drop(first);
    let mut again = server.socket().await?;
    again.start_with(&start_sized(1920, 1080)).await?;
    drop(again);
    drop(held);
    server.stop().await?;

    // Privacy: a session that asks for it before Start is planned at its cost, and one
    // that switches it on mid-session takes the room it needs (it is never refused).
    let server = plan_only_server("plan-privacy").await?;
    let private = vga * server::session::capacity::PRIVACY_COST_FACTOR;
    let privacy_on = app::protocol::ClientMsg::SetPrivacy { on: true };
    let start = |privacy: bool| {
        let host = server.host();
        let privacy_on = privacy_on.clone();
        async move {
            let mut c = socket(&host).await?;
            if privacy {
                c.send(&privacy_on).await?;
            }
            c.send(&start_sized(640, 480)).await?;
            Ok::<_, anyhow::Error>(c)
        }
    };
    // Privacy sessions, then boxed ones, until what is left holds one boxed session more
    // but not one privacy session more (left in [2, 4) boxed shares once `boxed` runs).
    let n = ((budget - 2.0 * vga) / private).floor() as usize;
    ensure!((1..8).contains(&n), "{n} privacy sessions on {cores} cores");
    let mut held = Vec::new();
    let mut left = budget;
    for privacy in std::iter::repeat_n(true, n).chain(std::iter::repeat(false)) {
        if !privacy && left < 4.0 * vga {
            break;
        }
        let mut c = start(privacy).await?;
        c.wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
            .await?;
        held.push(c);
        left -= if privacy { private } else { vga };
    }
    let mut boxed = start(false).await?;
    boxed
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    // A privacy session is planned at its cost at Start: refused where a boxed one fits.
    let mut refused = start(true).await?;
    expect_error(&mut refused, ErrorKind::Busy).await?;
    boxed.send(&privacy_on).await?;
    // The switch is a message on another socket: a boxed newcomer may still get in before
    // it lands (it is stopped again), never after.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut late = start(false).await?;
        match late.next().await? {
            Some(ServerMsg::Error {
                kind: ErrorKind::Busy,
                ..
            }) => break,
            Some(ServerMsg::Started { .. }) => {
                ensure!(Instant::now() < deadline, "privacy was never re-planned");
                late.stop_and_wait().await?;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    // Switched off again, the room comes back.
    boxed
        .send(&app::protocol::ClientMsg::SetPrivacy { on: false })
        .await?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut c = start(false).await?;
        match c.next().await? {
            Some(ServerMsg::Started { .. }) => break,
            Some(ServerMsg::Error {
                kind: ErrorKind::Busy,
                ..
            }) => ensure!(Instant::now() < deadline, "the room never came back"),
            other => bail!("unexpected {other:?}"),
        }
    }
    drop((held, boxed, refused));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_busy_with_other_software_is_named_as_such_not_as_sessions() -> Result<()> {
    // The real CPU check, on an idle server (no session planned), at a 50 % ceiling.
    let server = TestServer::start("foreign-load", |c| {
        c.limits.max_cpu_percent = 50;
    })
    .await?;
    // Other software takes every core: one busy loop per core (a build, a backup).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let burners = (0..cores)
        .map(|_| {
            tokio::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .kill_on_drop(true)
                .spawn()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // The gauge smooths its samples: a Start is refused as overloaded once it sees them.
    let deadline = Instant::now() + DEADLINE;
    let message = loop {
        let mut c = server.socket().await?;
        c.send(&start_msg()).await?;
        match c.next().await? {
            Some(ServerMsg::Error {
                kind: ErrorKind::Overloaded,
                message,
            }) => break message,
            Some(ServerMsg::Started { .. }) => {
                ensure!(Instant::now() < deadline, "the busy machine was never seen");
                c.stop_and_wait().await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            other => bail!("unexpected {other:?}"),
        }
    };
    ensure!(
        message.contains("heavy load") && message.contains("not from other sessions"),
        "the page hears the cause: {message}"
    );
    let metrics = http_get(&server.host(), "/metrics", &[]).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    ensure!(
        text.contains("hls_face_sessions_refused_total{why=\"cpu\"}"),
        "counted as cpu"
    );
    drop(burners);
    server.stop().await
}
