//! How a session ends: what its pipeline's last word means for the page, how long its
//! folder is kept afterwards, and the recording it offers. The socket only relays these.

use super::live::{PipelineEnv, Session};
use super::registry::Registry;
use crate::config::LimitsConfig;
use crate::error::{Role, ServerError};
use crate::hls::recording;
use app::protocol::{ErrorKind, ServerMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a remux under way may still run once the server is shutting down.
const REMUX_AT_SHUTDOWN: Duration = Duration::from_millis(800);

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its page stopped it and the pipeline drained (or the disk filled up: what was
    /// recorded is kept): kept for `retention-secs`, the recording offered.
    Stopped,
    /// The page vanished, failed, was refused, or the pipeline failed: kept for
    /// `abandoned-retention-secs`.
    Abandoned,
    /// The socket dropped and the page did not come back within the grace period. Kept,
    /// with its recording, like a stopped session when its stream had started (the same
    /// browser is offered it after a reload); removed at once otherwise.
    Expired,
    /// The server is shutting down: the recording is made if it can be in the time left,
    /// and kept across the restart.
    ShutDown,
}

impl Ending {
    /// What the pipeline's end means: how the session ended and the error the page is told
    /// (if any). `stopping`: the page had asked to stop; `frames`: frames decoded so far.
    pub fn of_pipeline(
        result: &Result<(), ServerError>,
        stopping: bool,
        frames: u64,
    ) -> (Ending, Option<ErrorKind>) {
        match result {
            Ok(()) if stopping => (Ending::Stopped, None),
            Ok(()) => {
                tracing::warn!("pipeline ended without a stop");
                (Ending::Abandoned, Some(ErrorKind::Pipeline))
            }
            Err(e @ ServerError::DiskFull { .. }) => {
                tracing::warn!("{e}");
                (Ending::Stopped, Some(ErrorKind::Storage))
            }
            Err(e) => {
                // A decoder that fails before its first frame was given something that is
                // not the announced video.
                let kind = match e {
                    ServerError::ChildExit {
                        role: Role::Decoder,
                        ..
                    } if frames == 0 => ErrorKind::BadMedia,
                    _ => ErrorKind::Pipeline,
                };
                tracing::warn!("pipeline failed ({}): {e}", kind.code());
                (Ending::Abandoned, Some(kind))
            }
        }
    }

    /// How long the session's folder stays after this ending.
    pub fn retention(self, limits: &LimitsConfig) -> Duration {
        Duration::from_secs(match self {
            Ending::Stopped | Ending::ShutDown => limits.retention_secs,
            Ending::Abandoned => limits.abandoned_retention_secs,
            Ending::Expired => 0,
        })
    }

    /// Whether a session that ended this way, with `started` (its stream had started),
    /// leaves a recording, and how long its folder stays then.
    fn keeps(self, started: bool, limits: &LimitsConfig) -> (bool, Duration) {
        match self {
            Ending::Stopped | Ending::ShutDown => (started, self.retention(limits)),
            Ending::Expired if started => (true, Duration::from_secs(limits.retention_secs)),
            _ => (false, self.retention(limits)),
        }
    }
}

/// What retiring a session needs from the server.
pub struct Retirement<'a> {
    pub registry: &'a Arc<Registry>,
    /// The server's pipeline settings and its one spawner (the recording's remuxer).
    pub pipeline: &'a PipelineEnv,
    pub limits: &'a LimitsConfig,
    pub shutdown: &'a CancellationToken,
}

impl Retirement<'_> {
    /// Retires an ended `session`: frees its place and revokes its viewer link at once,
    /// keeps its folder for the retention of `ending`, and — for a stopped session whose
    /// stream had started, when recordings are on — remuxes its segments into the MP4
    /// download. Returns what to tell the page about that download (`None`: nothing to
    /// offer, or the server is shutting down).
    pub async fn retire(
        &self,
        session: Session,
        ending: Ending,
        playlist_ready: bool,
    ) -> Option<ServerMsg> {
        let (id, dir, owner) = (session.id.clone(), session.dir.clone(), session.network());
        drop(session);
        let (offered, retention) = ending.keeps(playlist_ready, self.limits);
        let offered = offered && self.pipeline.config.records();
        self.registry.retire(id.clone(), retention, owner, offered);
        let until = Instant::now() + retention;
        if !offered {
            return None;
        }
        // A shutdown leaves the remux a moment to finish (it copies; seconds of video take
        // milliseconds); what is not finished then is removed by the next start.
        let cut_short = async {
            self.shutdown.cancelled().await;
            tokio::time::sleep(REMUX_AT_SHUTDOWN).await;
        };
        let result = tokio::select! {
            r = recording::remux(&*self.pipeline.spawner, &dir) => r,
            _ = cut_short => {
                self.registry.recording_failed(&id);
                return None;
            }
        };
        if self.shutdown.is_cancelled() {
            // The page is told by the shutdown message; the next run offers the file.
            if let Err(e) = &result {
                tracing::warn!("recording not made at shutdown: {e}");
                self.registry.recording_failed(&id);
            }
            return None;
        }
        Some(match result {
            Ok(_) => ServerMsg::RecordingReady {
                url: app::hls_path::recording_url(id.as_str()),
                available_secs: until.saturating_duration_since(Instant::now()).as_secs(),
            },
            Err(e) => {
                tracing::warn!("recording not offered: {e}");
                self.registry.recording_failed(&id);
                ServerMsg::error(ErrorKind::Recording)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_exit(role: Role) -> ServerError {
        ServerError::ChildExit {
            role,
            status: "exit status: 1".into(),
            stderr_tail: String::new(),
        }
    }

    #[test]
    fn the_pipeline_end_says_how_the_session_ended() {
        let ok = Ok(());
        assert_eq!(Ending::of_pipeline(&ok, true, 100), (Ending::Stopped, None));
        assert_eq!(
            Ending::of_pipeline(&ok, false, 100),
            (Ending::Abandoned, Some(ErrorKind::Pipeline)),
            "an end nobody asked for is a failure"
        );
        let full = Err(ServerError::DiskFull {
            dir: "/x".into(),
            min_mb: 1,
        });
        assert_eq!(
            Ending::of_pipeline(&full, false, 100),
            (Ending::Stopped, Some(ErrorKind::Storage)),
            "what was recorded before the disk filled up is kept"
        );
        assert_eq!(
            Ending::of_pipeline(&Err(child_exit(Role::Decoder)), false, 0),
            (Ending::Abandoned, Some(ErrorKind::BadMedia)),
            "a decoder failing before any frame was given something else than video"
        );
        assert_eq!(
            Ending::of_pipeline(&Err(child_exit(Role::Decoder)), false, 5),
            (Ending::Abandoned, Some(ErrorKind::Pipeline))
        );
        assert_eq!(
            Ending::of_pipeline(&Err(child_exit(Role::Encoder)), true, 0),
            (Ending::Abandoned, Some(ErrorKind::Pipeline))
        );
    }

    #[test]
    fn retention_follows_the_ending() {
        let limits = LimitsConfig {
            retention_secs: 600,
            abandoned_retention_secs: 30,
            ..LimitsConfig::default()
        };
        assert_eq!(Ending::Stopped.retention(&limits), Duration::from_secs(600));
        assert_eq!(
            Ending::Abandoned.retention(&limits),
            Duration::from_secs(30)
        );
        assert_eq!(Ending::Expired.retention(&limits), Duration::ZERO);
    }
}
