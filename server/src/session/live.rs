//! One client's running pipeline: decoder → detector → overlay → encoder → publisher,
//! with its counters, its events for the socket, and a graceful or forced end.

use super::capacity::{Capacity, Reservation};
use super::deadline::until;
use super::life::{Due, Life, Rules, DRAIN_LIMIT};
use super::registry::{Admission, SessionId};
use super::stats::Counters;
pub use super::supervisor::SessionEvent;
use super::supervisor::{Stage, Supervisor};
use crate::allocator;
use crate::child::SharedSpawner;
use crate::config::PipelineConfig;
use crate::error::ServerError;
use crate::hls::packager::PackagerSettings;
use crate::hls::publisher::SegmentStore;
use crate::hls::recording::SegmentKeeper;
use crate::metrics;
use crate::pipeline::{Pipeline, Queues, Sink};
use crate::source::Codec;
use crate::source::Source;
use crate::video::detector::{DetectorFactory, DetectorPool, DetectorWorker, Tuning};
use crate::video::encoder::EncoderSettings;
use crate::video::frame::FramePool;
use crate::video::frame_path::{FramePath, PathSettings};
use crate::video::thumbnail::{Latest, Thumbnailer};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Recorder chunks buffered toward the decoder (~3 s of 100 ms chunks). When full, the
/// socket stops reading, so a flood from the client turns into TCP backpressure.
const CHUNK_QUEUE: usize = 32;
/// Decoded frames buffered toward the frame path (a few frames absorb jitter), and frames
/// toward the encoder (~0.5 s at 30 fps; past that, frames are dropped and counted rather
/// than letting latency grow).
const QUEUES: Queues = Queues {
    frames: 4,
    encoder: 15,
};

/// What the pipeline needs from the server: settings and how to make a detector.
#[derive(Clone)]
pub struct PipelineEnv {
    pub config: PipelineConfig,
    /// Starts the decoder and encoder children (ffmpeg, or a stand-in in tests).
    pub spawner: SharedSpawner,
    pub detector: DetectorFactory,
    /// The detector threads every session shares, when the detector can be shared
    /// (otherwise each session runs `detector` on a thread of its own).
    pub detectors: Option<Arc<DetectorPool>>,
    /// The detector it makes (its settings are the ones the page shows).
    pub detector_kind: crate::config::DetectorKind,
    /// Free disk space (MiB) a session needs to start and to go on.
    pub min_free_disk_mb: u64,
    /// Told when a session falls behind (new sessions then wait).
    pub capacity: Arc<Capacity>,
    /// Every session's supervisor (it reaps the session's ffmpeg children and detector
    /// thread), also of sessions whose socket dropped them: shutdown waits for them all.
    pub supervisors: TaskTracker,
}

/// The stream a session receives: as a browser's Start message announced it, or a camera
/// channel's decoded frames.
pub struct Media {
    pub feed: Feed,
    pub width: u32,
    pub height: u32,
}

/// Who sends a session's media.
pub enum Feed {
    /// A browser's recorder, in the codec its Start announced; the session keeps a
    /// recording for download.
    Recorder(Codec),
    /// A camera channel's ingest, which decodes its source to the session's size and rate
    /// (no second ffmpeg): `first` is what was read of its output before the session
    /// started, `frames` the rest. Its first video arrived at `arrived`: the stream's
    /// PROGRAM-DATE-TIME counts from then, so a player's distance to it is the whole way
    /// from the source's arrival. No recording; a thumbnail of the output every few seconds
    /// for the Channels page.
    Camera {
        arrived: std::time::SystemTime,
        first: Bytes,
        frames: crate::child::Output,
    },
}

/// How often a channel's thumbnail is taken.
const THUMBNAIL_EVERY: Duration = Duration::from_secs(2);

/// A running session pipeline.
pub struct Session {
    pub id: SessionId,
    pub dir: PathBuf,
    chunks: Option<mpsc::Sender<Bytes>>,
    events: mpsc::Receiver<SessionEvent>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    cut: CancellationToken,
    privacy: Arc<AtomicBool>,
    detector: watch::Sender<Tuning>,
    /// The session's deadlines: idle, maximum length, drain.
    life: Life,
    /// Whether any media bytes came (bytes that never decode are bad media, not idleness).
    bytes_came: AtomicBool,
    admission: Admission,
    /// The newest output thumbnail (channels only).
    thumbnail: Latest,
    /// The detector it runs (settings reloads change it for new sessions only).
    detector_kind: crate::config::DetectorKind,
    reservation: Reservation,
}

impl Session {
    /// Spawns the decoder, detector thread, encoder and publisher for `media`.
    /// The session holds its place in the machine's planned capacity (`reservation`) until
    /// it is dropped.
    pub async fn start(
        admission: Admission,
        reservation: Reservation,
        media: Media,
        env: &PipelineEnv,
        privacy: bool,
        rules: Rules,
    ) -> Result<Self, ServerError> {
        let Media {
            feed,
            width,
            height,
        } = media;
        let cfg = &env.config;
        let id = admission.id.clone();
        let dir = admission.dir.clone();
        if crate::disk::below(&dir, env.min_free_disk_mb) {
            return Err(ServerError::DiskFull {
                dir,
                min_mb: env.min_free_disk_mb,
            });
        }
        let pool = FramePool::default();
        let (detector, detector_rx) = watch::channel(Tuning::from(&cfg.detector));
        let interval = Duration::from_secs(1) / cfg.detector.detect_fps.max(1);
        let worker = match &env.detectors {
            Some(shared) => {
                DetectorWorker::on(shared.clone(), interval, pool.clone(), detector_rx.clone())
                    .await?
            }
            None => {
                DetectorWorker::started(
                    env.detector.clone(),
                    format!("detect-{}", &id.as_str()[..8]),
                    interval,
                    pool.clone(),
                    detector_rx.clone(),
                )
                .await?
            }
        };
        let (chunk_tx, chunks) = mpsc::channel(CHUNK_QUEUE);
        let keeper = SegmentKeeper::for_live(&dir, cfg.recording.max_secs, cfg.hls.segment_seconds);
        let records = keeper.records() && matches!(feed, Feed::Recorder(_));
        let camera = matches!(feed, Feed::Camera { .. });
        let store = records.then(|| SegmentStore {
            dir: dir.clone(),
            keeper,
        });
        let clock_origin = match &feed {
            Feed::Camera { arrived, .. } => Some(*arrived),
            Feed::Recorder(_) => None,
        };
        let sink = Sink::Live {
            packager: PackagerSettings {
                clock_origin,
                ..PackagerSettings::from(&cfg.hls)
            },
            stream: admission.stream.clone(),
            store,
        };
        let privacy = Arc::new(AtomicBool::new(privacy));
        let Pipeline {
            decoder,
            frames,
            encoder,
            encoder_input,
            publisher,
        } = Pipeline::start(
            env.spawner.as_ref(),
            match feed {
                Feed::Recorder(codec) => Source::Chunks { chunks, codec },
                Feed::Camera { first, frames, .. } => Source::Frames {
                    first,
                    reader: frames,
                },
            },
            &EncoderSettings {
                privacy: Some(privacy.clone()),
                ..EncoderSettings::live(&cfg.hls, width, height)
            },
            sink,
            QUEUES,
            &pool,
        )?;
        let (event_tx, events) = mpsc::channel(8);
        let thumbnail = Latest::default();
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let stage = Stage {
            path: FramePath::live(
                worker,
                PathSettings::from(cfg),
                privacy.clone(),
                detector_rx,
            ),
            frames,
            encoder_input,
            counters: counters.clone(),
            capacity: env.capacity.clone(),
            thumbnails: camera.then(|| Thumbnailer::new(THUMBNAIL_EVERY, thumbnail.clone())),
            clock: Default::default(),
        };
        let cut = CancellationToken::new();
        let supervisor = Supervisor {
            stage,
            decoder,
            encoder,
            publisher,
            stream: admission.stream.subscribe(),
            events: event_tx,
            cancel: cancel.clone(),
            cut: cut.clone(),
            dir: dir.clone(),
            min_free_mb: env.min_free_disk_mb,
        };
        env.supervisors.spawn(
            async move {
                supervisor.run().await;
                // The pipeline's buffers are free now: hand them back to the system.
                let _ = tokio::task::spawn_blocking(allocator::give_back).await;
            }
            .in_current_span(),
        );
        ::metrics::counter!(metrics::SESSIONS_TOTAL).increment(1);
        ::metrics::gauge!(metrics::SESSIONS_LIVE).increment(1.0);
        Ok(Session {
            id,
            dir,
            chunks: Some(chunk_tx),
            events,
            counters,
            cancel,
            cut,
            privacy,
            detector,
            life: Life::new(rules, Instant::now()),
            bytes_came: AtomicBool::new(false),
            admission,
            thumbnail,
            detector_kind: env.detector_kind,
            reservation,
        })
    }

    /// Queues one recorder chunk for the decoder, waiting while the queue is full.
    /// Returns false when the pipeline no longer takes input.
    pub async fn push(&self, chunk: Bytes) -> bool {
        if !chunk.is_empty() {
            self.bytes_came.store(true, Ordering::Relaxed);
        }
        match &self.chunks {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        }
    }

    /// Closes the input: the decoder flushes, the encoder writes ENDLIST, and an
    /// [`SessionEvent::Ended`] follows.
    pub fn finish_input(&mut self) {
        self.chunks = None;
        self.life.input_closed(Instant::now());
    }

    /// Whether [`Session::finish_input`] was called.
    pub fn input_finished(&self) -> bool {
        self.chunks.is_none()
    }

    /// Kills the children at once (the playlist is still ended where possible).
    pub fn abort(&self) {
        self.cancel.cancel();
    }

    /// Ends a draining pipeline now: the decoder is stopped and what was encoded so far is
    /// finished as the recording (the encoder still writes its last segment and ENDLIST).
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// The next pipeline event or passed deadline; `None` once the pipeline task is gone.
    /// The session keeps its own deadlines: a drain that overran is cut here.
    pub async fn event(&mut self) -> Option<SessionEvent> {
        loop {
            let frames = || self.counters.frames_in.load(Ordering::Relaxed);
            self.life.observe(frames(), Instant::now());
            tokio::select! {
                biased;
                event = self.events.recv() => return event,
                _ = until(self.life.deadline()) => {}
            }
            let bytes_came = self.bytes_came.load(Ordering::Relaxed);
            match self.life.due(frames(), bytes_came, Instant::now()) {
                None => {}
                Some(Due::DrainOverran) => {
                    tracing::info!("the pipeline did not drain within {DRAIN_LIMIT:?}; cutting it");
                    self.cut();
                }
                Some(Due::TooLong) => {
                    tracing::info!("the session reached its maximum length; ending it");
                    self.chunks = None;
                    return Some(SessionEvent::Due(Due::TooLong));
                }
                Some(due @ (Due::Idle { .. } | Due::AheadOfRealTime)) => {
                    return Some(SessionEvent::Due(due))
                }
            }
        }
    }

    /// Ends the recording (the last segment and ENDLIST) within `limit`, else kills the
    /// pipeline; returns once it is over either way. Events in between are dropped: the
    /// caller is ending the session.
    pub async fn finish_within(&mut self, limit: Duration) {
        self.finish_input();
        let ended = tokio::time::timeout(limit, async {
            while let Some(event) = self.event().await {
                if matches!(event, SessionEvent::Ended(_)) {
                    break;
                }
            }
        })
        .await;
        if ended.is_err() {
            self.abort();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while self.event().await.is_some() {}
            })
            .await;
        }
    }

    /// Switches privacy mode (pixelated faces instead of boxes) from the next frame.
    pub fn set_privacy(&self, privacy: bool) {
        self.privacy.store(privacy, Ordering::Relaxed);
        self.reservation.plan_privacy(privacy);
    }

    /// Applies detector settings (already range-checked) from the next detection.
    pub fn set_detector(&self, settings: Tuning) {
        self.detector.send_replace(settings);
    }

    /// The detector this session runs.
    pub fn detector_kind(&self) -> crate::config::DetectorKind {
        self.detector_kind
    }

    /// The detector settings in force.
    pub fn detector_settings(&self) -> Tuning {
        *self.detector.borrow()
    }

    /// The network it was admitted from (its recording counts against it).
    pub fn network(&self) -> std::net::IpAddr {
        self.admission.network
    }

    /// The read-only viewer token of this session.
    pub fn viewer_token(&self) -> &crate::session::ids::ViewerToken {
        self.admission.viewer_token()
    }

    /// The counters, for stats.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Where its output thumbnails appear (a channel's; browser sessions take none).
    pub fn thumbnails(&self) -> Latest {
        self.thumbnail.clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session dropped without an orderly end (socket gone) still ends its pipeline:
        // closing the input lets the decoder and encoder finish; the supervisor reaps them.
        self.chunks = None;
        ::metrics::gauge!(metrics::SESSIONS_LIVE).decrement(1.0);
    }
}
