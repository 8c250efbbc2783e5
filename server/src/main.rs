//! The `hls-face` binary: `serve` (default) runs the web app, `process` runs a video file
//! through the same pipeline; logging, signals and the progress bar live here.

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    },
    /// Detect faces in a video file and write it as HLS (VOD playlist + segments).
    Process {
        /// Any video file ffmpeg can read.
        input: PathBuf,
        /// Output folder for playlist.m3u8 and its segments (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Pixelate faces instead of drawing boxes around them.
        #[arg(long)]
        blur: bool,
        /// Print the summary as JSON instead of one line.
        #[arg(long)]
        json: bool,
        /// Face detector, overriding the config.
        #[arg(long, value_enum)]
        detector: Option<server::config::DetectorKind>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pin_large_allocations_to_mmap();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("server=info,hls_face=info"));
    // Logs go to stderr: stdout carries only the `process --json` summary.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == LogFormat::Json {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let mut config = Config::load(cli.config.as_deref()).context("loading settings")?;
    match cli.command.unwrap_or(Command::Serve { addr: None }) {
        Command::Serve { addr } => {
            if let Some(addr) = addr {
                config.site.addr = addr;
            }
            config.check_site().context("refusing to start")?;
            serve(config).await
        }
        Command::Process {
            input,
            out,
            blur,
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
                blur,
                config: pipeline,
            };
            let mut bar = progress_bar;
            match server::batch::run(&job, &mut bar).await {
                Ok(summary) => {
                    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                        eprintln!(); // end the redrawn progress line
                    }
                    if json {
                        println!("{}", serde_json::to_string(&summary)?);
                    } else {
                        println!(
                            "{} frames, {} with faces, {} faces found, {:.1} s -> {}",
                            summary.frames,
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

/// Draws `[=====>     ] done/total frames  fps  ETA` on stderr.
fn progress_bar(done: u64, total: Option<u64>, fps: f64) {
    use std::io::Write;
    const WIDTH: u64 = 30;
    let line = match total.filter(|t| *t > 0) {
        Some(total) => {
            let filled = (done.min(total) * WIDTH / total) as usize;
            let eta = if fps > 0.0 {
                total.saturating_sub(done) as f64 / fps
            } else {
                0.0
            };
            format!(
                "[{}>{}] {done}/{total} frames  {fps:.1} fps  ETA {eta:.0} s",
                "=".repeat(filled),
                " ".repeat(WIDTH as usize - filled)
            )
        }
        None => format!("{done} frames  {fps:.1} fps"),
    };
    let mut err = std::io::stderr().lock();
    // A terminal gets one line redrawn in place; a file or pipe gets whole lines, so a
    // redirected log holds no carriage-return soup.
    if std::io::IsTerminal::is_terminal(&err) {
        let _ = write!(err, "\r{line}   ");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = RunningServer::start(config)
        .await
        .context("starting the server")?;
    tracing::info!("listening on http://{}", server.addr);
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

/// Frame buffers (~1 MB each) are allocated on many threads. With glibc's default dynamic
/// mmap threshold they end up in per-thread heaps that are rarely returned to the system,
/// and the server's RSS creeps up over hours. A fixed threshold keeps every allocation of
/// 256 KiB or more in its own mapping, returned on free (the frame pool makes such
/// allocations rare).
fn pin_large_allocations_to_mmap() {
    // SAFETY: mallopt only tunes the allocator; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
