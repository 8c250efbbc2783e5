//! A live session's recording: its init segment and the complete segments kept on disk (up
//! to a time limit), and their remux, without re-encoding, into one MP4 offered for
//! download after Stop.

use super::stream::{Resource, INIT};
use crate::child::{reap, Spawned, Spawner};
use crate::error::{Role, ServerError};
use crate::metrics;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub use app::hls_path::RECORDING;

/// A remux longer than this is stuck (copying runs at hundreds of times real time).
const REMUX_LIMIT: Duration = Duration::from_secs(120);

pub use super::stream::segment_name;

/// The segment number in a file name the publisher wrote, if it is one.
fn segment_number(name: &str) -> Option<u64> {
    match Resource::parse(name)? {
        Resource::Segment(n) => Some(n),
        _ => None,
    }
}

/// Deletes segments older than the recording limit as new ones arrive.
#[derive(Debug)]
pub struct SegmentKeeper {
    dir: PathBuf,
    /// Segments kept; `None` when the encoder deletes them itself (no recording).
    keep: Option<u64>,
    /// Segments below this number are already deleted.
    pruned: u64,
}

impl SegmentKeeper {
    /// Keeps the last `keep` segments of `dir` (never fewer than the live window needs);
    /// `None` leaves deletion to the encoder.
    pub fn new(dir: &Path, keep: Option<u64>) -> Self {
        SegmentKeeper {
            dir: dir.to_owned(),
            keep,
            pruned: 0,
        }
    }

    /// For a live session: `recording_secs` of `segment_seconds` segments (at least one);
    /// `None` when recordings are off.
    pub fn for_live(dir: &Path, recording_secs: u64, segment_seconds: f64) -> Self {
        let keep = (recording_secs > 0)
            .then(|| ((recording_secs as f64 / segment_seconds).ceil() as u64).max(1));
        SegmentKeeper::new(dir, keep)
    }

    /// Whether segments are kept for a recording.
    pub fn records(&self) -> bool {
        self.keep.is_some()
    }

    /// Called with the number of segments produced so far.
    pub fn prune(&mut self, produced: u64) {
        let Some(keep) = self.keep else { return };
        let first_kept = produced.saturating_sub(keep);
        while self.pruned < first_kept {
            let path = self.dir.join(segment_name(self.pruned));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot delete {}: {e}", path.display()),
            }
            self.pruned += 1;
        }
    }
}

/// The segment files of `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ServerError::io("cannot list segments in", dir, e))?;
    let mut numbered: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = segment_number(e.file_name().to_str()?)?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort_unstable_by_key(|(n, _)| *n);
    Ok(numbered.into_iter().map(|(_, p)| p).collect())
}

/// ffmpeg arguments: fragmented MP4 (init + segments) on stdin → `out` as a plain MP4,
/// streams copied, index at the front so the download plays while it loads.
pub fn remux_args(out: &Path) -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-f",
        "mp4",
        "-i",
        "pipe:0",
        "-map",
        "0:v",
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([out.to_string_lossy().into_owned()])
    .collect()
}

/// Remuxes the segments of `dir` into `dir/recording.mp4` (written under a temporary name
/// and renamed, so the route never serves half a file). Segments are streamed to ffmpeg's
/// stdin from their own task.
pub async fn remux(ffmpeg: &dyn Spawner, dir: &Path) -> Result<PathBuf, ServerError> {
    let mut parts = segments(dir)?;
    if parts.is_empty() {
        return Err(ServerError::Input("no segments to record".into()));
    }
    parts.insert(0, dir.join(INIT));
    let partial = dir.join(format!("{RECORDING}.part"));
    let out = dir.join(RECORDING);
    let Spawned {
        mut process,
        mut stdin,
        exit,
        ..
    } = ffmpeg.spawn(Role::Remuxer, &remux_args(&partial))?;
    let feed = tokio::spawn(async move {
        for part in parts {
            // A segment pruned meanwhile is skipped; anything else ends the feed.
            let bytes = match tokio::fs::read(&part).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ServerError::io("cannot read segment", part, e)),
            };
            stdin
                .write_all(&bytes)
                .await
                .map_err(|source| ServerError::Pipe {
                    role: Role::Remuxer,
                    source,
                })?;
        }
        Ok(())
    });
    let status = reap(process.as_mut(), REMUX_LIMIT).await;
    let fed = feed.await.unwrap_or_else(|source| {
        Err(ServerError::Task {
            what: "feeding segments to the remuxer",
            source,
        })
    });
    if let Err(e) = exit.check(status).and(fed) {
        ::metrics::counter!(metrics::FFMPEG_FAILURES, "role" => Role::Remuxer.as_str())
            .increment(1);
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(ServerError::Remux {
            source: Box::new(e),
        });
    }
    tokio::fs::rename(&partial, &out)
        .await
        .map_err(|e| ServerError::io("cannot publish recording", &out, e))?;
    ::metrics::counter!(metrics::RECORDINGS).increment(1);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hls-face-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_segments_count() {
        assert_eq!(segment_number("seg_00007.m4s"), Some(7));
        assert_eq!(segment_number("seg_123456.m4s"), Some(123456));
        for other in [
            "playlist.m3u8",
            "seg_7.m4s",
            "seg_00007.m4s.tmp",
            "part_00007_1.m4s",
            INIT,
            RECORDING,
        ] {
            assert_eq!(segment_number(other), None, "{other}");
        }
    }

    #[test]
    fn keeps_the_last_segments_and_lists_them_in_order() {
        let dir = temp_dir("keep");
        for n in 0..12 {
            std::fs::write(dir.join(segment_name(n)), b"x").unwrap();
        }
        std::fs::write(dir.join(INIT), b"init").unwrap();
        // 2 s of 0.25 s segments = 8.
        let mut keeper = SegmentKeeper::for_live(&dir, 2, 0.25);
        assert!(keeper.records());
        keeper.prune(12);
        let names: Vec<String> = segments(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, (4..12).map(segment_name).collect::<Vec<_>>());
        keeper.prune(12); // idempotent
        assert_eq!(segments(&dir).unwrap().len(), 8);
        assert!(dir.join(INIT).is_file(), "the init segment stays");
        assert_eq!(
            SegmentKeeper::for_live(&dir, 1, 2.0).keep,
            Some(1),
            "at least one"
        );
        assert!(!SegmentKeeper::for_live(&dir, 0, 0.25).records());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remux_copies_streams_into_a_faststart_mp4() {
        let args = remux_args(Path::new("/s/recording.mp4.part")).join(" ");
        assert!(args.contains("-f mp4 -i pipe:0"));
        assert!(args.contains("-c copy -movflags +faststart -f mp4"));
        assert!(args.ends_with("/s/recording.mp4.part"));
    }

    #[tokio::test]
    async fn remux_of_nothing_is_an_error_and_leaves_no_file() {
        let dir = temp_dir("empty");
        assert!(remux(&*crate::child::Ffmpeg::new("ffmpeg", 1 << 30), &dir)
            .await
            .is_err());
        assert!(!dir.join(RECORDING).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
