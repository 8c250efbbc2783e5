//! Nobody can evict someone else's recording: against the real server, a victim's kept
//! recording survives another network starting and stopping sessions as fast as it can;
//! that network replaces only its own oldest recordings, and when the server keeps as many
//! as it may, the next session is refused with `storage` instead of an old one deleted.

mod common;

use anyhow::ensure;
use anyhow::{anyhow, Result};
use app::protocol::{ClientMsg, ErrorKind, ServerMsg};
use common::*;

/// A socket of a fresh browser whose trusted proxy says it comes from `ip`.
async fn socket_from(host: &str, ip: &str) -> Result<Client> {
    let (cookie, token) = browser_session(host).await?;
    let url = format!("ws://{host}/socket?csrf_token={token}");
    let origin = format!("http://{host}");
    connect(
        &url,
        &[
            ("Cookie", cookie.as_str()),
            ("Origin", origin.as_str()),
            ("X-Forwarded-For", ip),
        ],
    )
    .await
}

/// A short session from `ip`, stopped with its recording kept: its session id, or the
/// error that refused it.
async fn recorded_from(host: &str, ip: &str, clip: &[u8]) -> Result<Result<String, ErrorKind>> {
    let mut c = socket_from(host, ip).await?;
    c.send(&start_msg()).await?;
    let session = loop {
        match c.next().await? {
            Some(ServerMsg::Started { session_id, .. }) => break session_id,
            Some(ServerMsg::Error { kind, .. }) => return Ok(Err(kind)),
            Some(_) => {}
            None => return Err(anyhow!("closed before started")),
        }
    };
    stream_bytes(&mut c, clip, 30_000, 20).await?;
    c.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    c.send(&ClientMsg::Stop).await?;
    c.wait_for("recording", |m| {
        matches!(m, ServerMsg::RecordingReady { .. })
    })
    .await?;
    Ok(Ok(session))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_network_cannot_evict_a_kept_recording_and_a_full_server_refuses() -> Result<()> {
    let server = TestServer::start("retention", |c| {
        c.site.trust_forwarded = true;
        c.limits.max_retained = 4;
        c.limits.max_retained_per_address = 2;
    })
    .await?;
    let host = server.host();
    let face = std::fs::read(media("face.webm"))?;
    let clip = &face[..face.len() / 3];
    let recording = |id: &str| format!("/hls/{id}/recording.mp4");

    let victim = recorded_from(&host, "192.0.2.1", clip)
        .await?
        .map_err(|k| anyhow!("victim refused: {k:?}"))?;
    // Another network starts and stops sessions one after another: it keeps at most two,
    // replacing its own oldest.
    let mut attacker = Vec::new();
    for _ in 0..3 {
        match recorded_from(&host, "198.51.100.7", clip).await? {
            Ok(id) => attacker.push(id),
            Err(kind) => ensure!(kind == ErrorKind::Storage, "refused as {kind:?}"),
        }
    }
    ensure!(
        attacker.len() == 3,
        "each of the attacker's sessions ran: {attacker:?}"
    );
    let status = |path: String| {
        let host = host.clone();
        async move { Ok::<_, anyhow::Error>(http_get(&host, &path, &[]).await?.status) }
    };
    ensure!(
        status(recording(&victim)).await? == 200,
        "the victim's recording is kept"
    );
    let gone = eventually(DEADLINE, || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{host}{}", recording(&attacker[0])))
            .output()
            .is_ok_and(|o| o.stdout == b"404")
    })
    .await;
    ensure!(gone, "the attacker's own oldest recording made room");
    ensure!(status(recording(&attacker[2])).await? == 200);

    // Three kept (one victim's, two attacker's): one more network's running session fills
    // max-retained, so the next is refused, and nothing kept is deleted for it.
    let mut running = socket_from(&host, "203.0.113.9").await?;
    running.start().await?;
    match recorded_from(&host, "198.51.100.77", clip).await? {
        Err(ErrorKind::Storage) => {}
        other => anyhow::bail!("a full server should refuse with storage: {other:?}"),
    }
    ensure!(status(recording(&victim)).await? == 200, "still kept");
    drop(running);
    server.stop().await
}
