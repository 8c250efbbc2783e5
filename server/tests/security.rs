//! Who gets in and what they can read: CSRF/Origin checks on the socket, path validation
//! on the HLS route, and typed errors for bad input — against the real server.

mod common;

use anyhow::{ensure, Result};
use app::protocol::{ClientMsg, ErrorKind, ServerMsg};
use common::*;
use futures_util::SinkExt;

/// Waits for the error the server sends, then for the socket to close.
async fn expect_error(client: &mut Client, kind: ErrorKind) -> Result<()> {
    loop {
        match client.next().await? {
            Some(ServerMsg::Error { kind: got, message }) => {
                ensure!(got == kind, "expected {kind:?}, got {got:?}");
                ensure!(
                    message == kind.user_message(),
                    "error text must be the user-facing one"
                );
                break;
            }
            Some(_) => continue,
            None => anyhow::bail!("closed without the {kind:?} error"),
        }
    }
    ensure!(
        client.next().await?.is_none(),
        "the session must end after {kind:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_refuses_missing_wrong_foreign_tokens_and_origins() -> Result<()> {
    let server = TestServer::start("csrf", |_| {}).await?;
    let (cookie, token) = server.browser_session().await?;
    let (other_cookie, other_token) = server.browser_session().await?;
    ensure!(cookie != other_cookie && token != other_token);
    let origin = server.base();
    let url = |t: &str| format!("ws://{}/socket?csrf_token={t}", server.host());
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "no token",
            format!("ws://{}/socket", server.host()),
            vec![("Cookie", &cookie), ("Origin", &origin)],
        ),
        (
            "wrong token",
            url(&"0".repeat(64)),
            vec![("Cookie", &cookie), ("Origin", &origin)],
        ),
        (
            "another session's token",
            url(&other_token),
            vec![("Cookie", &cookie), ("Origin", &origin)],
        ),
        ("no cookie", url(&token), vec![("Origin", &origin)]),
        (
            "foreign origin",
            url(&token),
            vec![("Cookie", &cookie), ("Origin", "http://evil.example")],
        ),
        ("no origin", url(&token), vec![("Cookie", &cookie)]),
    ];
    for (what, url, headers) in cases {
        let status = refused_status(&url, &headers).await;
        ensure!(status == Some(403), "{what}: expected 403, got {status:?}");
    }
    // The same token with its own cookie and origin is accepted.
    ensure!(
        connect(&url(&token), &[("Cookie", &cookie), ("Origin", &origin)])
            .await
            .is_ok()
    );
    // A plain GET with a valid token is still no upgrade.
    let plain = http_get(
        &server.host(),
        &format!("/socket?csrf_token={token}"),
        &[("Cookie", &cookie), ("Origin", &origin)],
    )
    .await?;
    ensure!(plain.status == 400, "plain GET: {}", plain.status);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_route_serves_nothing_outside_a_session_folder() -> Result<()> {
    let server = TestServer::start("paths", |_| {}).await?;
    let mut client = server.socket().await?;
    client.send(&start_msg()).await?;
    let ServerMsg::Started { session_id, .. } = client
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?
    else {
        unreachable!()
    };
    let dir = server.runtime.join(&session_id);
    // The only file the route reads from disk is the recording; the stream is in memory.
    std::fs::write(dir.join("recording.mp4"), b"segment")?;
    std::fs::write(dir.join("seg_00000.ts"), b"segment")?;
    std::fs::write(server.runtime.join("outside.ts"), b"secret")?;

    let ok = http_get(
        &server.host(),
        &format!("/hls/{session_id}/recording.mp4"),
        &[],
    )
    .await?;
    ensure!(
        ok.status == 200 && ok.body == b"segment",
        "a real recording is served"
    );
    std::fs::remove_file(dir.join("recording.mp4"))?;
    std::os::unix::fs::symlink("/etc/passwd", dir.join("recording.mp4"))?;

    let other = "0123456789abcdef0123456789abcdef";
    let paths = [
        format!("/hls/{session_id}/recording.mp4"),
        format!("/hls/{session_id}/seg_00000.ts"),
        format!("/hls/{session_id}/..%2Foutside.ts"),
        format!("/hls/{session_id}/%2E%2E%2Foutside.ts"),
        format!("/hls/{session_id}/%252E%252E%252Foutside.ts"),
        format!("/hls/{session_id}/..%252Foutside.ts"),
        format!("/hls/{session_id}/%2Fetc%2Fpasswd"),
        format!("/hls/{session_id}//etc/passwd"),
        format!("/hls/{session_id}/../outside.ts"),
        "/hls/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/hls/..%2F/outside.ts".to_string(),
        format!("/hls/{other}/playlist.m3u8"),
        format!("/hls/{}/playlist.m3u8", session_id.to_uppercase()),
        format!("/hls/{session_id}/playlist.m3u8.tmp"),
        format!("/hls/{session_id}/real.html"),
        "/hls/%2Fetc/passwd".to_string(),
    ];
    for path in paths {
        let resp = http_get(&server.host(), &path, &[]).await?;
        ensure!(
            resp.status == 404,
            "{path}: expected 404, got {}",
            resp.status
        );
        ensure!(
            !String::from_utf8_lossy(&resp.body).contains("root:"),
            "{path} leaked a file"
        );
        ensure!(resp.body != b"secret", "{path} leaked outside.ts");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_typed_error_and_ends_only_that_session() -> Result<()> {
    let server = TestServer::start("badinput", |c| {
        c.limits.max_chunk_bytes = 64 * 1024;
    })
    .await?;

    // Text that is not a known message.
    let mut c = server.socket().await?;
    c.ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"explode"}"#.into(),
    ))
    .await?;
    expect_error(&mut c, ErrorKind::BadMessage).await?;

    // Media before start.
    let mut c = server.socket().await?;
    c.send_binary(vec![1, 2, 3]).await?;
    expect_error(&mut c, ErrorKind::Protocol).await?;

    // Unsupported media announcements.
    for bad in [
        ClientMsg::Start {
            mime_type: "video/mp4".into(),
            width: 640,
            height: 480,
        },
        ClientMsg::Start {
            mime_type: "video/webm".into(),
            width: 99_999,
            height: 480,
        },
        ClientMsg::Start {
            mime_type: "video/webm".into(),
            width: 641,
            height: 480,
        },
    ] {
        let mut c = server.socket().await?;
        c.send(&bad).await?;
        expect_error(&mut c, ErrorKind::UnsupportedMedia).await?;
    }

    // A second start.
    let mut c = server.socket().await?;
    c.send(&start_msg()).await?;
    c.send(&start_msg()).await?;
    expect_error(&mut c, ErrorKind::Protocol).await?;

    // A chunk over the size limit.
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.send_binary(vec![0x1a; 64 * 1024 + 1]).await?;
    expect_error(&mut c, ErrorKind::TooLarge).await?;

    // Binary garbage instead of WebM.
    let garbage: Vec<u8> = (0..40_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.send_binary(garbage.clone()).await?;
    expect_error(&mut c, ErrorKind::BadMedia).await?;

    // A valid header followed by garbage: the decoder fails before any frame, so the
    // client hears that its media could not be read.
    let webm = std::fs::read(media("face.webm"))?;
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.send_binary(webm[..200].to_vec()).await?;
    c.send_binary(garbage).await?;
    c.send(&ClientMsg::Stop).await?;
    expect_error(&mut c, ErrorKind::BadMedia).await?;

    // A truncated first chunk followed by stop: nothing decodable either.
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.send_binary(webm[..40].to_vec()).await?;
    c.send(&ClientMsg::Stop).await?;
    expect_error(&mut c, ErrorKind::BadMedia).await?;

    // Stop twice, and stop before any media: handled, no crash, the session ends.
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.send(&ClientMsg::Stop).await?;
    c.send(&ClientMsg::Stop).await?;
    let ended = c
        .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    ensure!(ended == ServerMsg::Ended { url: None }, "{ended:?}");

    // Stop without a session.
    let mut c = server.socket().await?;
    c.send(&ClientMsg::Stop).await?;
    expect_error(&mut c, ErrorKind::Protocol).await?;

    // After all that, a normal session still works.
    let mut c = server.socket().await?;
    c.start_session().await?;
    c.record_face_clip().await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_limit_are_told_the_server_is_busy() -> Result<()> {
    let server = TestServer::start("busy", |c| c.limits.max_sessions = 2).await?;
    let mut live = Vec::new();
    for _ in 0..2 {
        let mut c = server.socket().await?;
        c.start_session().await?;
        live.push(c);
    }
    let mut third = server.socket().await?;
    third.send(&start_msg()).await?;
    expect_error(&mut third, ErrorKind::Busy).await?;
    // The existing sessions are unaffected: both still stop cleanly.
    for c in &mut live {
        c.stop_and_wait().await?;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_messages_is_cut_off() -> Result<()> {
    let server = TestServer::start("rate", |c| c.limits.max_messages_per_second = 20).await?;
    let mut c = server.socket().await?;
    c.start_session().await?;
    // Valid WebM, in pieces far too small and far too many.
    let webm = std::fs::read(media("face.webm"))?;
    for piece in webm[..2000].chunks(10) {
        if c.send_binary(piece.to_vec()).await.is_err() {
            break;
        }
    }
    expect_error(&mut c, ErrorKind::RateLimited).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_ended_without_hurting_others() -> Result<()> {
    let server = TestServer::start("stall", |c| c.limits.idle_timeout_secs = 2).await?;
    // The stalled client: a burst of media far faster than real time, then silence; it
    // never reads a single server message.
    let mut stalled = server.socket().await?;
    stalled.send(&start_msg()).await?;
    let webm = std::fs::read(media("face.webm"))?;
    for piece in webm.chunks(64 * 1024) {
        stalled.send_binary(piece.to_vec()).await?;
    }
    // Meanwhile another session works normally.
    let mut other = server.socket().await?;
    other.send(&start_msg()).await?;
    other
        .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
        .await?;
    stream_file(&mut other, &media("face.webm"), 30_000, 20).await?;
    other
        .wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    other.send(&ClientMsg::Stop).await?;
    other
        .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    // The stalled session is ended by the idle timeout; its queued messages end with Idle.
    let mut saw_idle = false;
    while let Some(msg) = stalled.next().await? {
        if let ServerMsg::Error { kind, .. } = msg {
            ensure!(kind == ErrorKind::Idle, "{kind:?}");
            saw_idle = true;
        }
    }
    ensure!(saw_idle, "the stalled session must end with an idle error");
    server.stop().await
}
