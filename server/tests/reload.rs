//! Settings and certificates reloaded without a restart, against the real binary and its
//! settings file: an edited limit applies to the next session, a restart-only key is named
//! and kept, an invalid file changes nothing, channels start and stop with the file, and a
//! renewed certificate is served to new TLS connections.

mod common;

use anyhow::{anyhow, ensure, Result};
use app::protocol::{ErrorKind, ServerMsg};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The real binary serving with `--config file`, its log lines collected.
struct Served {
    _child: tokio::process::Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    file: PathBuf,
}

/// The settings every test starts from: a free port, a stub site, its own runtime folder.
fn base_settings(dir: &Path, extra: &str) -> Result<String> {
    Ok(format!(
        "[site]\naddr = \"{}\"\nroot = \"{}\"\n{extra}\n[pipeline]\nruntime-dir = \"{}\"\n",
        free_addr()?,
        stub_site()?.display(),
        dir.join("runtime").display()
    ))
}

impl Served {
    async fn start(dir: &Path, settings: &str) -> Result<Self> {
        let file = dir.join("hls-face.toml");
        std::fs::write(&file, settings)?;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hls-face"))
            .arg("--config")
            .arg(&file)
            .env("HLS_FACE_LIMITS_MAX_CPU_PERCENT", "100")
            .env(
                "HLS_FACE_DETECTOR_MODEL",
                repo_root().join("models/centerface.onnx"),
            )
            .env("RUST_LOG", "server=info,hls_face=info")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines =
            BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = tokio::time::timeout(DEADLINE, lines.next_line())
                .await??
                .ok_or_else(|| anyhow!("server exited"))?;
            let found = ["listening on http://", "listening on https://"]
                .iter()
                .find_map(|marker| line.split(marker).nth(1))
                .map(|rest| rest.trim().trim_end_matches('/').to_string());
            log.lock().unwrap().push(line);
            if let Some(addr) = found {
                break addr;
            }
        };
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Ok(Served {
            _child: child,
            addr,
            log,
            file,
        })
    }

    /// Replaces the settings file the way editors do: write a temporary file, rename it over.
    fn save(&self, text: &str) -> Result<()> {
        let tmp = self.file.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(())
    }

    /// Waits until `n` log lines contain `text`.
    async fn logged_times(&self, text: &str, n: usize) -> Result<()> {
        let log = self.log.clone();
        let found = eventually(DEADLINE, || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(text))
                .count()
                >= n
        })
        .await;
        ensure!(found, "never logged {text:?} {n} times");
        Ok(())
    }

    /// Waits for a log line containing `text`.
    async fn logged(&self, text: &str) -> Result<String> {
        let log = self.log.clone();
        let found = eventually(DEADLINE, || {
            log.lock().unwrap().iter().any(|l| l.contains(text))
        })
        .await;
        ensure!(
            found,
            "never logged {text:?}; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
        let log = self.log.lock().unwrap();
        Ok(log
            .iter()
            .find(|l| l.contains(text))
            .cloned()
            .unwrap_or_default())
    }
}

/// Opens a session; `Ok(None)` if it was refused as busy.
async fn session(host: &str) -> Result<Option<Client>> {
    let mut c = socket(host).await?;
    c.send(&start_msg()).await?;
    loop {
        match c.next().await? {
            Some(ServerMsg::Started { .. }) => return Ok(Some(c)),
            Some(ServerMsg::Error { kind, .. }) => {
                ensure!(kind == ErrorKind::Busy, "refused as {kind:?}");
                return Ok(None);
            }
            Some(_) => {}
            None => return Err(anyhow!("socket closed")),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_limit_applies_to_the_next_session_and_an_invalid_file_changes_nothing(
) -> Result<()> {
    let dir = tempdir("reload-limits")?;
    let settings = base_settings(&dir, "")?;
    let served = Served::start(&dir, &format!("{settings}[limits]\nmax-sessions = 3\n")).await?;
    let host = served.addr.clone();
    let _first = session(&host)
        .await?
        .ok_or_else(|| anyhow!("first refused"))?;

    // One session allowed from now on; the segment length needs a restart.
    served.save(&format!(
        "{settings}[limits]\nmax-sessions = 1\n[hls]\nsegment-seconds = 2.0\n"
    ))?;
    served.logged("setting limits.max-sessions: 3 → 1").await?;
    let kept = served
        .logged("setting pipeline.hls.segment-seconds")
        .await?;
    ensure!(kept.contains("needs a restart"), "{kept}");
    ensure!(
        session(&host).await?.is_none(),
        "a second session must be busy now"
    );

    // A broken file: logged with the start-up message, nothing changes.
    served.save(&format!("{settings}[limits]\nmax-sessions = \"many\"\n"))?;
    let refused = served.logged("not reloaded, the running ones stay").await?;
    ensure!(refused.contains("max-sessions"), "{refused}");
    let metrics = String::from_utf8(http_get(&host, "/metrics", &[]).await?.body)?;
    ensure!(
        metrics.contains("hls_face_config_last_reload_success 0"),
        "metrics"
    );
    ensure!(
        metrics.contains("hls_face_config_reloads_total{result=\"error\"}"),
        "metrics"
    );
    ensure!(session(&host).await?.is_none(), "the limit of 1 stays");
    // An unknown key is refused the same way.
    served.save(&format!("{settings}[limits]\nmax-sesions = 5\n"))?;
    let typo = eventually(DEADLINE, || {
        served
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("max-sesions"))
    })
    .await;
    ensure!(typo, "an unknown key must be logged");
    ensure!(session(&host).await?.is_none(), "still 1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_added_to_the_file_plays_and_a_removed_one_stops() -> Result<()> {
    let dir = tempdir("reload-channels")?;
    let settings = base_settings(&dir, "")?;
    let served = Served::start(&dir, &settings).await?;
    let host = served.addr.clone();
    let list = http_get(&host, "/channels.json", &[]).await?;
    ensure!(list.body == b"[]", "no channels at start");
    served.save(&format!(
        "{settings}[[channel]]\nname = \"demo\"\nsource = \"file:{}\"\n",
        media("real-face-h264.mkv").display()
    ))?;
    served.logged("channel demo added").await?;
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut live = false;
    while !live && tokio::time::Instant::now() < until {
        let status = http_get(&host, "/channel/demo/status", &[]).await?;
        live = status.status == 200 && String::from_utf8_lossy(&status.body).contains("\"live\"");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(live, "the added channel never went live");
    let playlist = http_get(&host, "/channel/demo/playlist.m3u8", &[]).await?;
    ensure!(
        playlist.status == 302,
        "stable address: {}",
        playlist.status
    );
    let run = playlist.header("location").unwrap_or_default().to_string();
    // Removed: gone from the list at once, its stream ends.
    served.save(&settings)?;
    served.logged("channel demo removed").await?;
    let status = http_get(&host, "/channel/demo/status", &[]).await?;
    ensure!(status.status == 404, "removed channel: {}", status.status);
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut gone = false;
    while !gone && tokio::time::Instant::now() < until {
        gone = http_get(&host, &run, &[]).await?.status == 404;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(gone, "the removed channel's stream still answers");
    Ok(())
}

/// The SHA-256 fingerprint of the certificate a new TLS connection to `addr` is shown.
fn served_fingerprint(addr: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn file_fingerprint(cert: &Path) -> Result<String> {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_to_new_connections() -> Result<()> {
    let dir = tempdir("reload-tls")?;
    let (cert, key) = certificate()?;
    let live_cert = dir.join("cert.pem");
    let live_key = dir.join("key.pem");
    std::fs::copy(&cert, &live_cert)?;
    std::fs::copy(&key, &live_key)?;
    let settings = base_settings(
        &dir,
        &format!(
            "tls-cert = \"{}\"\ntls-key = \"{}\"",
            live_cert.display(),
            live_key.display()
        ),
    )?;
    let served = Served::start(&dir, &settings).await?;
    let first = served_fingerprint(&served.addr)?;
    ensure!(first == file_fingerprint(&cert)?, "{first}");
    // Renewal, as certbot does it: new files renamed into place.
    let (renewed_cert, renewed_key) = certificate()?;
    let want = file_fingerprint(&renewed_cert)?;
    ensure!(want != first, "two certificates with one fingerprint");
    std::fs::copy(&renewed_key, dir.join("key.pem.new"))?;
    std::fs::rename(dir.join("key.pem.new"), &live_key)?;
    std::fs::copy(&renewed_cert, dir.join("cert.pem.new"))?;
    std::fs::rename(dir.join("cert.pem.new"), &live_cert)?;
    served.logged("reloaded: new connections get it").await?;
    let addr = served.addr.clone();
    let seen = eventually(DEADLINE, || {
        served_fingerprint(&addr).is_ok_and(|f| f == want)
    })
    .await;
    ensure!(seen, "a new connection still gets the old certificate");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn detector_defaults_and_allowed_hosts_apply_to_what_comes_next() -> Result<()> {
    let dir = tempdir("reload-detector")?;
    let settings = base_settings(&dir, "")?;
    let served = Served::start(&dir, &settings).await?;
    let host = served.addr.clone();
    let port = host.rsplit(':').next().unwrap_or_default().to_string();
    let named = format!("reload.test:{port}");
    let as_named = format!("GET / HTTP/1.1\r\nHost: {named}\r\nConnection: close\r\n\r\n");
    let before = raw(&host, &as_named).await?;
    ensure!(
        before.starts_with("HTTP/1.1 421"),
        "an unknown host: {before}"
    );
    let mut first = socket(&host).await?;
    let started = first.start().await?;
    ensure!(
        matches!(
            started.detector,
            app::protocol::DetectorSettings::CenterFace { .. }
        ),
        "{:?}",
        started.detector
    );

    let edited = settings.replace(
        "[site]\n",
        &format!("[site]\nallowed-hosts = [\"{named}\"]\n"),
    );
    served.save(&format!("{edited}[detector]\nkind = \"haar\"\n"))?;
    served.logged("setting pipeline.detector.kind").await?;
    served.logged("setting site.allowed-hosts").await?;
    let after = raw(&host, &as_named).await?;
    ensure!(
        after.starts_with("HTTP/1.1 200"),
        "the allowed host: {after}"
    );
    // The next session runs the new detector; the running one keeps its own.
    let mut second = socket(&host).await?;
    let started = second.start().await?;
    ensure!(
        matches!(
            started.detector,
            app::protocol::DetectorSettings::Haar { .. }
        ),
        "{:?}",
        started.detector
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_settings_apply_live_and_a_new_passphrase_signs_everyone_out() -> Result<()> {
    let dir = tempdir("reload-auth")?;
    let settings = base_settings(&dir, "")?;
    let served = Served::start(&dir, &settings).await?;
    let host = served.addr.clone();
    // No [auth]: anyone starts.
    ensure!(session(&host).await?.is_some());

    let first = server::auth::hash_passphrase("first passphrase")?;
    served.save(&format!(
        "{settings}[auth]\nmode = \"passphrase\"\npassphrase-hash = \"{first}\"\n"
    ))?;
    served.logged("sign-in settings applied").await?;
    let (cookie, token) = browser_session(&host).await?;
    let mut c = socket_as(&host, &cookie, &token).await?;
    c.send(&start_msg()).await?;
    ensure!(
        matches!(
            c.wait_for("refusal", |m| matches!(m, ServerMsg::Error { .. }))
                .await?,
            ServerMsg::Error {
                kind: ErrorKind::AuthRequired,
                ..
            }
        ),
        "a new Start needs the passphrase now"
    );
    let (status, signed) = sign_in(&host, &cookie, &token, "first passphrase").await?;
    ensure!(status == 204);
    let both = format!("{cookie}; {}", signed.unwrap_or_default());
    ensure!(auth_status(&host, &both).await?.signed_in);

    let second = server::auth::hash_passphrase("second passphrase")?;
    served.save(&format!(
        "{settings}[auth]\nmode = \"passphrase\"\npassphrase-hash = \"{second}\"\n"
    ))?;
    served.logged_times("sign-in settings applied", 2).await?;
    let line = served
        .logged("setting auth.passphrase-hash changed")
        .await?;
    let log = served.log.lock().unwrap().join("\n");
    ensure!(
        !log.contains(&first) && !log.contains(&second) && !log.contains("passphrase\""),
        "the hashes are never logged: {line}"
    );
    ensure!(
        !auth_status(&host, &both).await?.signed_in,
        "a new passphrase signs everyone out"
    );
    ensure!(sign_in(&host, &cookie, &token, "first passphrase").await?.0 == 401);
    ensure!(
        sign_in(&host, &cookie, &token, "second passphrase")
            .await?
            .0
            == 204
    );
    Ok(())
}
