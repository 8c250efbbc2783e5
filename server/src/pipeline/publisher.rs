//! Runs the [`Packager`] on the encoder's output: publishes every new stream snapshot to
//! the session's readers (one `watch` value all HTTP requests share), keeps complete
//! segments on disk for the recording. The session follows the same snapshots for its
//! progress (ready, segments produced, ended).

use super::fmp4::{Chunk, Fmp4Reader};
use super::packager::{Event, Packager, PackagerSettings};
use super::recording::SegmentKeeper;
use super::stream::{segment_name, Stream, INIT};
use crate::error::ServerError;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where complete segments go for the recording (`None`: no recording).
pub struct SegmentStore {
    pub dir: PathBuf,
    pub keeper: SegmentKeeper,
}

impl SegmentStore {
    /// Writes complete segment `msn` and prunes what the recording no longer keeps.
    async fn keep(&mut self, msn: u64, bytes: Bytes) {
        write(self.dir.join(segment_name(msn)), bytes).await;
        self.keeper.prune(msn + 1);
    }

    /// Keeps the segments among `changes`.
    async fn keep_all(&mut self, changes: Vec<Event>) {
        for change in changes {
            if let Event::Segment { msn, bytes } = change {
                self.keep(msn, bytes).await;
            }
        }
    }
}

/// The running publisher; [`Publisher::finished`] waits for the last snapshot.
pub struct Publisher {
    task: JoinHandle<Result<(), ServerError>>,
}

impl Publisher {
    /// Reads fragments from `encoder_output` until it ends, publishing into `stream`.
    pub fn start(
        encoder_output: impl AsyncRead + Unpin + Send + 'static,
        settings: PackagerSettings,
        stream: watch::Sender<Arc<Stream>>,
        store: Option<SegmentStore>,
    ) -> Self {
        let task = tokio::spawn(run(encoder_output, settings, stream, store));
        Publisher { task }
    }

    /// Waits until the encoder's output has ended and the final (ENDLIST) playlist is
    /// published; reports a malformed output.
    pub async fn finished(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Fmp4(format!("publisher task failed: {e}"))),
        }
    }
}

async fn run(
    encoder_output: impl AsyncRead + Unpin,
    settings: PackagerSettings,
    stream: watch::Sender<Arc<Stream>>,
    mut store: Option<SegmentStore>,
) -> Result<(), ServerError> {
    let mut reader = Fmp4Reader::new(encoder_output);
    let mut packager = Packager::new(settings);
    let result = loop {
        let chunk = match reader.next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let changes = match chunk {
            Chunk::Init(init) => {
                if let Some(store) = &store {
                    write(store.dir.join(INIT), init.bytes.clone()).await;
                }
                packager.init(init);
                Vec::new()
            }
            Chunk::Fragment(fragment) => match packager.push(fragment, SystemTime::now()) {
                Ok(changes) => changes,
                Err(e) => break Err(e),
            },
        };
        if changes.is_empty() {
            continue;
        }
        stream.send_replace(Arc::new(packager.stream().clone()));
        if let Some(store) = &mut store {
            store.keep_all(changes).await;
        }
    };
    // Whatever happened, readers see an ended stream (a malformed output is not played on).
    let last = if result.is_ok() {
        packager.finish()
    } else {
        packager.abandon();
        Vec::new()
    };
    if let Some(store) = &mut store {
        store.keep_all(last).await;
    }
    stream.send_replace(Arc::new(packager.stream().clone()));
    result
}

/// Writes a recording file; a failure (disk full) is logged: the live stream goes on, and
/// the session's disk check ends it before the recording matters.
async fn write(path: PathBuf, bytes: Bytes) {
    if let Err(e) = tokio::fs::write(&path, bytes).await {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fmp4::tests::{fragment, init};
    use crate::pipeline::stream::{Resource, Timing};

    #[tokio::test]
    async fn publishes_parts_keeps_segments_and_ends_the_playlist() {
        let dir = std::env::temp_dir().join(format!("hls-face-pub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = init(15360);
        for n in 0..45u64 {
            bytes.extend(fragment(
                n * 512,
                n.is_multiple_of(30),
                format!("[{n}]").as_bytes(),
            ));
        }
        let (tx, mut rx) = watch::channel(Arc::new(Stream::new(Timing::default())));
        let store = SegmentStore {
            dir: dir.clone(),
            keeper: SegmentKeeper::new(&dir, Some(10)),
        };
        let settings = PackagerSettings {
            segment_seconds: 1.0,
            part_seconds: 0.1,
            window: 6,
        };
        let publisher = Publisher::start(std::io::Cursor::new(bytes), settings, tx, Some(store));
        publisher.finished().await.unwrap();
        let stream = rx.borrow_and_update().clone();
        assert!(stream.ended && stream.produced == 2);
        assert!(stream.get(Resource::Part(1, 4)).is_some());
        assert!(String::from_utf8_lossy(&stream.playlist).ends_with("#EXT-X-ENDLIST\n"));
        assert!(dir.join(INIT).is_file() && dir.join(segment_name(1)).is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_malformed_output_ends_the_stream_and_says_why() {
        let mut bytes = init(15360);
        bytes.extend(fragment(0, true, b"x"));
        bytes.extend([0, 0, 0, 3, b'b', b'a', b'd', b'!']);
        let (tx, rx) = watch::channel(Arc::new(Stream::new(Timing::default())));
        let settings = PackagerSettings {
            segment_seconds: 1.0,
            part_seconds: 0.1,
            window: 6,
        };
        let publisher = Publisher::start(std::io::Cursor::new(bytes), settings, tx, None);
        assert!(publisher.finished().await.is_err());
        assert!(rx.borrow().ended);
    }
}
