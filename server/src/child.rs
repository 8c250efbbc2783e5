//! The seam to child processes: a [`Spawner`] starts one (real ffmpeg through [`Ffmpeg`], or
//! an in-process stand-in in tests) and hands back its pipes, a [`Process`] handle and the
//! [`TaskTracker`] its helper tasks run on; [`reap`] stops one gracefully and always reaps.

use crate::error::{Role, ServerError};
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Lines of stderr kept for the error message when a child fails.
const STDERR_TAIL_LINES: usize = 8;

/// Pipe capacity asked for on stdin/stdout (Linux default is 64 KiB, the default
/// `/proc/sys/fs/pipe-max-size` is 1 MiB). A whole 640×480 BGR frame (900 KiB) then moves
/// in one read or write instead of ~15, which cuts wake-ups and context switches (the main
/// CPU cost of moving frames here).
const PIPE_BYTES: i32 = 1024 * 1024;

/// A child's stdin.
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;
/// A child's stdout.
pub type Output = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed future of a child's exit.
pub type Exit<'a> = Pin<Box<dyn Future<Output = std::io::Result<ExitStatus>> + Send + 'a>>;

/// A running child: ask it to die, wait for its exit.
pub trait Process: Send {
    /// Asks the child to die now; returns at once.
    fn start_kill(&mut self) -> std::io::Result<()>;
    /// Resolves with the exit status; cancel-safe (may be polled again after a drop).
    fn wait(&mut self) -> Exit<'_>;
}

impl Process for Child {
    fn start_kill(&mut self) -> std::io::Result<()> {
        Child::start_kill(self)
    }

    fn wait(&mut self) -> Exit<'_> {
        Box::pin(Child::wait(self))
    }
}

/// Starts children with `args` in a given role (moonfire-nvr's `Opener`, for ffmpeg).
pub trait Spawner: Send + Sync {
    fn spawn(&self, role: Role, args: &[String]) -> Result<Spawned, ServerError>;
}

/// A shared spawner, as sessions hold it.
pub type SharedSpawner = Arc<dyn Spawner>;

/// A started child with its pipes taken out for the caller.
pub struct Spawned {
    pub process: Box<dyn Process>,
    pub stdin: Input,
    pub stdout: Output,
    pub exit: ExitReporter,
    /// Where the child's helper tasks run (stderr drain, and the caller's pipe tasks):
    /// closed and waited for when the child is finished.
    pub tasks: TaskTracker,
}

/// The real thing: `program` (ffmpeg) with all three pipes, stderr drained into `tracing`,
/// and at most `memory_bytes` of address space each.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    pub program: PathBuf,
    pub memory_bytes: u64,
}

impl Ffmpeg {
    pub fn new(program: impl Into<PathBuf>, memory_bytes: u64) -> Arc<Self> {
        Arc::new(Ffmpeg {
            program: program.into(),
            memory_bytes,
        })
    }
}

impl Spawner for Ffmpeg {
    fn spawn(&self, role: Role, args: &[String]) -> Result<Spawned, ServerError> {
        spawn_program(role, &self.program, args, self.memory_bytes)
    }
}

/// Caps the address space of the child `command` starts at `bytes` (`RLIMIT_AS`, set in the
/// child between fork and exec). Input a demuxer trusts (an MP4 whose sample tables declare
/// tens of millions of samples, an absurd frame size) then fails that one child with an
/// allocation error instead of taking the machine's memory; the session reports it.
pub fn limit_memory(command: &mut Command, bytes: u64) {
    // SAFETY: the closure runs in the forked child before exec and calls only setrlimit,
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `program args…` with all three pipes and at most `memory_bytes` of address
/// space; stderr goes to `tracing` at debug level.
fn spawn_program(
    role: Role,
    program: &Path,
    args: &[String],
    memory_bytes: u64,
) -> Result<Spawned, ServerError> {
    let mut command = Command::new(program);
    limit_memory(&mut command, memory_bytes);
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServerError::Spawn {
            role,
            program: program.to_owned(),
            source,
        })?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ServerError::Pipe {
            role,
            source: std::io::Error::other("child pipes missing"),
        });
    };
    {
        use std::os::fd::AsRawFd;
        grow_pipe(stdin.as_raw_fd());
        grow_pipe(stdout.as_raw_fd());
    }
    let exit = ExitReporter::new(role);
    let tail = exit.stderr_tail.clone();
    let tasks = TaskTracker::new();
    tasks.spawn(
        async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // ffmpeg names its input in errors: a camera URL with its password, an SRT
                // URL with its passphrase. Neither reaches a log or an error message.
                let line = redact(&line);
                tracing::debug!(target: "server::ffmpeg", "{line}");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        }
        .instrument(tracing::debug_span!("stderr", role = role.as_str())),
    );
    Ok(Spawned {
        process: Box::new(child),
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        exit,
        tasks,
    })
}

/// Writes every item of `items` into a child's `stdin` from a task of its own on `tasks`,
/// until the channel closes (then stdin is dropped: the child sees EOF and finishes), the
/// child stops reading, or `cancel`. `written` gets each item back once it is written.
pub fn feed<T: Send + 'static>(
    tasks: &TaskTracker,
    mut stdin: Input,
    mut items: tokio::sync::mpsc::Receiver<T>,
    cancel: tokio_util::sync::CancellationToken,
    bytes: fn(&T) -> &[u8],
    mut ready: impl FnMut(&mut T) + Send + 'static,
    mut written: impl FnMut(T, Duration) + Send + 'static,
) {
    use tokio::io::AsyncWriteExt;
    tasks.spawn(async move {
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return,
                item = items.recv() => item,
            };
            let Some(mut item) = item else { return };
            ready(&mut item);
            let started = std::time::Instant::now();
            if let Err(e) = stdin.write_all(bytes(&item)).await {
                tracing::debug!("child stdin closed: {e}");
                return;
            }
            written(item, started.elapsed());
        }
    });
}

/// `line` with every URL's user and password and every secret-bearing query value
/// (`passphrase=`, `password=`, `pass=`, `key=`, `streamid=`) replaced by `***`.
pub fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    // Credentials: "scheme://user:password@host" → "scheme://***@host".
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str("***");
                rest = &tail[userinfo..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    for name in ["passphrase=", "password=", "pass=", "key=", "streamid="] {
        let mut from = 0;
        while let Some(found) = out[from..].find(name) {
            let start = from + found + name.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c.is_whitespace() || c == '\'' || c == '"' || c == ':')
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// Grows a pipe's buffer; best effort (a refusal only costs more wake-ups).
fn grow_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl(F_SETPIPE_SZ) only changes the capacity of an fd we own; on any
    // error it returns -1 and changes nothing.
    let got = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES) };
    if got < 0 {
        tracing::debug!(
            "could not grow pipe {fd}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Counts a live ffmpeg child in the `hls_face_ffmpeg_children` gauge until dropped.
struct ChildGauge;

impl ChildGauge {
    fn new() -> Self {
        ::metrics::gauge!(crate::metrics::CHILDREN).increment(1.0);
        ChildGauge
    }
}

impl Drop for ChildGauge {
    fn drop(&mut self) {
        ::metrics::gauge!(crate::metrics::CHILDREN).decrement(1.0);
    }
}

/// Turns a child's exit into `Ok` or a [`ServerError::ChildExit`] with its stderr tail.
/// The child counts as live (for `/metrics`) while its reporter exists.
#[derive(Clone)]
pub struct ExitReporter {
    role: Role,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    _gauge: Arc<ChildGauge>,
}

impl ExitReporter {
    /// A reporter for a child in `role`, with an empty stderr tail.
    pub fn new(role: Role) -> Self {
        ExitReporter {
            role,
            stderr_tail: Arc::default(),
            _gauge: Arc::new(ChildGauge::new()),
        }
    }

    /// `Ok` for a successful exit, otherwise the error with context.
    pub fn check(&self, status: std::io::Result<ExitStatus>) -> Result<(), ServerError> {
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(self.error(status.to_string())),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// The last lines the child wrote to stderr (already redacted), joined by ` | `.
    pub fn tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }

    /// An exit error for this role.
    pub fn error(&self, status: String) -> ServerError {
        let stderr_tail = self.tail();
        ServerError::ChildExit {
            role: self.role,
            status,
            stderr_tail,
        }
    }
}

/// Waits up to `grace` for `child` to exit on its own, then kills it; always reaps.
pub async fn reap(
    child: &mut dyn Process,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!("child did not exit within {grace:?}; killing it");
            child.start_kill()?;
            child.wait().await
        }
    }
}

/// Ends a reaped child's helper `tasks`: `cancel` stops the caller's pipe tasks (a reaped
/// child takes no more input and its output is no longer read), the stderr drain ends at
/// the closed pipe. Nothing of a finished child is left running.
pub async fn join_tasks(tasks: &TaskTracker, cancel: &tokio_util::sync::CancellationToken) {
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn stderr_lines_lose_passwords_and_passphrases() {
        let cases = [
            (
                "rtsp://admin:hunter2@10.0.0.5/s1: Server returned 401 Unauthorized",
                "rtsp://***@10.0.0.5/s1: Server returned 401 Unauthorized",
            ),
            (
                "Connection to srt://127.0.0.1:9710?passphrase=correcthorse1&pbkeylen=16 failed",
                "Connection to srt://127.0.0.1:9710?passphrase=***&pbkeylen=16 failed",
            ),
            (
                "'rtmp://h/live?key=abc' and rtsp://u:p@h and http://plain/x",
                "'rtmp://h/live?key=***' and rtsp://***@h and http://plain/x",
            ),
            ("no url here", "no url here"),
        ];
        for (line, want) in cases {
            let got = redact(line);
            assert_eq!(got, want);
            assert!(!got.contains("hunter2") && !got.contains("correcthorse"));
        }
    }
}
