//! `[limits]`: what one client and the whole server may use.

use serde::Deserialize;

impl LimitsConfig {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        super::first_failure(&[
            (
                (1..=100).contains(&self.max_cpu_percent),
                "limits.max-cpu-percent must be 1..=100",
            ),
            (
                self.max_chunk_bytes >= 1024,
                "limits.max-chunk-bytes must be at least 1024",
            ),
            (
                self.max_messages_per_second >= 1,
                "limits.max-messages-per-second must be at least 1",
            ),
            (
                self.resume_grace_secs < self.idle_timeout_secs,
                "limits.resume-grace-secs must be less than idle-timeout-secs",
            ),
            (
                self.idle_timeout_secs >= 1,
                "limits.idle-timeout-secs must be at least 1",
            ),
            (
                self.max_session_secs >= 1,
                "limits.max-session-secs must be at least 1",
            ),
            (
                self.max_sessions_per_client >= 1,
                "limits.max-sessions-per-client must be at least 1",
            ),
            (
                self.max_sessions_per_address >= 1,
                "limits.max-sessions-per-address must be at least 1",
            ),
            (
                self.max_retained_per_address >= 1,
                "limits.max-retained-per-address must be at least 1",
            ),
            (
                self.max_sockets_per_address >= 1,
                "limits.max-sockets-per-address must be at least 1",
            ),
            (
                self.header_timeout_secs >= 1,
                "limits.header-timeout-secs must be at least 1",
            ),
            (
                self.max_connections >= self.max_sockets,
                "limits.max-connections must be at least limits.max-sockets",
            ),
            (
                self.max_sockets >= self.effective_max_sessions(),
                "limits.max-sockets must be at least limits.max-sessions",
            ),
        ])
    }

    /// The session limit in force: `max-sessions`, or when 0, what this machine holds.
    pub fn effective_max_sessions(&self) -> usize {
        if self.max_sessions > 0 {
            return self.max_sessions;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::session::capacity::default_max_sessions(cores)
    }
}

/// `[limits]`: what one client and the whole server may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Concurrent sessions; 0 = as many as the machine holds (cores × measured cost).
    pub max_sessions: usize,
    /// New sessions are refused ("busy") while the machine's CPU (all processes, ffmpeg
    /// included) plus one more session would exceed this share, or while a session's
    /// encoder has fallen behind in the last seconds. 100 turns the live check off.
    pub max_cpu_percent: u32,
    /// Whether that check reads the machine's CPU (`/proc/stat`). Turn it off where
    /// `/proc/stat` shows another machine's CPU (a container on a shared host): the
    /// sessions' planned cost (by codec and picture size) and lagging encoders still count.
    pub measure_cpu: bool,
    /// Largest binary chunk.
    pub max_chunk_bytes: usize,
    /// Message rate cap per client.
    pub max_messages_per_second: u32,
    /// Session idle timeout.
    pub idle_timeout_secs: u64,
    /// Retention of stopped recordings.
    pub retention_secs: u64,
    /// Retention of abandoned sessions' folders.
    pub abandoned_retention_secs: u64,
    /// Longest a session may run; then it is ended like a Stop (the recording is kept).
    pub max_session_secs: u64,
    /// Sessions one browser (session cookie) may run at once.
    pub max_sessions_per_client: usize,
    /// Sessions one network address (IPv4, or IPv6 /64; behind a trusted proxy, the address
    /// it reports) may run at once, whatever its cookies.
    pub max_sessions_per_address: usize,
    /// Open TCP connections at once; more are closed at accept (below the process's
    /// file limit, so the server always has descriptors for its sessions).
    pub max_connections: usize,
    /// Seconds a client has to send its request headers (and finish a TLS handshake).
    pub header_timeout_secs: u64,
    /// Open WebSockets at once (streaming or not); more are refused before upgrade.
    pub max_sockets: usize,
    /// Open WebSockets one network address may hold at once.
    pub max_sockets_per_address: usize,
    /// Free disk space (MiB) the runtime folder's filesystem must keep: a session is not
    /// started below it, and a running one is ended (its playlist ended) when it is reached.
    pub min_free_disk_mb: u64,
    /// Recordings kept at once, the running sessions' counted: past it new sessions are
    /// refused, nobody's recording is deleted early.
    pub max_retained: usize,
    /// Recordings one network address keeps at once; one more replaces its own oldest.
    pub max_retained_per_address: usize,
    /// How long a session whose socket dropped waits for its page to reconnect.
    pub resume_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_sessions: 0,
            max_cpu_percent: 90,
            measure_cpu: true,
            max_chunk_bytes: 1024 * 1024,
            max_messages_per_second: 200,
            idle_timeout_secs: 20,
            retention_secs: 600,
            abandoned_retention_secs: 5,
            max_session_secs: 4 * 3600,
            max_sessions_per_client: 2,
            max_sessions_per_address: 4,
            max_connections: 512,
            header_timeout_secs: 10,
            max_sockets: 64,
            max_sockets_per_address: 16,
            min_free_disk_mb: 512,
            max_retained: 48,
            max_retained_per_address: 4,
            resume_grace_secs: 6,
        }
    }
}
