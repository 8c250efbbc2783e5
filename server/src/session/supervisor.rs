//! What runs one session: the [`Supervisor`] task that drives decoder → frame path →
//! encoder → publisher until the pipeline ends and reports how, and the [`Stage`] between
//! decoder and encoder (detection, overlay, dropping what a stalled encoder cannot take).

use super::capacity::Capacity;
use super::deadline::until;
use super::stats::Counters;
use crate::error::ServerError;
use crate::hls::publisher::Publisher;
use crate::hls::stream::Stream;
use crate::metrics;
use crate::video::decoder::Decoder;
use crate::video::detector::Detection;
use crate::video::encoder::Encoder;
use crate::video::frame::Frame;
use crate::video::frame_path::{FramePath, Output};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Something the socket should hear about.
#[derive(Debug)]
pub enum SessionEvent {
    /// The first segment is listed; the stream can be played.
    PlaylistReady,
    /// The pipeline ended; `Err` if a stage failed.
    Ended(Result<(), ServerError>),
    /// One of the session's own deadlines passed ([`super::life`]): idle, or too long (its
    /// input is then closed already). A drain that overran is cut without a word.
    Due(super::life::Due),
}

/// How long the decoder may take to flush after its input closes.
const DECODER_GRACE: Duration = Duration::from_secs(5);
/// How long the encoder may take to write its last segment and ENDLIST.
const ENCODER_GRACE: Duration = Duration::from_secs(10);

/// The frame path between decoder and encoder, with the session's counters.
pub(super) struct Stage {
    pub(super) path: FramePath,
    pub(super) frames: mpsc::Receiver<Frame>,
    pub(super) encoder_input: mpsc::Sender<Frame>,
    pub(super) counters: Arc<Counters>,
    pub(super) capacity: Arc<Capacity>,
    /// Takes the channel thumbnails from the output (`None` for browser sessions).
    pub(super) thumbnails: Option<crate::video::thumbnail::Thumbnailer>,
    /// When coded frames passed each point (the latency budget).
    pub(super) clock: super::frame_times::FrameClock,
}

/// The encoder stopped taking frames.
struct EncoderGone;

/// How long a frame waits for room in a full encoder queue before it is dropped: an
/// encoder takes a 640×480 frame in 1–3 ms, so a burst drains well within it; an encoder
/// slower than real time costs the frame path at most this per frame, which still moves
/// 50 frames a second, faster than any camera it serves.
const BURST_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

impl Stage {
    /// Takes one decoded frame into the path (it leaves through [`Stage::release`]).
    fn accept(&mut self, frame: Frame) {
        self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::FRAMES, "stage" => "decode").increment(1);
        self.clock.decoded(&frame);
        // A live path only hands the frame to the detector thread: it cannot fail.
        if let Err(e) = self.path.push(frame, Instant::now()) {
            tracing::warn!("frame path: {e}");
        }
    }

    /// Sends every frame that may leave the path to the encoder. A full encoder queue is
    /// waited on for at most [`BURST_WAIT`]: a burst (a stalled connection catching up, a
    /// resumed session's resent chunks) is encoded whole, so the recording keeps every
    /// frame; an encoder slower than that is really behind, and the frame is dropped and
    /// counted rather than queued.
    async fn release(&mut self) -> Result<(), EncoderGone> {
        while let Some(out) = self.path.next_ready(Instant::now()) {
            self.send(out).await?;
        }
        Ok(())
    }

    async fn send(&mut self, out: Output) -> Result<(), EncoderGone> {
        let c = &self.counters;
        c.faces.store(out.faces as u32, Ordering::Relaxed);
        c.faces_small
            .store(out.faces_small as u32, Ordering::Relaxed);
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
        if let Some(thumbnails) = &mut self.thumbnails {
            thumbnails.offer(&out.frame, Instant::now());
        }
        let sent = match self.encoder_input.try_send(out.frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) => {
                match tokio::time::timeout(BURST_WAIT, self.encoder_input.send(frame)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(_)) => return Err(EncoderGone),
                    Err(_) => false,
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(EncoderGone),
        };
        self.clock.left_path(sent);
        if sent {
            c.frames_out.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(metrics::FRAMES, "stage" => "encode").increment(1);
        } else {
            c.frames_dropped.fetch_add(1, Ordering::Relaxed);
            self.capacity.note_lag();
            ::metrics::counter!(metrics::FRAMES_DROPPED, "stage" => "encode").increment(1);
        }
        Ok(())
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

/// Why a running pipeline stopped decoding before its input ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// The session asked (a drain that overran): finish with what was encoded.
    Asked,
    /// The disk fell below the free space sessions need.
    DiskFull,
}

/// Where one pipeline's run stands: the whole policy of its end in one value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Frames come in from the decoder.
    Running,
    /// No more frames come in (the input ended, or it was cut): the held frames leave.
    Draining { cut: Option<Cut> },
}

/// How the run loop ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Every frame left the path after the decoder's output ended.
    Drained { cut: Option<Cut> },
    /// Killed from outside (shutdown, a vanished client).
    Cancelled,
    /// The encoder exited or stopped taking frames before its input closed.
    EncoderFailed,
    /// Nobody follows the stream any more.
    StreamGone,
}

/// Drives one session's pipeline until it ends, then reports how.
pub(super) struct Supervisor {
    pub(super) stage: Stage,
    pub(super) decoder: Decoder,
    pub(super) encoder: Encoder,
    pub(super) publisher: Option<Publisher>,
    /// The published stream, followed for progress (ready, segments, ended).
    pub(super) stream: watch::Receiver<Arc<Stream>>,
    pub(super) events: mpsc::Sender<SessionEvent>,
    /// Kill everything now (shutdown, a vanished client).
    pub(super) cancel: CancellationToken,
    /// Stop decoding, finish the recording with what was encoded (a drain that overran).
    pub(super) cut: CancellationToken,
    /// The session folder, and the free space (MiB) its disk must keep.
    pub(super) dir: PathBuf,
    pub(super) min_free_mb: u64,
}

impl Supervisor {
    pub(super) async fn run(mut self) {
        let outcome = self.run_loop().await;
        let events = self.events.clone();
        let result = self.finish(outcome).await;
        if let Err(ServerError::ChildExit { role, .. }) = &result {
            ::metrics::counter!(metrics::FFMPEG_FAILURES, "role" => role.as_str()).increment(1);
        }
        let _ = events.send(SessionEvent::Ended(result)).await;
    }

    /// Moves frames until the pipeline is over one way or another.
    async fn run_loop(&mut self) -> Outcome {
        let mut state = State::Running;
        let mut ready = false;
        let mut detections = self.stage.path.detections();
        loop {
            if let State::Draining { cut } = state {
                if self.stage.path.waiting() == 0 {
                    return Outcome::Drained { cut };
                }
            }
            let deadline = self.stage.path.deadline();
            let running = state == State::Running;
            let cuttable = matches!(state, State::Running | State::Draining { cut: None });
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Outcome::Cancelled,
                // The encoder must outlive its input; exiting now means it failed.
                _ = self.encoder.exited() => return Outcome::EncoderFailed,
                _ = self.cut.cancelled(), if cuttable => {
                    state = self.cut_now(Cut::Asked);
                }
                changed = self.stream.changed() => {
                    if changed.is_err() {
                        return Outcome::StreamGone;
                    }
                    let (segments, frames) = {
                        let stream = self.stream.borrow_and_update();
                        (stream.produced, stream.frames)
                    };
                    self.stage.clock.published(frames, &self.stage.counters.frame_times);
                    if segments > 0 && !ready {
                        ready = true;
                        let _ = self.events.send(SessionEvent::PlaylistReady).await;
                    }
                    let before = self.stage.counters.segments.swap(segments, Ordering::Relaxed);
                    if segments > before {
                        ::metrics::counter!(metrics::SEGMENTS).increment(segments - before);
                        if cuttable && crate::disk::below(&self.dir, self.min_free_mb) {
                            // Stop before the disk is full: the publisher can still write
                            // the last segment and ENDLIST.
                            tracing::warn!(
                                "less than {} MiB free; ending the session",
                                self.min_free_mb
                            );
                            state = self.cut_now(Cut::DiskFull);
                        }
                    }
                }
                frame = self.stage.frames.recv(), if running => match frame {
                    Some(frame) => self.stage.accept(frame),
                    // The decoder's output ended: let the held frames out.
                    None => state = State::Draining { cut: None },
                },
                _ = detection(&mut detections) => {}
                _ = until(deadline) => {}
            }
            if self.stage.release().await.is_err() {
                return Outcome::EncoderFailed;
            }
        }
    }

    /// Stops decoding for `cut`: the frames already decoded still leave.
    fn cut_now(&mut self, cut: Cut) -> State {
        self.decoder.stop();
        State::Draining { cut: Some(cut) }
    }

    /// Ends every part after `outcome` (the recording is finished where possible) and
    /// says how the session ended.
    async fn finish(self, outcome: Outcome) -> Result<(), ServerError> {
        let Supervisor {
            stage,
            mut decoder,
            encoder,
            publisher,
            stream,
            dir,
            min_free_mb,
            ..
        } = self;
        let Stage {
            path,
            encoder_input,
            counters,
            ..
        } = stage;
        drop(encoder_input); // encoder stdin closes → last segment + ENDLIST
                             // Joining the detector thread may wait for one detection; keep it off the executor.
        let join_detector = tokio::task::spawn_blocking(move || drop(path));
        if matches!(outcome, Outcome::Cancelled | Outcome::EncoderFailed) {
            // The input may still be open (the client is connected): the decoder would
            // never see EOF, so a failed or cancelled pipeline stops it at once.
            decoder.stop();
        }
        let stalled = encoder.stalled();
        let decoder_result = decoder.finish(DECODER_GRACE).await;
        let encoder_result = encoder.finish(ENCODER_GRACE).await;
        let _ = join_detector.await;
        // The encoder's output has ended: the publisher writes the last segment and ENDLIST.
        let published = match publisher {
            Some(publisher) => publisher.finished().await,
            None => Ok(()),
        };
        counters
            .segments
            .store(stream.borrow().produced, Ordering::Relaxed);
        match outcome {
            Outcome::Cancelled => Ok(()),
            Outcome::Drained {
                cut: Some(Cut::DiskFull),
            } => Err(ServerError::DiskFull {
                dir,
                min_mb: min_free_mb,
            }),
            // A cut decoder was killed on purpose: how it exited says nothing.
            Outcome::Drained {
                cut: Some(Cut::Asked),
            } => encoder_result.and(published),
            Outcome::Drained { cut: None } | Outcome::StreamGone => {
                encoder_result.and(published).and(decoder_result)
            }
            Outcome::EncoderFailed => encoder_result
                .and(published)
                .and(decoder_result)
                .and(Err(stalled)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;
    use crate::fake_ffmpeg::{FakeFfmpeg, BYTES_PER_FRAME};
    use crate::session::stats::StatsSampler;
    use crate::video::detector::FaceDetector;
    use crate::video::detector::Tuning;
    use crate::video::frame::FaceBox;
    use crate::video::frame_path::PathSettings;

    struct NoFaces;
    impl FaceDetector for NoFaces {
        fn detect(&mut self, _: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            Ok(vec![])
        }

        fn configure(&mut self, _: &Tuning) {}
    }

    fn inline_stage(encoder_input: mpsc::Sender<Frame>, counters: Arc<Counters>) -> Stage {
        let settings = PathSettings::from(&PipelineConfig::default());
        let (_frame_tx, frames) = mpsc::channel(1);
        Stage {
            path: FramePath::inline(
                Box::new(NoFaces),
                settings,
                Arc::default(),
                Tuning::default(),
            ),
            frames,
            encoder_input,
            counters,
            capacity: Arc::new(Capacity::new(None, 1, 100)),
            thumbnails: None,
            clock: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_encoder_drops_and_counts_frames_instead_of_queueing_them() {
        // An encoder that never reads: its queue holds 2 frames.
        let (encoder_input, _encoder_output) = mpsc::channel(2);
        let counters = Arc::new(Counters::default());
        let mut stage = inline_stage(encoder_input, counters.clone());
        for _ in 0..10 {
            stage.accept(Frame::filled(8, 8, [1, 2, 3]));
            let started = tokio::time::Instant::now();
            assert!(stage.release().await.is_ok());
            assert!(
                started.elapsed() <= BURST_WAIT,
                "a frame waits at most BURST_WAIT"
            );
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

    #[tokio::test(start_paused = true)]
    async fn a_gone_encoder_stops_the_stage() {
        let (encoder_input, encoder_output) = mpsc::channel(2);
        drop(encoder_output);
        let mut stage = inline_stage(encoder_input, Arc::default());
        stage.accept(Frame::filled(8, 8, [0, 0, 0]));
        assert!(stage.release().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_for_a_busy_encoder_instead_of_losing_frames() {
        // An encoder that takes a frame every 2 ms behind a queue of 2: a burst of 30
        // decoded frames all reach it.
        let (encoder_input, mut encoder_output) = mpsc::channel(2);
        let counters = Arc::new(Counters::default());
        let mut stage = inline_stage(encoder_input, counters.clone());
        let encoder = tokio::spawn(async move {
            let mut taken = 0;
            while encoder_output.recv().await.is_some() {
                taken += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            taken
        });
        for _ in 0..30 {
            stage.accept(Frame::filled(8, 8, [1, 2, 3]));
            assert!(stage.release().await.is_ok());
        }
        drop(stage);
        assert_eq!(encoder.await.unwrap(), 30);
        assert_eq!(counters.frames_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(counters.frames_out.load(Ordering::Relaxed), 30);
    }

    /// A supervised pipeline on fake ffmpeg children, and the handles a session holds.
    struct Run {
        chunks: Option<mpsc::Sender<bytes::Bytes>>,
        events: mpsc::Receiver<SessionEvent>,
        cancel: CancellationToken,
        cut: CancellationToken,
        stream: watch::Receiver<Arc<Stream>>,
        counters: Arc<Counters>,
        running: Arc<std::sync::atomic::AtomicUsize>,
        _stream: watch::Sender<Arc<Stream>>,
    }

    fn supervised(fake: FakeFfmpeg, min_free_mb: u64) -> Run {
        use crate::hls::packager::PackagerSettings;
        use crate::pipeline::{Pipeline, Queues, Sink};
        use crate::source::Source;
        use crate::video::encoder::EncoderSettings;
        use crate::video::frame::FramePool;
        let running = fake.running.clone();
        let (chunk_tx, chunks) = mpsc::channel(64);
        let (stream_tx, stream) = watch::channel(Arc::new(Stream::new(Default::default())));
        let pipeline = Pipeline::start(
            &fake,
            Source::Chunks {
                chunks,
                codec: crate::source::Codec::Vp9,
            },
            &EncoderSettings {
                width: 16,
                height: 16,
                fps: crate::video::frame::FrameRate::whole(30),
                segment_seconds: 1.0,
                first_segment_frames: 0,
                preset: "ultrafast".into(),
                privacy: None,
            },
            Sink::Live {
                packager: PackagerSettings {
                    segment_seconds: 1.0,
                    part_seconds: 0.1,
                    hold_back_parts: 3,
                    window: 6,
                    clock_origin: None,
                },
                stream: stream_tx.clone(),
                store: None,
            },
            Queues {
                frames: 4,
                encoder: 64,
            },
            &FramePool::default(),
        )
        .unwrap();
        let counters = Arc::new(Counters::default());
        let mut stage = inline_stage(pipeline.encoder_input, counters.clone());
        stage.frames = pipeline.frames;
        let (events_tx, events) = mpsc::channel(8);
        let (cancel, cut) = (CancellationToken::new(), CancellationToken::new());
        let supervisor = Supervisor {
            stage,
            decoder: pipeline.decoder,
            encoder: pipeline.encoder,
            publisher: pipeline.publisher,
            stream: stream.clone(),
            events: events_tx,
            cancel: cancel.clone(),
            cut: cut.clone(),
            dir: std::env::temp_dir(),
            min_free_mb,
        };
        tokio::spawn(supervisor.run());
        Run {
            chunks: Some(chunk_tx),
            events,
            cancel,
            cut,
            stream,
            counters,
            running,
            _stream: stream_tx,
        }
    }

    impl Run {
        /// Sends the input of `frames` decoded frames.
        async fn send_frames(&self, frames: usize) {
            let tx = self.chunks.as_ref().unwrap();
            for _ in 0..frames {
                tx.send(vec![0u8; BYTES_PER_FRAME].into()).await.unwrap();
            }
        }

        /// The next event, within 60 s of (paused) time.
        async fn event(&mut self) -> SessionEvent {
            tokio::time::timeout(Duration::from_secs(60), self.events.recv())
                .await
                .expect("an event within 60 s")
                .expect("the supervisor reports before it ends")
        }

        /// The end of the run, skipping the ready event.
        async fn ended(&mut self) -> Result<(), ServerError> {
            loop {
                if let SessionEvent::Ended(result) = self.event().await {
                    assert_eq!(self.running.load(Ordering::SeqCst), 0, "children reaped");
                    return result;
                }
            }
        }

        async fn ready(&mut self) {
            assert!(matches!(self.event().await, SessionEvent::PlaylistReady));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_input_drains_every_frame_and_ends_the_playlist() {
        let mut run = supervised(FakeFfmpeg::default(), 0);
        run.send_frames(45).await;
        run.ready().await;
        run.chunks = None; // the client's Stop
        assert!(run.ended().await.is_ok());
        assert_eq!(run.counters.frames_out.load(Ordering::Relaxed), 45);
        assert_eq!(run.counters.frames_dropped.load(Ordering::Relaxed), 0);
        let stream = run.stream.borrow().clone();
        assert!(stream.render().contains("#EXT-X-ENDLIST"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_finishes_the_recording_while_the_input_is_still_open() {
        let mut run = supervised(FakeFfmpeg::default(), 0);
        run.send_frames(45).await;
        run.ready().await;
        run.cut.cancel();
        // The input stays open (the client is still connected): the cut ends it anyway.
        assert!(run.ended().await.is_ok());
        assert!(run.chunks.is_some());
        assert!(run.stream.borrow().render().contains("#EXT-X-ENDLIST"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_disk_ends_the_session_after_its_first_segment() {
        let mut run = supervised(FakeFfmpeg::default(), u64::MAX);
        run.send_frames(45).await;
        run.ready().await;
        let result = run.ended().await;
        assert!(
            matches!(result, Err(ServerError::DiskFull { .. })),
            "{result:?}"
        );
        assert!(run.stream.borrow().render().contains("#EXT-X-ENDLIST"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_encoder_that_dies_fails_the_session() {
        let fake = FakeFfmpeg {
            encoder_dies_after: Some(5),
            ..Default::default()
        };
        let mut run = supervised(fake, 0);
        run.send_frames(20).await;
        let result = run.ended().await;
        assert!(
            matches!(
                result,
                Err(ServerError::ChildExit {
                    role: crate::error::Role::Encoder,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_kills_both_children_at_once() {
        let mut run = supervised(FakeFfmpeg::default(), 0);
        run.send_frames(5).await;
        run.cancel.cancel();
        assert!(run.ended().await.is_ok());
    }
}
