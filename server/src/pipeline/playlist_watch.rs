//! Watches a session folder with `notify` and reports the playlist's progress: ready once the
//! first segment is listed, then the number of segments produced.

use super::encoder::PLAYLIST;
use super::playlist::Playlist;
use crate::error::ServerError;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// A change in the playlist worth telling the session about.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaylistEvent {
    /// The playlist lists its first complete segment.
    Ready,
    /// The playlist was rewritten; `segments` produced so far, `ended` if ENDLIST.
    Updated { segments: u64, ended: bool },
}

/// Owns the watcher; events stop when it is dropped.
pub struct PlaylistWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl PlaylistWatch {
    /// Starts watching `dir`; events go to `events` (bounded; updates are coalesced).
    pub fn start(dir: &Path, events: mpsc::Sender<PlaylistEvent>) -> Result<Self, ServerError> {
        // Capacity 1: notify's thread only signals "something changed"; the task reads
        // the playlist once per signal, so bursts collapse into one read.
        let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                // Only writes count: reading the playlist (ours, or a player's request)
                // raises access events, which must not trigger another read.
                let written = matches!(
                    event.kind,
                    notify::EventKind::Create(_) | notify::EventKind::Modify(_)
                );
                let playlist = event
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| n == PLAYLIST));
                if written && playlist {
                    let _ = changed_tx.try_send(());
                }
            }
        })
        .map_err(|source| ServerError::Watch {
            path: dir.to_owned(),
            source,
        })?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| ServerError::Watch {
                path: dir.to_owned(),
                source,
            })?;
        let playlist_path: PathBuf = dir.join(PLAYLIST);
        let task = tokio::spawn(async move {
            let mut ready = false;
            let mut last = None;
            while changed_rx.recv().await.is_some() {
                let Ok(text) = tokio::fs::read_to_string(&playlist_path).await else {
                    continue;
                };
                let Some(playlist) = Playlist::parse(&text) else {
                    continue;
                };
                if playlist.is_ready() && !ready {
                    ready = true;
                    if events.send(PlaylistEvent::Ready).await.is_err() {
                        return;
                    }
                }
                let update = PlaylistEvent::Updated {
                    segments: playlist.segments_produced(),
                    ended: playlist.ended,
                };
                if last.as_ref() != Some(&update) {
                    last = Some(update.clone());
                    if events.send(update).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(PlaylistWatch {
            _watcher: watcher,
            task,
        })
    }
}

impl Drop for PlaylistWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn next(rx: &mut mpsc::Receiver<PlaylistEvent>) -> PlaylistEvent {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("no playlist event")
            .expect("watch ended")
    }

    #[tokio::test]
    async fn reports_ready_only_once_a_segment_is_listed() {
        let dir = std::env::temp_dir().join(format!("hls-face-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let _watch = PlaylistWatch::start(&dir, tx).unwrap();

        // Written the way ffmpeg's temp_file flag does it: temp file, then rename.
        let write = |text: &str| {
            let tmp = dir.join("playlist.m3u8.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(PLAYLIST)).unwrap();
        };
        write("#EXTM3U\n#EXT-X-TARGETDURATION:1\n");
        assert_eq!(
            next(&mut rx).await,
            PlaylistEvent::Updated {
                segments: 0,
                ended: false
            }
        );
        write("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg_00000.ts\n");
        assert_eq!(next(&mut rx).await, PlaylistEvent::Ready);
        assert_eq!(
            next(&mut rx).await,
            PlaylistEvent::Updated {
                segments: 1,
                ended: false
            }
        );
        write("#EXTM3U\n#EXTINF:1.0,\nseg_00000.ts\n#EXT-X-ENDLIST\n");
        assert_eq!(
            next(&mut rx).await,
            PlaylistEvent::Updated {
                segments: 1,
                ended: true
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
