//! One client's running pipeline: decoder → detector → overlay → encoder → publisher,
//! with its counters, its events for the socket, and a graceful or forced end.

use super::capacity::{Capacity, Reservation};
use super::registry::{Admission, SessionId};
use crate::config::PipelineConfig;
use crate::error::ServerError;
use crate::metrics;
use crate::pipeline::decoder::{Decoder, Source};
use crate::pipeline::detector::{Detection, DetectorFactory, DetectorWorker, HaarSettings};
use crate::pipeline::encoder::{Encoder, EncoderOutput, HlsSettings};
use crate::pipeline::frame::{Frame, FramePool};
use crate::pipeline::frame_path::{FramePath, Output};
use crate::pipeline::publisher::{Publisher, SegmentStore};
use crate::pipeline::recording::SegmentKeeper;
use crate::pipeline::stream::Stream;
use app::protocol::{DetectorSettings, InputCodec, Stats};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Recorder chunks buffered toward the decoder (~3 s of 100 ms chunks). When full, the
/// socket stops reading, so a flood from the client turns into TCP backpressure.
const CHUNK_QUEUE: usize = 32;
/// Decoded frames buffered toward the overlay/encoder; a few frames absorb jitter.
const FRAME_QUEUE: usize = 4;
/// Frames buffered toward the encoder (~0.5 s at 30 fps); past that, frames are dropped
/// and counted rather than letting latency grow.
const ENCODER_QUEUE: usize = 15;
/// How long the decoder may take to flush after its input closes.
const DECODER_GRACE: Duration = Duration::from_secs(5);
/// How long the encoder may take to write its last segment and ENDLIST.
const ENCODER_GRACE: Duration = Duration::from_secs(10);

/// What the pipeline needs from the server: settings and how to make a detector.
#[derive(Clone)]
pub struct PipelineEnv {
    pub config: PipelineConfig,
    pub detector: DetectorFactory,
    /// Free disk space (MiB) a session needs to start and to go on.
    pub min_free_disk_mb: u64,
    /// Told when a session falls behind (new sessions then wait).
    pub capacity: Arc<Capacity>,
    /// Every session's supervisor (it reaps the session's ffmpeg children and detector
    /// thread), also of sessions whose socket dropped them: shutdown waits for them all.
    pub supervisors: TaskTracker,
}

/// The stream a session receives, as its Start message announced it.
#[derive(Debug, Clone, Copy)]
pub struct Media {
    pub codec: InputCodec,
    pub width: u32,
    pub height: u32,
}

/// Something the socket should hear about.
#[derive(Debug)]
pub enum SessionEvent {
    /// The first segment is listed; the stream can be played.
    PlaylistReady,
    /// The pipeline ended; `Err` if a stage failed.
    Ended(Result<(), ServerError>),
}

/// Live counters of one session.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub faces: AtomicU32,
    pub detect_micros: AtomicU64,
    pub segments: AtomicU64,
    pub detector_skipped: AtomicU64,
}

/// A running session pipeline.
pub struct Session {
    pub id: SessionId,
    pub dir: PathBuf,
    chunks: Option<mpsc::Sender<Bytes>>,
    events: mpsc::Receiver<SessionEvent>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    cut: CancellationToken,
    blur: Arc<AtomicBool>,
    detector: watch::Sender<DetectorSettings>,
    admission: Admission,
    _reservation: Reservation,
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
        blur: bool,
    ) -> Result<Self, ServerError> {
        let Media {
            codec,
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
        let (detector, detector_rx) = watch::channel(HaarSettings::from(&cfg.detector).tunable());
        let worker = DetectorWorker::started(
            env.detector.clone(),
            format!("detect-{}", &id.as_str()[..8]),
            Duration::from_secs(1) / cfg.detector.detect_fps.max(1),
            pool.clone(),
            detector_rx.clone(),
        )
        .await?;
        let (chunk_tx, chunk_rx) = mpsc::channel(CHUNK_QUEUE);
        let (frame_tx, frame_rx) = mpsc::channel(FRAME_QUEUE);
        let (enc_tx, enc_rx) = mpsc::channel(ENCODER_QUEUE);
        let decoder = Decoder::start(
            &cfg.ffmpeg,
            width,
            height,
            cfg.hls.frame_rate,
            Source::Pipe(chunk_rx, codec),
            frame_tx,
            pool.clone(),
        )?;
        let settings = HlsSettings::live(&cfg.hls, width, height);
        let (encoder, fragments) = Encoder::start(
            &cfg.ffmpeg,
            &settings,
            &EncoderOutput::Fragments,
            enc_rx,
            pool.clone(),
        )?;
        let (event_tx, events) = mpsc::channel(8);
        let keeper = SegmentKeeper::for_live(&dir, cfg.recording.max_secs, cfg.hls.segment_seconds);
        let store = keeper.records().then(|| SegmentStore {
            dir: dir.clone(),
            keeper,
        });
        let publisher = Publisher::start(
            fragments,
            cfg.packager_settings(),
            admission.stream.clone(),
            store,
        );
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let blur = Arc::new(AtomicBool::new(blur));
        let stage = Stage {
            path: FramePath::live(worker, cfg.path_settings(), blur.clone(), detector_rx),
            frames: frame_rx,
            encoder_input: enc_tx,
            counters: counters.clone(),
            capacity: env.capacity.clone(),
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
        env.supervisors.spawn(supervisor.run().in_current_span());
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
            blur,
            detector,
            admission,
            _reservation: reservation,
        })
    }

    /// Queues one recorder chunk for the decoder, waiting while the queue is full.
    /// Returns false when the pipeline no longer takes input.
    pub async fn push(&self, chunk: Bytes) -> bool {
        match &self.chunks {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        }
    }

    /// Closes the input: the decoder flushes, the encoder writes ENDLIST, and an
    /// [`SessionEvent::Ended`] follows.
    pub fn finish_input(&mut self) {
        self.chunks = None;
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

    /// The next pipeline event; `None` once the pipeline task is gone.
    pub async fn event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
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
    pub fn set_blur(&self, blur: bool) {
        self.blur.store(blur, Ordering::Relaxed);
    }

    /// Applies detector settings (already range-checked) from the next detection.
    pub fn set_detector(&self, settings: DetectorSettings) {
        self.detector.send_replace(settings);
    }

    /// The detector settings in force.
    pub fn detector_settings(&self) -> DetectorSettings {
        *self.detector.borrow()
    }

    /// The read-only viewer token of this session.
    pub fn viewer_token(&self) -> &str {
        self.admission.viewer_token()
    }

    /// The counters, for stats.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
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

/// The frame path between decoder and encoder, with the session's counters.
struct Stage {
    path: FramePath,
    frames: mpsc::Receiver<Frame>,
    encoder_input: mpsc::Sender<Frame>,
    counters: Arc<Counters>,
    capacity: Arc<Capacity>,
}

/// The encoder stopped taking frames.
struct EncoderGone;

impl Stage {
    /// Takes one decoded frame into the path (it leaves through [`Stage::release`]).
    fn accept(&mut self, frame: Frame) {
        self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::FRAMES, "stage" => "decode").increment(1);
        // A live path only hands the frame to the detector thread: it cannot fail.
        if let Err(e) = self.path.push(frame, Instant::now()) {
            tracing::warn!("frame path: {e}");
        }
    }

    /// Sends every frame that may leave the path to the encoder; frames the encoder has
    /// no room for are dropped and counted rather than queued.
    fn release(&mut self) -> Result<(), EncoderGone> {
        while let Some(out) = self.path.next_ready(Instant::now()) {
            self.send(out)?;
        }
        Ok(())
    }

    fn send(&mut self, out: Output) -> Result<(), EncoderGone> {
        let c = &self.counters;
        c.faces.store(out.faces as u32, Ordering::Relaxed);
        c.detect_micros.store(
            (self.path.detect_millis() * 1000.0) as u64,
            Ordering::Relaxed,
        );
        if let Some(worker) = self.path.worker() {
            c.detector_skipped.store(
                worker.counters().skipped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        if out.hidden_whole {
            ::metrics::counter!(metrics::FRAMES_HIDDEN).increment(1);
        }
        match self.encoder_input.try_send(out.frame) {
            Ok(()) => {
                c.frames_out.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!(metrics::FRAMES, "stage" => "encode").increment(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.frames_dropped.fetch_add(1, Ordering::Relaxed);
                self.capacity.note_lag();
                ::metrics::counter!(metrics::FRAMES_DROPPED, "stage" => "encode").increment(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EncoderGone),
        }
    }
}

/// Resolves when `detections` changes (never, without a live detector).
async fn detection(detections: &mut Option<watch::Receiver<Detection>>) {
    match detections {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The detector thread is gone: frames now leave at their deadlines.
                *detections = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline` (never for `None`).
pub(crate) async fn until(deadline: Option<impl Into<tokio::time::Instant>>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Drives one session's pipeline until it ends, then reports how.
struct Supervisor {
    stage: Stage,
    decoder: Decoder,
    encoder: Encoder,
    publisher: Publisher,
    /// The published stream, followed for progress (ready, segments, ended).
    stream: watch::Receiver<Arc<Stream>>,
    events: mpsc::Sender<SessionEvent>,
    /// Kill everything now (shutdown, a vanished client).
    cancel: CancellationToken,
    /// Stop decoding, finish the recording with what was encoded (a drain that overran).
    cut: CancellationToken,
    /// The session folder, and the free space (MiB) its disk must keep.
    dir: PathBuf,
    min_free_mb: u64,
}

impl Supervisor {
    async fn run(self) {
        let Supervisor {
            mut stage,
            mut decoder,
            mut encoder,
            publisher,
            mut stream,
            events,
            cancel,
            cut,
            dir,
            min_free_mb,
        } = self;
        let counters = stage.counters.clone();
        let mut failed = false;
        let mut was_cut = false;
        let mut disk_full = false;
        let mut ready = false;
        let mut decoding = true;
        let mut detections = stage.path.detections();
        loop {
            if !decoding && stage.path.waiting() == 0 {
                break; // the decoder ended and every frame has left
            }
            let deadline = stage.path.deadline();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = encoder.exited() => {
                    // The encoder must outlive its input; exiting now means it failed.
                    failed = true;
                    break;
                }
                _ = cut.cancelled(), if !was_cut => {
                    was_cut = true;
                    decoding = false;
                    decoder.stop();
                }
                changed = stream.changed() => {
                    if changed.is_err() {
                        break; // the session's stream is gone: nothing more to do
                    }
                    let segments = stream.borrow_and_update().produced;
                    if segments > 0 && !ready {
                        ready = true;
                        let _ = events.send(SessionEvent::PlaylistReady).await;
                    }
                    let before = counters.segments.swap(segments, Ordering::Relaxed);
                    if segments > before {
                        ::metrics::counter!(metrics::SEGMENTS).increment(segments - before);
                        if !disk_full && crate::disk::below(&dir, min_free_mb) {
                            // Stop before the disk is full: the publisher can still write
                            // the last segment and ENDLIST.
                            tracing::warn!("less than {min_free_mb} MiB free; ending the session");
                            disk_full = true;
                            was_cut = true;
                            decoding = false;
                            decoder.stop();
                        }
                    }
                }
                frame = stage.frames.recv(), if decoding => match frame {
                    Some(frame) => stage.accept(frame),
                    None => decoding = false, // decoder output ended: let the held frames out
                },
                _ = detection(&mut detections) => {}
                _ = until(deadline) => {}
            }
            if stage.release().is_err() {
                failed = true;
                break;
            }
        }
        let Stage {
            path,
            encoder_input,
            ..
        } = stage;
        drop(encoder_input); // encoder stdin closes → last segment + ENDLIST
                             // Joining the detector thread may wait for one detection; keep it off the executor.
        let join_detector = tokio::task::spawn_blocking(move || drop(path));
        if cancel.is_cancelled() || failed {
            // The input may still be open (the client is connected): the decoder would
            // never see EOF, so a failed or cancelled pipeline stops it at once.
            decoder.stop();
        }
        let stalled = encoder.stalled();
        let decoder_result = decoder.finish(DECODER_GRACE).await;
        let encoder_result = encoder.finish(ENCODER_GRACE).await;
        let _ = join_detector.await;
        // The encoder's output has ended: the publisher writes the last segment and ENDLIST.
        let published = publisher.finished().await;
        counters
            .segments
            .store(stream.borrow().produced, Ordering::Relaxed);
        // A cut decoder was killed on purpose: how it exited says nothing.
        let decoder_result = if was_cut { Ok(()) } else { decoder_result };
        let result = if cancel.is_cancelled() {
            Ok(())
        } else if disk_full {
            Err(ServerError::DiskFull {
                dir,
                min_mb: min_free_mb,
            })
        } else {
            match (encoder_result.and(published), decoder_result) {
                (Err(e), _) | (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(())) if failed => Err(stalled),
                (Ok(()), Ok(())) => Ok(()),
            }
        };
        if let Err(ServerError::ChildExit { stage, .. }) = &result {
            ::metrics::counter!(metrics::FFMPEG_FAILURES, "role" => stage.as_str()).increment(1);
        }
        let _ = events.send(SessionEvent::Ended(result)).await;
    }
}

/// Rates are averaged over this window: per-interval counts jump (frames arrive in 100 ms
/// recorder chunks), a 2-second average reads steady at the camera's rate.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Turns counters into the stats message, with rates averaged over [`RATE_WINDOW`].
pub struct StatsSampler {
    /// (when, frames in, frames out), oldest first, spanning at least the window.
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl StatsSampler {
    /// A sampler starting now.
    pub fn new() -> Self {
        StatsSampler {
            samples: std::collections::VecDeque::from([(Instant::now(), 0, 0)]),
        }
    }

    /// The stats now, rates over the last [`RATE_WINDOW`] (or since the start).
    pub fn sample(&mut self, c: &Counters) -> Stats {
        self.sample_at(c, Instant::now())
    }

    fn sample_at(&mut self, c: &Counters, now: Instant) -> Stats {
        let frames_in = c.frames_in.load(Ordering::Relaxed);
        let frames_out = c.frames_out.load(Ordering::Relaxed);
        // Keep the newest sample at least a window old as the base.
        while self.samples.len() > 1 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (then, base_in, base_out) = self.samples[0];
        let secs = now.duration_since(then).as_secs_f32().max(1e-3);
        let stats = Stats {
            fps_in: frames_in.saturating_sub(base_in) as f32 / secs,
            fps_out: frames_out.saturating_sub(base_out) as f32 / secs,
            frames_in,
            frames_out,
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            detector_skipped: c.detector_skipped.load(Ordering::Relaxed),
            faces: c.faces.load(Ordering::Relaxed),
            detect_ms: c.detect_micros.load(Ordering::Relaxed) as f32 / 1000.0,
            segments: c.segments.load(Ordering::Relaxed),
        };
        self.samples.push_back((now, frames_in, frames_out));
        stats
    }
}

impl Default for StatsSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::detector::FaceDetector;
    use crate::pipeline::frame::FaceBox;

    struct NoFaces;
    impl FaceDetector for NoFaces {
        fn detect(&mut self, _: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            Ok(vec![])
        }

        fn configure(&mut self, _: &DetectorSettings) {}
    }

    fn inline_stage(encoder_input: mpsc::Sender<Frame>, counters: Arc<Counters>) -> Stage {
        let settings = PipelineConfig::default().path_settings();
        let (_frame_tx, frames) = mpsc::channel(1);
        Stage {
            path: FramePath::inline(
                Box::new(NoFaces),
                settings,
                Arc::default(),
                DetectorSettings::default(),
            ),
            frames,
            encoder_input,
            counters,
            capacity: Arc::new(Capacity::new(None, 1, 100)),
        }
    }

    #[test]
    fn a_stalled_encoder_drops_and_counts_frames_instead_of_queueing_them() {
        // An encoder that never reads: its queue holds 2 frames.
        let (encoder_input, _encoder_output) = mpsc::channel(2);
        let counters = Arc::new(Counters::default());
        let mut stage = inline_stage(encoder_input, counters.clone());
        for _ in 0..10 {
            stage.accept(Frame::filled(8, 8, [1, 2, 3]));
            assert!(stage.release().is_ok());
        }
        assert_eq!(counters.frames_in.load(Ordering::Relaxed), 10);
        assert_eq!(counters.frames_out.load(Ordering::Relaxed), 2);
        assert_eq!(counters.frames_dropped.load(Ordering::Relaxed), 8);
        let stats = StatsSampler::new().sample(&counters);
        assert_eq!(
            (stats.frames_in, stats.frames_out, stats.frames_dropped),
            (10, 2, 8)
        );
    }

    #[test]
    fn rates_are_averaged_over_two_seconds() {
        let counters = Counters::default();
        let start = Instant::now();
        let mut sampler = StatsSampler {
            samples: std::collections::VecDeque::from([(start, 0, 0)]),
        };
        // Bursty arrivals: 45 frames in one half second, 15 in the next, repeating.
        let mut total = 0;
        let mut last = Stats::default();
        for i in 1..=12u32 {
            total += if i % 2 == 1 { 45 } else { 15 };
            counters.frames_in.store(total, Ordering::Relaxed);
            last = sampler.sample_at(&counters, start + Duration::from_millis(500) * i);
        }
        assert!((last.fps_in - 60.0).abs() < 8.0, "{}", last.fps_in);
    }

    #[test]
    fn a_gone_encoder_stops_the_stage() {
        let (encoder_input, encoder_output) = mpsc::channel(2);
        drop(encoder_output);
        let mut stage = inline_stage(encoder_input, Arc::default());
        stage.accept(Frame::filled(8, 8, [0, 0, 0]));
        assert!(stage.release().is_err());
    }
}
