//! One helper for every ffmpeg child: spawn with piped stdio, stderr drained into `tracing`
//! (keeping a tail for error reports), and a graceful stop that always reaps.

use crate::error::{Role, ServerError};
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::Instrument;

/// Lines of stderr kept for the error message when a child fails.
const STDERR_TAIL_LINES: usize = 8;

/// Pipe capacity asked for on stdin/stdout (Linux default is 64 KiB, the default
/// `/proc/sys/fs/pipe-max-size` is 1 MiB). A whole 640×480 BGR frame (900 KiB) then moves
/// in one read or write instead of ~15, which cuts wake-ups and context switches (the main
/// CPU cost of moving frames here).
const PIPE_BYTES: i32 = 1024 * 1024;

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

/// A running child with its stdin/stdout taken out for the caller.
pub struct Spawned {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub role: Role,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Spawned {
    /// Starts `program args…` with all three pipes; stderr goes to `tracing` at debug level.
    pub fn spawn(role: Role, program: &Path, args: &[String]) -> Result<Self, ServerError> {
        let mut child = Command::new(program)
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
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        tokio::spawn(
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
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
            child,
            stdin,
            stdout,
            role,
            stderr_tail,
        })
    }

    /// Splits off the child and a reporter that turns its exit status into an error.
    pub fn into_parts(self) -> (Child, ChildStdin, ChildStdout, ExitReporter) {
        (
            self.child,
            self.stdin,
            self.stdout,
            ExitReporter {
                role: self.role,
                stderr_tail: self.stderr_tail,
                _gauge: Arc::new(ChildGauge::new()),
            },
        )
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
    /// `Ok` for a successful exit, otherwise the error with context.
    pub fn check(
        &self,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Result<(), ServerError> {
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(self.error(status.to_string())),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// An exit error for this role.
    pub fn error(&self, status: String) -> ServerError {
        let stderr_tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        ServerError::ChildExit {
            role: self.role,
            status,
            stderr_tail,
        }
    }
}

/// Waits up to `grace` for `child` to exit on its own, then kills it; always reaps.
pub async fn reap(child: &mut Child, grace: Duration) -> std::io::Result<std::process::ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!("child did not exit within {grace:?}; killing it");
            child.kill().await?;
            child.wait().await
        }
    }
}
