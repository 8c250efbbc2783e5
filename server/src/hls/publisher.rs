//! Runs the [`Packager`] on the encoder's output: publishes every new stream snapshot to
//! the session's readers (one `watch` value all HTTP requests share), keeps complete
//! segments on disk for the recording (written by a task of their own: a slow disk does
//! not delay the live stream). The session follows the same snapshots for its
//! progress (ready, segments produced, ended).

use super::flv::FlvReader;
use super::fmp4::Chunk;
use super::packager::{Event, Packager, PackagerSettings};
use super::recording::SegmentKeeper;
use super::stream::{segment_name, Stream, INIT};
use crate::error::ServerError;
use crate::video::frame::Shape;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where complete segments go for the recording (`None`: no recording).
pub struct SegmentStore {
    pub dir: PathBuf,
    pub keeper: SegmentKeeper,
}

/// Recording files waiting for the disk (segments of about a second): a disk this far
/// behind makes the live stream wait too, rather than lose a part of the recording.
const WRITE_QUEUE: usize = 8;

/// A write that took longer than this is logged: the disk is falling behind.
const SLOW_WRITE: Duration = Duration::from_millis(500);

/// A file for the recording.
enum Write {
    Init(Bytes),
    Segment { msn: u64, bytes: Bytes },
}

/// Writes the recording's files from a task of its own, so a slow disk (another process
/// flushing, a network volume) does not hold up the live stream's next parts.
struct StoreWriter {
    queue: mpsc::Sender<Write>,
    task: JoinHandle<()>,
}

impl StoreWriter {
    fn start(mut store: SegmentStore) -> Self {
        let (queue, mut writes) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(w) = writes.recv().await {
                match w {
                    Write::Init(bytes) => write(store.dir.join(INIT), bytes).await,
                    Write::Segment { msn, bytes } => {
                        write(store.dir.join(segment_name(msn)), bytes).await;
                        store.keeper.prune(msn + 1);
                    }
                }
            }
        });
        StoreWriter { queue, task }
    }

    /// Queues a file; waits only while the queue is full.
    async fn send(&self, w: Write) {
        // The writer task ends only when the queue closes (below) or panics; either way
        // there is nobody left to write, and the live stream goes on.
        let _ = self.queue.send(w).await;
    }

    /// Queues the segments among `changes`.
    async fn keep_all(&self, changes: Vec<Event>) {
        for change in changes {
            if let Event::Segment { msn, bytes } = change {
                self.send(Write::Segment { msn, bytes }).await;
            }
        }
    }

    /// Waits until every queued file is written.
    async fn finish(self) {
        drop(self.queue);
        if let Err(e) = self.task.await {
            tracing::error!("recording writer failed: {e}");
        }
    }
}

/// The running publisher; [`Publisher::finished`] waits for the last snapshot.
pub struct Publisher {
    task: JoinHandle<Result<(), ServerError>>,
}

impl Publisher {
    /// Reads frames of `shape` from `encoder_output` until it ends, publishing into
    /// `stream`.
    pub fn start(
        encoder_output: impl AsyncRead + Unpin + Send + 'static,
        shape: Shape,
        settings: PackagerSettings,
        stream: watch::Sender<Arc<Stream>>,
        store: Option<SegmentStore>,
    ) -> Self {
        let task = tokio::spawn(run(encoder_output, shape, settings, stream, store));
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
    shape: Shape,
    settings: PackagerSettings,
    stream: watch::Sender<Arc<Stream>>,
    store: Option<SegmentStore>,
) -> Result<(), ServerError> {
    let store = store.map(StoreWriter::start);
    let mut reader = FlvReader::new(encoder_output, shape);
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
                    store.send(Write::Init(init.bytes.clone())).await;
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
        if let Some(store) = &store {
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
    // The recording is complete on disk before the final snapshot says the stream ended
    // (the session assembles the recording then).
    if let Some(store) = store {
        store.keep_all(last).await;
        store.finish().await;
    }
    stream.send_replace(Arc::new(packager.stream().clone()));
    result
}

/// Writes a recording file; a failure (disk full) is logged: the live stream goes on, and
/// the session's disk check ends it before the recording matters.
async fn write(path: PathBuf, bytes: Bytes) {
    let started = Instant::now();
    if let Err(e) = tokio::fs::write(&path, bytes).await {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    let took = started.elapsed();
    if took > SLOW_WRITE {
        tracing::warn!(
            "slow disk: writing {} took {} ms",
            path.display(),
            took.as_millis()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::flv::tests::{frame, header, sequence};
    use crate::hls::stream::{Resource, Timing};
    use crate::video::frame::FrameRate;

    /// The encoder's FLV header and sequence header.
    fn init() -> Vec<u8> {
        let mut out = header();
        out.extend(sequence());
        out
    }

    /// Frame `n`'s tag.
    fn fragment(n: u64, key: bool, payload: &[u8]) -> Vec<u8> {
        frame((n * 33) as u32, key, payload)
    }

    /// A publisher of `bytes` (the encoder's output) with 1 s segments of 0.1 s parts.
    fn start(
        bytes: Vec<u8>,
        tx: watch::Sender<Arc<Stream>>,
        store: Option<SegmentStore>,
    ) -> Publisher {
        let settings = PackagerSettings {
            segment_seconds: 1.0,
            part_seconds: 0.1,
            hold_back_parts: 3,
            window: 6,
            clock_origin: None,
        };
        Publisher::start(std::io::Cursor::new(bytes), SHAPE, settings, tx, store)
    }

    const SHAPE: Shape = Shape {
        width: 64,
        height: 48,
        fps: FrameRate::whole(30),
    };

    #[tokio::test]
    async fn publishes_parts_keeps_segments_and_ends_the_playlist() {
        let dir = std::env::temp_dir().join(format!("hls-face-pub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = init();
        for n in 0..45u64 {
            bytes.extend(fragment(
                n,
                n.is_multiple_of(30),
                format!("[{n}]").as_bytes(),
            ));
        }
        let (tx, mut rx) = watch::channel(Arc::new(Stream::new(Timing::default())));
        let store = SegmentStore {
            dir: dir.clone(),
            keeper: SegmentKeeper::new(&dir, Some(10)),
        };
        let publisher = start(bytes, tx, Some(store));
        publisher.finished().await.unwrap();
        let stream = rx.borrow_and_update().clone();
        assert!(stream.ended && stream.produced == 2);
        assert!(stream.get(Resource::Part(1, 4)).is_some());
        assert!(String::from_utf8_lossy(&stream.playlist).ends_with("#EXT-X-ENDLIST\n"));
        assert!(dir.join(INIT).is_file() && dir.join(segment_name(1)).is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_stuck_disk_does_not_hold_up_the_live_stream() {
        let dir = std::env::temp_dir().join(format!("hls-face-pub-slow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Writing the first segment blocks until someone reads this FIFO: a disk that stopped.
        let stuck = dir.join(segment_name(0));
        let made = std::process::Command::new("mkfifo")
            .arg(&stuck)
            .status()
            .unwrap();
        assert!(made.success());
        let mut bytes = init();
        for n in 0..75u64 {
            bytes.extend(fragment(n, n.is_multiple_of(30), b"f"));
        }
        let (tx, mut rx) = watch::channel(Arc::new(Stream::new(Timing::default())));
        let store = SegmentStore {
            dir: dir.clone(),
            keeper: SegmentKeeper::new(&dir, None),
        };
        let publisher = start(bytes, tx, Some(store));
        // Two segments complete and the third one's parts are published while the first
        // segment's write is still stuck.
        let live = rx.wait_for(|s| s.produced >= 2 && s.get(Resource::Part(2, 4)).is_some());
        tokio::time::timeout(Duration::from_secs(60), live)
            .await
            .expect("parts published while the disk is stuck")
            .unwrap();
        assert!(
            !rx.borrow().ended,
            "the stream ends only once the recording is on disk"
        );
        // The disk comes back: everything is written, then the stream ends.
        let drain = tokio::task::spawn_blocking(move || std::fs::read(&stuck).unwrap());
        publisher.finished().await.unwrap();
        assert!(
            !drain.await.unwrap().is_empty(),
            "segment 0 reached the disk"
        );
        assert!(rx.borrow_and_update().ended);
        assert!(dir.join(segment_name(1)).is_file() && dir.join(segment_name(2)).is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_malformed_output_ends_the_stream_and_says_why() {
        let mut bytes = init();
        bytes.extend(fragment(0, true, b"x"));
        bytes.extend([0, 0, 0, 3, b'b', b'a', b'd', b'!']);
        let (tx, rx) = watch::channel(Arc::new(Stream::new(Timing::default())));
        let publisher = start(bytes, tx, None);
        assert!(publisher.finished().await.is_err());
        assert!(rx.borrow().ended);
    }
}
