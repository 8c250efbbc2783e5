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

/// Drives one session's pipeline until it ends, then reports how.
pub(super) struct Supervisor {
    pub(super) stage: Stage,
    pub(super) decoder: Decoder,
    pub(super) encoder: Encoder,
    pub(super) publisher: Publisher,
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
    pub(super) async fn run(self) {
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
        if let Err(ServerError::ChildExit { role, .. }) = &result {
            ::metrics::counter!(metrics::FFMPEG_FAILURES, "role" => role.as_str()).increment(1);
        }
        let _ = events.send(SessionEvent::Ended(result)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;
    use crate::session::stats::StatsSampler;
    use crate::video::detector::FaceDetector;
    use crate::video::frame::FaceBox;
    use crate::video::frame_path::PathSettings;
    use app::protocol::DetectorSettings;

    struct NoFaces;
    impl FaceDetector for NoFaces {
        fn detect(&mut self, _: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            Ok(vec![])
        }

        fn configure(&mut self, _: &DetectorSettings) {}
    }

    fn inline_stage(encoder_input: mpsc::Sender<Frame>, counters: Arc<Counters>) -> Stage {
        let settings = PathSettings::from(&PipelineConfig::default());
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
    fn a_gone_encoder_stops_the_stage() {
        let (encoder_input, encoder_output) = mpsc::channel(2);
        drop(encoder_output);
        let mut stage = inline_stage(encoder_input, Arc::default());
        stage.accept(Frame::filled(8, 8, [0, 0, 0]));
        assert!(stage.release().is_err());
    }
}
