//! The `hls-face` binary: `serve` (default) runs the web app, `process` runs a video file
//! through the same pipeline; logging, signals and the progress bar live here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use server::config::Config;
use server::RunningServer;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// Live webcam face detection streamed back as HLS.
#[derive(Parser)]
#[command(
    name = "hls-face",
    version,
    about,
    after_help = "Environment: every setting of Leptos.toml can be overridden: [site] keys by \
LEPTOS_SITE_ADDR, LEPTOS_SITE_ROOT, LEPTOS_SITE_PKG_DIR, LEPTOS_OUTPUT_NAME, LEPTOS_ENV, \
LEPTOS_RELOAD_PORT; any other key by HLS_FACE_<SECTION>_<KEY> (e.g. \
HLS_FACE_LIMITS_MAX_SESSIONS=4, HLS_FACE_DETECTOR_KIND=haar). HLS_FACE_CONFIG names the \
settings file, HLS_FACE_LOG_FORMAT the log format, RUST_LOG the log filter."
)]
struct Cli {
    /// Settings file (default: Leptos.toml in the working folder, else beside the
    /// executable or in one of its parent folders; env HLS_FACE_CONFIG). Relative paths
    /// in it are relative to its folder.
    #[arg(long, global = true, env = "HLS_FACE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: "text" for people, "json" (one object per line, with the
    /// session span's id) for log collectors.
    #[arg(long, global = true, env = "HLS_FACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How logs are written on stderr.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, with the session span's id, for log collectors.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app (the default).
    Serve {
        /// Listen address, overriding [site] addr (e.g. 0.0.0.0:3000).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// HTTPS certificate chain (PEM), overriding [site] tls-cert; needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM), overriding [site] tls-key; needs --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Detect faces in a video file and write it as HLS (VOD playlist + segments).
    Process {
        /// Any video file ffmpeg can read.
        input: PathBuf,
        /// Output folder for playlist.m3u8 and its segments (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Privacy mode: pixelate faces instead of drawing boxes around them.
        #[arg(long, alias = "blur")]
        privacy: bool,
        /// Print the summary as JSON instead of one line.
        #[arg(long)]
        json: bool,
        /// Face detector, overriding the config.
        #[arg(long, value_enum)]
        detector: Option<server::config::DetectorKind>,
    },
    /// Read a passphrase from stdin (one line) and print its argon2 hash, the value of
    /// [auth] passphrase-hash. The passphrase itself is never stored.
    HashPassphrase,
}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads start: the allocator's settings are read by each thread's
    // first allocation.
    server::allocator::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("server=info,hls_face=info"));
    // Logs go to stderr: stdout carries only the `process --json` summary.
    // Colour only for a person at a terminal: a file, pipe or journal gets plain text.
    let ansi = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cli.log_format == LogFormat::Json {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let mut config = Config::load(cli.config.as_deref()).context("loading settings")?;
    let default = Command::Serve {
        addr: None,
        tls_cert: None,
        tls_key: None,
    };
    match cli.command.unwrap_or(default) {
        Command::Serve {
            addr,
            tls_cert,
            tls_key,
        } => {
            if let Some(addr) = addr {
                config.site.addr = addr;
            }
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                config.site.tls_cert = Some(cert);
                config.site.tls_key = Some(key);
            }
            config.check_site().context("refusing to start")?;
            serve(config).await
        }
        Command::HashPassphrase => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the passphrase from stdin")?;
            let passphrase = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                passphrase.chars().count() >= 8,
                "a passphrase needs at least 8 characters"
            );
            println!("{}", server::auth::hash_passphrase(passphrase)?);
            Ok(())
        }
        Command::Process {
            input,
            out,
            privacy,
            json,
            detector,
        } => {
            let mut pipeline = config.pipeline;
            if let Some(detector) = detector {
                pipeline.detector.kind = detector;
            }
            let job = server::batch::Job {
                input,
                out,
                privacy,
                config: pipeline,
            };
            let bar = progress_bar();
            let mut logged: Option<std::time::Instant> = None;
            let mut report = |done: u64, total: Option<u64>, fps: f64| {
                if !bar.is_hidden() {
                    show_progress(&bar, done, total, fps);
                    return;
                }
                // A file or pipe gets a log line every few seconds, not a redrawn bar.
                let due = logged.is_none_or(|t| t.elapsed() >= PROGRESS_LOG_EVERY);
                if due || total == Some(done) {
                    logged = Some(std::time::Instant::now());
                    let fps = (fps * 10.0).round() / 10.0;
                    tracing::info!(done, total, fps, "progress");
                }
            };
            let outcome = server::batch::run(&job, &mut report).await;
            if !bar.is_hidden() {
                bar.finish();
                eprintln!(); // the summary goes below the bar, not after it
            }
            match outcome {
                Ok(summary) => {
                    if json {
                        println!("{}", serde_json::to_string(&summary)?);
                    } else {
                        println!(
                            "{} frames ({:.1} s of video), {} with faces, {} faces found, \
                             processed in {:.1} s -> {}",
                            summary.frames,
                            summary.media_seconds,
                            summary.frames_with_faces,
                            summary.faces,
                            summary.wall_seconds,
                            summary.playlist
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("hls-face: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// How often `process` logs its progress when stderr is not a terminal.
const PROGRESS_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `process`'s progress bar on stderr, redrawn in place and sized to the terminal; hidden
/// when stderr is a file or pipe.
fn progress_bar() -> ProgressBar {
    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
}

/// Shows `done` of `total` frames (a bar with ETA when the total is known, else a count).
fn show_progress(bar: &ProgressBar, done: u64, total: Option<u64>, fps: f64) {
    let known = total.filter(|t| *t > 0);
    if bar.length() != known {
        let template = match known {
            Some(_) => "[{bar:30}] {pos}/{len} frames  {msg}  ETA {eta}",
            None => "{spinner} {pos} frames  {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        match known {
            Some(total) => bar.set_length(total),
            None => bar.unset_length(),
        }
    }
    bar.set_message(format!("{fps:.1} fps"));
    bar.set_position(done);
}

/// The addresses to type into a browser: the bound one with its real scheme, and on a
/// wildcard bind also localhost and the machine's LAN address (the one its default route
/// leaves from: what a phone on the same network reaches).
fn listening_urls(scheme: &str, addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    if !addr.ip().is_unspecified() {
        return vec![format!("{scheme}://{addr}/")];
    }
    let mut urls = vec![format!("{scheme}://localhost:{port}/")];
    // Connecting a UDP socket sends nothing; it only picks the route and its source address.
    let lan = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = lan {
        urls.push(format!(
            "{scheme}://{ip}:{port}/ (from other devices on this network)"
        ));
    }
    urls
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let open_to_all =
        config.auth.mode == server::config::AuthMode::None && !config.site.addr.ip().is_loopback();
    let addr = config.site.addr;
    let server = RunningServer::start(config)
        .await
        .context("starting the server")?;
    // Said before the addresses, so whoever reads up to them has read it.
    if open_to_all {
        tracing::warn!(
            "serving on {addr} without [auth]: anyone who can reach this address may start \
             sessions up to capacity. Set [auth] mode = \"passphrase\" or \"jwt\" (docs/security.md)."
        );
    }
    for url in listening_urls(server.scheme, server.addr) {
        tracing::info!("listening on {url}");
    }
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: ending sessions");
        shutdown.cancel();
    });
    server.wait().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
