//! Shared helpers for the server's integration tests: a real server on 127.0.0.1:0 with
//! real ffmpeg, a minimal HTTP client, and an authorised WebSocket client.
#![allow(dead_code)]

use anyhow::{anyhow, bail, Context, Result};
use app::protocol::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use server::config::Config;
use server::RunningServer;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous deadline for anything that waits on ffmpeg: CI shares two cores.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The generated media folder (scripts/media).
pub fn media(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/media")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/media first",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A stand-in for the built site (the files the binary checks for at start), so tests of
/// the real binary do not need `cargo leptos build` first.
pub fn stub_site() -> Result<PathBuf> {
    let root = tempdir("site")?;
    std::fs::create_dir_all(root.join("pkg"))?;
    std::fs::create_dir_all(root.join("vendor"))?;
    for file in [
        "pkg/hls-face.js",
        "pkg/hls-face.wasm",
        "pkg/hls-face.css",
        "vendor/hls.min.js",
    ] {
        std::fs::write(root.join(file), b"")?;
    }
    Ok(root)
}

/// The real `hls-face` binary serving on a free port with a stub site and `runtime` as its
/// runtime folder (no CPU-based refusals: tests share the cores). Returns the child (its
/// stderr drained), its pid and the address it listens on.
pub async fn spawn_server(
    runtime: &std::path::Path,
) -> Result<(tokio::process::Child, u32, String)> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("LEPTOS_SITE_ROOT", stub_site()?)
        .env("HLS_FACE_LIMITS_MAX_CPU_PERCENT", "100")
        // Every socket of these tests comes from one address: the global caps are measured.
        .env("HLS_FACE_LIMITS_MAX_SOCKETS_PER_ADDRESS", "1000")
        .env("HLS_FACE_PIPELINE_RUNTIME_DIR", runtime)
        .env("RUST_LOG", "server=info,hls_face=info")
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
    // Logs go to stderr; the address is in the "listening" line.
    let mut lines =
        BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
    let addr = loop {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await??
            .ok_or_else(|| anyhow!("server exited"))?;
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().trim_end_matches('/').to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, pid, addr))
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl as the README
/// shows: (cert.pem, key.pem).
pub fn certificate() -> Result<(PathBuf, PathBuf)> {
    let dir = tempdir("tls")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=hls-face test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((cert, key))
}

/// The session cookie (`name=value`) and CSRF token in a raw HTTP response to `GET /`
/// (as `curl -i` prints it).
pub fn cookie_and_token(response: &str) -> Result<(String, String)> {
    let cookie = response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow!("no cookie in {response}"))?
        .to_string();
    let marker = "name=\"csrf-token\" content=\"";
    let start = response
        .find(marker)
        .ok_or_else(|| anyhow!("no csrf token in the page"))?
        + marker.len();
    let token = response
        .get(start..start + 64)
        .ok_or_else(|| anyhow!("short csrf token"))?;
    Ok((cookie, token.to_string()))
}

/// A test server with its own runtime folder.
pub struct TestServer {
    pub server: RunningServer,
    pub runtime: PathBuf,
}

impl TestServer {
    pub async fn start(name: &str, tweak: impl FnOnce(&mut Config)) -> Result<Self> {
        let runtime =
            std::env::temp_dir().join(format!("hls-face-it-{name}-{}", std::process::id()));
        let mut config = Config::from_parts("", [])?;
        // As the binary does with the repository's Leptos.toml: relative paths (the
        // CenterFace model) are found from the repository root, whatever the working folder.
        config.resolve_relative_to(&repo_root());
        config.site.addr = "127.0.0.1:0".parse()?;
        config.pipeline.runtime_dir = runtime.clone();
        // Tests share two cores with compilers and each other: a CPU-based refusal would
        // make them flaky. The live check is tested with a fixed gauge in capacity.rs.
        config.limits.max_cpu_percent = 100;
        config.limits.max_sessions = 8;
        tweak(&mut config);
        let server = RunningServer::start(config).await?;
        Ok(TestServer { server, runtime })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// Loads the page like a browser: returns (cookie header, csrf token).
    pub async fn browser_session(&self) -> Result<(String, String)> {
        browser_session(&self.host()).await
    }

    /// An authorised socket, as the page opens it.
    pub async fn socket(&self) -> Result<Client> {
        socket(&self.host()).await
    }

    pub async fn stop(self) -> Result<()> {
        self.server.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.server.wait()).await??;
        let _ = std::fs::remove_dir_all(&self.runtime);
        Ok(())
    }
}

/// Loads the page of the server at `host` like a browser: (cookie header, csrf token).
pub async fn browser_session(host: &str) -> Result<(String, String)> {
    let resp = http_get(host, "/", &[]).await?;
    let cookie = resp
        .header("set-cookie")
        .ok_or_else(|| anyhow!("no session cookie"))?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let body = String::from_utf8_lossy(&resp.body);
    let marker = "name=\"csrf-token\" content=\"";
    let start = body
        .find(marker)
        .ok_or_else(|| anyhow!("no csrf meta in page"))?
        + marker.len();
    let end = body[start..].find('"').ok_or_else(|| anyhow!("bad meta"))?;
    Ok((cookie, body[start..start + end].to_string()))
}

/// An authorised socket to the server at `host`, as the page opens it.
pub async fn socket(host: &str) -> Result<Client> {
    let (cookie, token) = browser_session(host).await?;
    socket_as(host, &cookie, &token).await
}

/// A socket of the browser session (`cookie`, `token`) on `host`: a second tab, or the
/// same page reconnecting.
pub async fn socket_as(host: &str, cookie: &str, token: &str) -> Result<Client> {
    let url = format!("ws://{host}/socket?csrf_token={token}");
    let origin = format!("http://{host}");
    connect(&url, &[("Cookie", cookie), ("Origin", origin.as_str())]).await
}

/// A socket as the page opens it to resume its session (`&resume=1`).
pub async fn socket_resuming(host: &str, cookie: &str, token: &str) -> Result<Client> {
    let url = format!("ws://{host}/socket?csrf_token={token}&resume=1");
    let origin = format!("http://{host}");
    connect(&url, &[("Cookie", cookie), ("Origin", origin.as_str())]).await
}

/// What `started` says of a new session.
pub struct Started {
    pub session_id: String,
    pub viewer_url: String,
    pub detector: app::protocol::DetectorSettings,
    pub resume_token: String,
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A GET over HTTP/1.1 with `Connection: close`; `path` is sent exactly as given.
pub async fn http_get(host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    let mut stream = TcpStream::connect(host).await?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw)).await??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking the typed protocol.
pub struct Client {
    pub ws: Ws,
}

/// Connects with extra headers; `Err` carries the HTTP status on refusal.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(Client { ws })
}

/// The HTTP status of a refused WebSocket handshake.
pub async fn refused_status(url: &str, headers: &[(&str, &str)]) -> Option<u16> {
    match connect(url, headers).await {
        Err(e) => match e.downcast::<tokio_tungstenite::tungstenite::Error>() {
            Ok(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
            _ => None,
        },
        Ok(_) => None,
    }
}

impl Client {
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        self.ws.send(Message::Text(msg.encode().into())).await?;
        Ok(())
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(data.into())).await?;
        Ok(())
    }

    /// The next typed message, skipping stats; `None` when the socket closed.
    pub async fn next(&mut self) -> Result<Option<ServerMsg>> {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .context("no message before the deadline")?;
            match msg {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => match ServerMsg::decode(text.as_str()) {
                    Ok(ServerMsg::Stats(_)) => continue,
                    Ok(msg) => return Ok(Some(msg)),
                    Err(e) => bail!("server sent an unknown message: {e}"),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Waits for a stats message matching `pred`, failing on a fatal error or a close.
    pub async fn wait_stats(
        &mut self,
        what: &str,
        pred: impl Fn(&app::protocol::Stats) -> bool,
    ) -> Result<app::protocol::Stats> {
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .with_context(|| format!("no stats with {what} before the deadline"))?;
            let text = match msg {
                None | Some(Ok(Message::Close(_))) => bail!("socket closed waiting for {what}"),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            };
            match ServerMsg::decode(text.as_str())? {
                ServerMsg::Stats(stats) if pred(&stats) => return Ok(stats),
                ServerMsg::Error { kind, message } if kind.is_fatal() => {
                    bail!("error while waiting for {what}: {kind:?} {message}")
                }
                _ => continue,
            }
        }
    }

    /// Sends Start for the generated clips and waits for Started; returns the session id.
    pub async fn start_session(&mut self) -> Result<String> {
        Ok(self.start().await?.session_id)
    }

    /// Sends Start for the generated clips and returns what `started` says.
    pub async fn start(&mut self) -> Result<Started> {
        self.start_with(&start_msg()).await
    }

    /// Sends `start` (a Start message) and returns what `started` says.
    pub async fn start_with(&mut self, start: &ClientMsg) -> Result<Started> {
        self.send(start).await?;
        match self
            .wait_for("started", |m| matches!(m, ServerMsg::Started { .. }))
            .await?
        {
            ServerMsg::Started {
                session_id,
                viewer_url,
                detector,
                resume_token,
                ..
            } => Ok(Started {
                session_id,
                viewer_url,
                detector,
                resume_token,
            }),
            other => bail!("unexpected {other:?}"),
        }
    }

    /// Streams the face clip at about real time (as a browser does: the clip is ~250 KB/s),
    /// waits for the playlist, stops and waits for the end.
    pub async fn record_face_clip(&mut self) -> Result<()> {
        stream_file(self, &media("face.webm"), 30_000, 9).await?;
        self.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
            .await?;
        self.stop_and_wait().await
    }

    /// Sends Stop and waits for Ended.
    pub async fn stop_and_wait(&mut self) -> Result<()> {
        self.send(&ClientMsg::Stop).await?;
        self.wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
            .await?;
        Ok(())
    }

    /// Waits for a message matching `pred`, failing on errors other than the one expected.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&ServerMsg) -> bool,
    ) -> Result<ServerMsg> {
        loop {
            match self.next().await? {
                Some(msg) if pred(&msg) => return Ok(msg),
                Some(ServerMsg::Error { kind, message }) => {
                    bail!("error while waiting for {what}: {kind:?} {message}")
                }
                Some(_) => continue,
                None => bail!("socket closed while waiting for {what}"),
            }
        }
    }
}

/// Sends `file` as WebM chunks of `chunk` bytes, paced at about `per_second` chunks a second.
pub async fn stream_file(
    client: &mut Client,
    file: &PathBuf,
    chunk: usize,
    per_second: u32,
) -> Result<()> {
    let data = std::fs::read(file)?;
    stream_bytes(client, &data, chunk, per_second).await
}

/// Sends `data` as chunks of `chunk` bytes, paced at about `per_second` chunks a second.
pub async fn stream_bytes(
    client: &mut Client,
    data: &[u8],
    chunk: usize,
    per_second: u32,
) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    for piece in data.chunks(chunk) {
        tick.tick().await;
        client.send_binary(piece.to_vec()).await?;
    }
    Ok(())
}

/// Decodes an HLS segment (or any file ffmpeg reads) to BGR frames of `w`×`h`.
pub fn decode_frames(bytes: &[u8], w: usize, h: usize) -> Result<Vec<Vec<u8>>> {
    let dir = tempdir("decode")?;
    // MPEG-TS, or MP4 (fragmented or not) when it starts with an `ftyp` box.
    let input = dir.join(if bytes.get(4..8) == Some(b"ftyp") {
        "in.mp4"
    } else {
        "in.ts"
    });
    std::fs::write(&input, bytes)?;
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&input)
        .args(["-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"])
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    if !out.status.success() {
        bail!(
            "ffmpeg could not decode: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let frame = w * h * 3;
    if out.stdout.is_empty() || out.stdout.len() % frame != 0 {
        bail!(
            "decoded {} bytes, not whole {w}x{h} frames",
            out.stdout.len()
        );
    }
    Ok(out.stdout.chunks(frame).map(|f| f.to_vec()).collect())
}

pub fn tempdir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "hls-face-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whether a decoded pixel is box green (H.264 moves pure green a little).
pub fn is_green(px: &[u8]) -> bool {
    px[1] > 180 && px[0] < 100 && px[2] < 100
}

/// Green pixels in a BGR frame, with their bounding box (x0, y0, x1, y1).
pub fn green_pixels(frame: &[u8], w: usize) -> (usize, Option<(usize, usize, usize, usize)>) {
    let mut count = 0;
    let mut bbox: Option<(usize, usize, usize, usize)> = None;
    for (i, px) in frame.chunks_exact(3).enumerate() {
        if is_green(px) {
            count += 1;
            let (x, y) = (i % w, i / w);
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x), d.max(y)),
            });
        }
    }
    (count, bbox)
}

/// The green boxes drawn on a `w`×`h` BGR frame: the bounding rectangle of each connected
/// outline of green pixels (outlines of at least 12×12 px; stray green specks are not boxes).
pub fn green_boxes(frame: &[u8], w: usize, h: usize) -> Result<Vec<server::video::frame::FaceBox>> {
    use opencv::prelude::*;
    let mask: Vec<u8> = frame
        .chunks_exact(3)
        .map(|px| if is_green(px) { 255 } else { 0 })
        .collect();
    let flat = Mat::from_slice(&mask)?;
    let mask = flat.reshape(1, h as i32)?;
    anyhow::ensure!(mask.cols() as usize == w, "frame is not {w} wide");
    let (mut labels, mut stats, mut centroids) = (Mat::default(), Mat::default(), Mat::default());
    let n = opencv::imgproc::connected_components_with_stats(
        &mask,
        &mut labels,
        &mut stats,
        &mut centroids,
        8,
        opencv::core::CV_32S,
    )?;
    let mut boxes = Vec::new();
    for i in 1..n {
        let at = |k: i32| stats.at_2d::<i32>(i, k).copied();
        let (x, y) = (
            at(opencv::imgproc::CC_STAT_LEFT)?,
            at(opencv::imgproc::CC_STAT_TOP)?,
        );
        let (width, height) = (
            at(opencv::imgproc::CC_STAT_WIDTH)?,
            at(opencv::imgproc::CC_STAT_HEIGHT)?,
        );
        if width >= 12 && height >= 12 {
            boxes.push(server::video::frame::FaceBox {
                x,
                y,
                width,
                height,
            });
        }
    }
    Ok(boxes)
}

/// Child processes of `parent`: (pid, state letter, command line).
pub fn children_of(parent: u32) -> Vec<(u32, char, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ..." — comm may contain spaces, so split after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, state, cmd));
        }
    }
    out
}

/// Polls `cond` every 50 ms until it holds or `deadline` passes; returns whether it held.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Start message for the generated 640×480 clips.
pub fn start_msg() -> ClientMsg {
    start_as("video/webm;codecs=vp9")
}

/// Start for a 640×480 stream announced as `mime`.
pub fn start_as(mime: &str) -> ClientMsg {
    ClientMsg::Start {
        mime_type: mime.into(),
        width: 640,
        height: 480,
    }
}

/// A free loopback address (chosen before starting what listens on it, e.g. so a server can
/// be told the Host browsers will use through nginx).
pub fn free_addr() -> Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

/// Stops a child with SIGTERM and waits for it (SIGKILL after the deadline). nginx's master
/// stops its workers on SIGTERM, and `deploy/cluster` its nginx and nodes; killed outright
/// they would leave those running, holding the test's output open.
pub fn terminate(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    // SAFETY: kill only sends a signal to the child we started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.start_kill();
}

/// An MP4 box: size, type, body.
pub fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A full box's body: version/flags 0, then big-endian fields.
pub fn fields(values: &[u32]) -> Vec<u8> {
    std::iter::once(0u32)
        .chain(values.iter().copied())
        .flat_map(u32::to_be_bytes)
        .collect()
}

/// A few KiB of MP4 whose `moov` declares `samples` samples in each of `tracks` video
/// tracks (a fixed sample size, one chunk): a demuxer that believes it builds an index of
/// `tracks × samples` entries (24 bytes each in ffmpeg) before reading any media.
pub fn sample_table_bomb(tracks: usize, samples: u32) -> Vec<u8> {
    let (ftyp, moov) = sample_table_header(tracks, samples);
    [ftyp, mp4_box(b"mdat", &[0u8; 4096]), moov].concat()
}

/// The `ftyp` and `moov` of [`sample_table_bomb`], as a live stream would start.
pub fn sample_table_header(tracks: usize, samples: u32) -> (Vec<u8>, Vec<u8>) {
    let mut entry = vec![0u8; 6];
    entry.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    entry.extend_from_slice(&[0u8; 16]);
    entry.extend_from_slice(&640u16.to_be_bytes());
    entry.extend_from_slice(&480u16.to_be_bytes());
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    entry.extend_from_slice(&[0u8; 4]);
    entry.extend_from_slice(&1u16.to_be_bytes());
    entry.extend_from_slice(&[0u8; 32]);
    entry.extend_from_slice(&0x0018u16.to_be_bytes());
    entry.extend_from_slice(&0xffffu16.to_be_bytes());
    let stsd = [fields(&[1]), mp4_box(b"avc1", &entry)].concat();
    let stbl = [
        mp4_box(b"stsd", &stsd),
        mp4_box(b"stts", &fields(&[1, samples, 1])),
        mp4_box(b"stsc", &fields(&[1, 1, samples, 1])),
        mp4_box(b"stsz", &fields(&[1, samples])),
        mp4_box(b"stco", &fields(&[1, 64])),
    ]
    .concat();
    let mut hdlr = fields(&[0]);
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0u8; 13]);
    let mdhd = fields(&[0, 0, 30, samples, 0]);
    let mut tkhd = fields(&[0, 0, 1, 0, samples]);
    tkhd.extend_from_slice(&[0u8; 52]);
    tkhd.extend_from_slice(&(640u32 << 16).to_be_bytes());
    tkhd.extend_from_slice(&(480u32 << 16).to_be_bytes());
    let minf = mp4_box(b"minf", &mp4_box(b"stbl", &stbl));
    let mdia = mp4_box(
        b"mdia",
        &[mp4_box(b"mdhd", &mdhd), mp4_box(b"hdlr", &hdlr), minf].concat(),
    );
    let trak = mp4_box(b"trak", &[mp4_box(b"tkhd", &tkhd), mdia].concat());
    let mut mvhd = fields(&[0, 0, 30, samples, 0x0001_0000]);
    mvhd.extend_from_slice(&[0u8; 76]);
    let moov = mp4_box(
        b"moov",
        &[mp4_box(b"mvhd", &mvhd), trak.repeat(tracks)].concat(),
    );
    let ftyp = mp4_box(b"ftyp", b"isom\0\0\x02\0isomavc1");
    (ftyp, moov)
}

/// The reference detector for the privacy checks: the default detector (CenterFace at the
/// configured working width and score threshold) on every whole output frame, reporting
/// faces of any size — "a face the detector would find".
pub fn reference() -> Result<server::video::detector::centerface::CenterFace> {
    let config = server::config::DetectorConfig::default();
    Ok(server::video::detector::centerface::CenterFace::new(
        &repo_root().join(&config.model),
        config.dnn_width,
        config.dnn_threshold,
        0,
    )?)
}

/// One 640×480 BGR frame of a session's output (decoded from its segments), as a detector
/// takes it.
pub fn output_frame(data: &[u8]) -> server::video::frame::Frame {
    server::video::frame::Frame {
        width: 640,
        height: 480,
        data: data.to_vec(),
        hidden: false,
    }
}

/// Frames (index, faces) in which the reference detector finds a face. Each such frame is
/// saved as a PNG (under the system temp folder, named in the log) for a look.
pub fn faces_found(frames: &[Vec<u8>]) -> Result<Vec<(usize, Vec<server::video::frame::FaceBox>)>> {
    let mut detector = reference()?;
    let mut found = Vec::new();
    let dir = tempdir("faces-found")?;
    for (i, data) in frames.iter().enumerate() {
        let faces =
            server::video::detector::FaceDetector::detect(&mut detector, &output_frame(data))?;
        if !faces.is_empty() {
            let mat = opencv::core::Mat::from_slice(data)?;
            let png = dir.join(format!("frame-{i:04}.png"));
            let image = opencv::prelude::MatTraitConst::reshape(&mat, 3, 480)?;
            opencv::imgcodecs::imwrite_def(&png, &image)?;
            found.push((i, faces));
        }
    }
    if !found.is_empty() {
        eprintln!("frames with faces saved in {}", dir.display());
    }
    Ok(found)
}

/// nginx on `addr` in front of `upstream`; killed when dropped.
pub struct Nginx {
    child: tokio::process::Child,
}

impl Nginx {
    pub async fn start(
        addr: &str,
        upstream: &str,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self> {
        let prefix = tempdir("nginx")?;
        let mut cmd = tokio::process::Command::new(repo_root().join("deploy/nginx/proxy"));
        cmd.arg(addr).arg(upstream).arg(&prefix);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow!("starting nginx: {e}"))?;
        let deadline = std::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "nginx never listened on {addr}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(Nginx { child })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Sends a raw HTTP request and returns the response head (read up to its blank line).
pub async fn raw(host: &str, request: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(host).await?;
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes()).await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut s, &mut buf))
            .await??;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).to_string();
    Ok(text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `POST /auth` as the page sends it: (status, the sign-in cookie if one was set).
pub async fn sign_in(
    host: &str,
    cookie: &str,
    token: &str,
    secret: &str,
) -> Result<(u16, Option<String>)> {
    let body = serde_json::json!({ "secret": secret }).to_string();
    let head = raw(
        host,
        &format!(
            "POST /auth HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nx-csrf-token: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head}"))?;
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: hls_face_auth="))
        .map(|v| format!("hls_face_auth={}", v.split(';').next().unwrap_or_default()));
    Ok((status, cookie))
}

pub async fn auth_status(host: &str, cookie: &str) -> Result<app::protocol::AuthStatus> {
    let r = http_get(host, "/auth", &[("Cookie", cookie)]).await?;
    Ok(serde_json::from_slice(&r.body)?)
}

/// Makes `output` with ffmpeg from `args` (inputs, filters, codecs); fails with its stderr.
pub fn ffmpeg_make(args: &[&str], output: &std::path::Path) -> Result<()> {
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(output)
        .output()?;
    anyhow::ensure!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(())
}
