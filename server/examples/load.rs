//! Load client for the soak and benchmark commands: N sessions against a running server,
//! each replaying a real WebM clip at real time (ffmpeg `-re -stream_loop -1 -c copy`, no
//! re-encoding) over the real WebSocket, like a browser's MediaRecorder would.
//!
//! `cargo run --release -p server --example load -- BASE_URL SESSIONS SECONDS CLIP`
//!
//! A `.mkv` clip is sent as H.264 in Matroska (`video/webm;codecs=h264`, as Chromium's
//! recorder sends it), anything else as VP9 WebM. Each session prints its output frame rate
//! and dropped share measured after a warm-up (the first quarter, at most 10 s), and a
//! last line `load-json: {...}` sums them up for scripts. With `LOAD_PRIVACY=1` every
//! session turns privacy mode on before Start, as the page does when its box is ticked.
//! With `LOAD_UNTIL_REFUSED=1` the sessions open one at a time, each once the one before it
//! has run `LOAD_STAGGER_SECONDS` (default 5, long enough for admission's CPU gauge to see
//! it), and a refusal stops the opening (one for room — busy or heavy load — only after
//! three more tries, 10 s apart): the admitted ones run to the end. That is
//! load up to the capacity limit admission finds with whatever else runs on the machine.

use anyhow::{bail, Context, Result};
use app::protocol::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Default)]
struct Outcome {
    bytes: u64,
    chunks: u64,
    stats: u64,
    frames_out: u64,
    dropped: u64,
    /// (frames out, frames dropped) when the warm-up ended, and when.
    warm: Option<(u64, u64, Instant)>,
    /// Output frames per second and dropped share after the warm-up.
    fps_out: f64,
    dropped_share: f64,
    ended: bool,
    /// The server started the session (refusals never do).
    admitted: bool,
    busy: bool,
    error: Option<String>,
}

/// Loads the page like a browser: (session cookie `name=value`, CSRF token).
async fn get(host: &str, path: &str) -> Result<(String, String)> {
    let page = reqwest::get(format!("http://{host}{path}")).await?;
    let cookie = page
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("no cookie")?
        .to_string();
    let text = page.text().await?;
    let marker = "name=\"csrf-token\" content=\"";
    let start = text.find(marker).context("no token")? + marker.len();
    let token = text.get(start..start + 64).context("short token")?;
    Ok((cookie, token.to_string()))
}

/// What the server answered a session's Start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Opened {
    Admitted,
    /// Refused for room: busy (the sessions' plan, or an encoder that lagged in the last
    /// 5 s) or heavy load on the machine; either may pass a moment later.
    NoRoom,
    /// Refused for any other reason, or no answer.
    Refused,
}

/// A session refused for room is tried again this many times, after two staggers each.
const NO_ROOM_RETRIES: u32 = 3;

/// Runs one session until `deadline`; `opened` hears once what the server answered.
async fn session(
    host: String,
    deadline: tokio::time::Instant,
    clip: String,
    opened: tokio::sync::oneshot::Sender<Opened>,
) -> Result<Outcome> {
    let mut opened = Some(opened);
    let mut tell = |answer: Opened| {
        if let Some(tx) = opened.take() {
            let _ = tx.send(answer);
        }
    };
    let (cookie, token) = get(&host, "/").await?;
    let mut req = format!("ws://{host}/socket?csrf_token={token}").into_client_request()?;
    req.headers_mut().insert("Cookie", cookie.parse()?);
    req.headers_mut()
        .insert("Origin", format!("http://{host}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    let (mut tx, mut rx) = ws.split();
    if std::env::var("LOAD_PRIVACY").is_ok_and(|v| v == "1") {
        let on = ClientMsg::SetPrivacy { on: true }.encode();
        tx.send(Message::Text(on.into())).await?;
    }
    let h264 = clip.ends_with(".mkv");
    let start = ClientMsg::Start {
        mime_type: if h264 {
            "video/webm;codecs=h264".into()
        } else if clip.contains("vp8") {
            // Firefox's recorder.
            "video/webm;codecs=vp8".into()
        } else {
            "video/webm;codecs=vp9".into()
        },
        width: 640,
        height: 480,
    };
    tx.send(Message::Text(start.encode().into())).await?;
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            &clip,
        ])
        .args([
            "-c",
            "copy",
            "-f",
            if h264 { "matroska" } else { "webm" },
            "pipe:1",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut media = ffmpeg.stdout.take().context("no stdout")?;
    let mut out = Outcome::default();
    let seconds = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_secs();
    let warm_after = Duration::from_secs((seconds / 4).min(10));
    let began = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut started = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            n = media.read(&mut buf), if started => {
                let n = n?;
                if n == 0 { bail!("replay ended"); }
                out.bytes += n as u64;
                out.chunks += 1;
                tx.send(Message::Binary(buf[..n].to_vec().into())).await?;
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => match ServerMsg::decode(t.as_str())? {
                    ServerMsg::Started { viewer_url, .. } => {
                        // For scripts that watch a load session (the viewer benchmark).
                        println!("viewer-url: {viewer_url}");
                        started = true;
                        out.admitted = true;
                        tell(Opened::Admitted);
                    }
                    ServerMsg::Stats(s) => {
                        out.stats += 1;
                        out.frames_out = s.frames_out;
                        out.dropped = s.frames_dropped;
                        if out.warm.is_none() && began.elapsed() >= warm_after {
                            out.warm = Some((s.frames_out, s.frames_dropped, Instant::now()));
                        }
                    }
                    ServerMsg::Error { kind, message } => {
                        // Both are admission's "no room": busy with sessions, or heavy load.
                        out.busy = matches!(
                            kind,
                            app::protocol::ErrorKind::Busy | app::protocol::ErrorKind::Overloaded
                        );
                        out.error = Some(message);
                        tell(if out.busy { Opened::NoRoom } else { Opened::Refused });
                        return Ok(out);
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                _ => { out.error = Some("socket closed".into()); tell(Opened::Refused); return Ok(out); }
            },
        }
    }
    drop(ffmpeg);
    if let Some((out0, dropped0, at)) = out.warm {
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        let (frames, dropped) = (out.frames_out - out0, out.dropped - dropped0);
        out.fps_out = frames as f64 / secs;
        out.dropped_share = dropped as f64 / (frames + dropped).max(1) as f64;
    }
    tx.send(Message::Text(ClientMsg::Stop.encode().into()))
        .await?;
    while let Some(Ok(msg)) = rx.next().await {
        if let Message::Text(t) = msg {
            if let Ok(ServerMsg::Ended { .. }) = ServerMsg::decode(t.as_str()) {
                out.ended = true;
                break;
            }
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, n, secs, clip] = args.as_slice() else {
        bail!("usage: load BASE_URL SESSIONS SECONDS CLIP");
    };
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (n, secs): (usize, u64) = (n.parse()?, secs.parse()?);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let until_refused = std::env::var("LOAD_UNTIL_REFUSED").is_ok_and(|v| v == "1");
    let stagger = Duration::from_secs_f64(
        std::env::var("LOAD_STAGGER_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|s: &f64| s.is_finite() && (0.0..=600.0).contains(s))
            .unwrap_or(5.0),
    );
    let mut tasks = Vec::new();
    let mut retries = 0;
    while tasks.len() < n {
        let i = tasks.len();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(session(
            host.clone(),
            deadline,
            clip.clone(),
            tx,
        )));
        if !until_refused {
            continue;
        }
        // An error before the server answered counts as a refusal here too. No room can be
        // a moment's (a browser starting beside the server, an encoder that lagged once):
        // asked again a few times, as the page tells a person to, before the opening ends.
        let wait = match rx.await.unwrap_or(Opened::Refused) {
            Opened::Admitted => {
                retries = 0;
                println!(
                    "load: session {i} admitted at {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                stagger
            }
            Opened::NoRoom if retries < NO_ROOM_RETRIES => {
                retries += 1;
                println!("load: session {i} found no room, trying again ({retries})");
                2 * stagger
            }
            _ => {
                println!("load: session {i} refused, opening no more");
                break;
            }
        };
        tokio::time::sleep(wait).await; // spacing the load, not waiting for a condition
    }
    let mut failed = 0;
    let (mut busy, mut refused, mut fps, mut dropped) = (0, 0, Vec::new(), Vec::new());
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await? {
            Ok(o) => {
                println!(
                    "load session {i}: {} chunks, {:.1} MB sent, {} frames out ({:.1} fps after warm-up, {:.2} % dropped), ended: {}{}",
                    o.chunks,
                    o.bytes as f64 / 1e6,
                    o.frames_out,
                    o.fps_out,
                    o.dropped_share * 100.0,
                    o.ended,
                    o.error.clone().map(|e| format!(", error: {e}")).unwrap_or_default()
                );
                if o.busy {
                    busy += 1;
                } else if !o.admitted {
                    // Refused for another reason (e.g. max-retained recordings): not a
                    // session that ran, so it must not count as admitted.
                    refused += 1;
                } else {
                    failed += usize::from(!o.ended);
                    fps.push(o.fps_out);
                    dropped.push(o.dropped_share);
                }
            }
            Err(e) => {
                println!("load session {i}: failed: {e:#}");
                failed += 1;
            }
        }
    }
    println!(
        "load: {n} sessions, {:.0} s, {busy} refused for room (busy or heavy load), {refused} refused otherwise, {failed} did not end cleanly",
        started.elapsed().as_secs_f64()
    );
    let min_fps = fps.iter().cloned().fold(f64::INFINITY, f64::min);
    let max_dropped = dropped.iter().cloned().fold(0.0, f64::max);
    println!(
        "load-json: {{\"sessions\":{n},\"admitted\":{},\"busy\":{busy},\"refused\":{refused},\"failed\":{failed},\"minFps\":{:.2},\"maxDroppedPct\":{:.3}}}",
        fps.len(),
        if fps.is_empty() { 0.0 } else { min_fps },
        max_dropped * 100.0
    );
    if failed > 0 || refused > 0 {
        std::process::exit(1);
    }
    Ok(())
}
