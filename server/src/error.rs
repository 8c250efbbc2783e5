//! The server crate's error type: every variant carries the context needed to find the cause.

use std::path::PathBuf;

/// Errors of the server, its sessions and its pipeline stages.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {stage} ({program}): {source}")]
    Spawn {
        stage: &'static str,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{stage} exited with {status}; stderr tail: {stderr_tail}")]
    ChildExit {
        stage: &'static str,
        status: String,
        stderr_tail: String,
    },
    #[error("{stage} pipe failed: {source}")]
    Pipe {
        stage: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("encoder output is not the fragmented MP4 expected: {0}")]
    Fmp4(String),
    #[error("face detector: {0}")]
    Detector(String),
    #[error(
        "another hls-face server (pid {owner}) uses the runtime folder {dir}; stop it or give \
         this one its own folder (pipeline.runtime-dir / HLS_FACE_PIPELINE_RUNTIME_DIR)"
    )]
    RuntimeInUse { dir: PathBuf, owner: String },
    #[error("the disk holding {dir} has less than the {min_mb} MiB free that sessions need")]
    DiskFull { dir: PathBuf, min_mb: u64 },
    #[error("{what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl ServerError {
    /// An I/O error with what was being done and to which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<opencv::Error> for ServerError {
    fn from(e: opencv::Error) -> Self {
        ServerError::Detector(e.to_string())
    }
}
