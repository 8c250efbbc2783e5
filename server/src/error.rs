//! The server crate's error type: every variant carries the context needed to find the cause.

use std::fmt;
use std::path::PathBuf;

/// A child process's role in the pipeline: in errors, logs and the `role` label of
/// `hls_face_ffmpeg_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Decoder,
    Encoder,
    Remuxer,
    /// ffprobe reading an input file for `process`.
    Probe,
    /// A camera channel's reader: pulls or receives the source and relays its video.
    Ingest,
}

impl Role {
    /// The name used in logs and as the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Decoder => "decoder",
            Role::Encoder => "encoder",
            Role::Remuxer => "remuxer",
            Role::Probe => "probe",
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[error("cannot start {role} ({program}): {source}")]
    Spawn {
        role: Role,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{role} exited with {status}; stderr tail: {stderr_tail}")]
    ChildExit {
        role: Role,
        status: String,
        stderr_tail: String,
    },
    #[error("{role} pipe failed: {source}")]
    Pipe { role: Role, source: std::io::Error },
    #[error("{0}")]
    Input(String),
    #[error("encoder output is not the fragmented MP4 expected: {0}")]
    Fmp4(String),
    #[error("face detector: {0}")]
    Detector(String),
    #[error("face detector: {what}: {source}")]
    OpenCv { what: String, source: opencv::Error },
    #[error("cannot start {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("remux failed: {source}")]
    Remux { source: Box<ServerError> },
    #[error("serving HTTP failed: {source}")]
    Serve { source: std::io::Error },
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
    fn from(source: opencv::Error) -> Self {
        ServerError::OpenCv {
            what: "OpenCV call".into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wrapped_errors_keep_their_source() {
        let io = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        let pipe = ServerError::Pipe {
            role: Role::Remuxer,
            source: io(),
        };
        assert_eq!(pipe.to_string(), "remuxer pipe failed: gone");
        assert!(pipe.source().is_some());
        let remux = ServerError::Remux {
            source: Box::new(pipe),
        };
        let mut chain = vec![remux.to_string()];
        let mut next = remux.source();
        while let Some(e) = next {
            chain.push(e.to_string());
            next = e.source();
        }
        assert_eq!(
            chain,
            [
                "remux failed: remuxer pipe failed: gone",
                "remuxer pipe failed: gone",
                "gone"
            ]
        );
        let cv: ServerError = opencv::Error::new(-2, "bad mat").into();
        assert!(
            cv.source().is_some(),
            "OpenCV's error is kept, not flattened"
        );
        assert_eq!(
            ServerError::Serve { source: io() }.to_string(),
            "serving HTTP failed: gone"
        );
    }
}
