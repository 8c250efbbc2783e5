//! The detector thread of one session: a one-frame mailbox (newest frame wins, older ones
//! are skipped and counted), an optional rate cap, and the latest result published on a
//! watch channel.

use super::{DetectorFactory, FaceDetector};
use crate::error::ServerError;
use crate::metrics;
use crate::video::detector::Tuning;
use crate::video::frame::{FaceBox, Frame, FramePool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The latest detection result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    /// Number of the frame the faces were found in (as given to [`DetectorWorker::offer`]).
    pub seq: u64,
    /// Faces found.
    pub boxes: Vec<FaceBox>,
    /// Faint candidates (hidden in privacy mode, not boxed).
    pub faint: Vec<FaceBox>,
    /// How long the detection took, in milliseconds.
    pub millis: f32,
}

/// Counters the detector thread keeps.
#[derive(Debug, Default)]
pub struct DetectorCounters {
    /// Detections run.
    pub runs: AtomicU64,
    /// Frames replaced in the slot before the detector took them.
    pub skipped: AtomicU64,
}

#[derive(Default)]
struct SlotState {
    /// The newest frame not yet taken, with its number.
    frame: Option<(u64, Frame)>,
    /// Detect the pending frame without waiting out the rate cap (a scene cut: nothing is
    /// known about the new shot's faces).
    urgent: bool,
    /// While this is set, there is no rate cap at all (privacy mode: every frame the
    /// detector can take, so no face moves far between two detections).
    uncap: Option<Arc<std::sync::atomic::AtomicBool>>,
    closed: bool,
}

/// A one-frame mailbox: a new frame replaces an unread one (newest wins).
#[derive(Default)]
struct LatestSlot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

/// The detector thread of one session. Dropping it closes the slot and joins the thread.
pub struct DetectorWorker {
    slot: Arc<LatestSlot>,
    pool: FramePool,
    counters: Arc<DetectorCounters>,
    results: watch::Receiver<Detection>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DetectorWorker {
    /// [`DetectorWorker::started`] for unit tests outside an async runtime: waits by
    /// blocking this thread.
    #[cfg(test)]
    pub fn start(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        pool: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        let (worker, ready) = Self::spawn(factory, name, min_interval, pool, settings)?;
        worker.when(ready.blocking_recv())
    }

    /// Starts the thread and awaits the detector made on it by `factory` (the model loads in
    /// ~0.1 s) without holding an async worker thread; a factory failure is returned here,
    /// before any frame flows.
    pub async fn started(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        pool: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<Self, ServerError> {
        let (worker, ready) = Self::spawn(factory, name, min_interval, pool, settings)?;
        worker.when(ready.await)
    }

    /// This worker once its thread reported whether the detector was made.
    fn when(
        self,
        ready: Result<Result<(), ServerError>, oneshot::error::RecvError>,
    ) -> Result<Self, ServerError> {
        match ready {
            Ok(Ok(())) => Ok(self),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ServerError::Detector("detector thread died".into())),
        }
    }

    /// Spawns the thread that makes the detector and runs it; the receiver says whether
    /// making it worked.
    fn spawn(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        pool: FramePool,
        settings: watch::Receiver<Tuning>,
    ) -> Result<(Self, oneshot::Receiver<Result<(), ServerError>>), ServerError> {
        let slot = Arc::new(LatestSlot::default());
        let counters = Arc::new(DetectorCounters::default());
        let (tx, results) = watch::channel(Detection::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_slot = slot.clone();
        let thread_counters = counters.clone();
        let thread_pool = pool.clone();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _enter = span.enter();
                let mut detector = match factory() {
                    Ok(d) => {
                        let _ = ready_tx.send(Ok(()));
                        d
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                detect_loop(
                    detector.as_mut(),
                    &thread_slot,
                    &thread_counters,
                    &tx,
                    min_interval,
                    &thread_pool,
                    settings,
                );
            })
            .map_err(|source| ServerError::Thread {
                what: "the detector thread",
                source,
            })?;
        let worker = DetectorWorker {
            slot,
            pool,
            counters,
            results,
            thread: Some(thread),
        };
        Ok((worker, ready_rx))
    }

    /// Hands frame number `seq` to the detector; an unread older frame is dropped
    /// (counted). An `urgent` frame (the first of a new shot) skips the rate cap and is
    /// not replaced: the frames after it wait for it instead.
    pub fn offer(&self, frame: &Frame, seq: u64, urgent: bool) {
        let Ok(mut state) = self.slot.state.lock() else {
            return;
        };
        if state.urgent && state.frame.is_some() {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(metrics::FRAMES_DROPPED, "stage" => "detect").increment(1);
            return;
        }
        state.urgent |= urgent;
        match &mut state.frame {
            Some((pending_seq, pending)) => {
                *pending_seq = seq;
                // Reuse the unread frame's buffer rather than allocating.
                pending.data.clear();
                pending.data.extend_from_slice(&frame.data);
                pending.width = frame.width;
                pending.height = frame.height;
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!(metrics::FRAMES_DROPPED, "stage" => "detect").increment(1);
            }
            None => state.frame = Some((seq, frame.copy_in(&self.pool))),
        }
        drop(state);
        self.slot.ready.notify_one();
    }

    /// Lifts the rate cap while `flag` is set (privacy mode).
    pub fn uncap_while(&self, flag: Arc<std::sync::atomic::AtomicBool>) {
        if let Ok(mut state) = self.slot.state.lock() {
            state.uncap = Some(flag);
        }
        self.slot.ready.notify_one();
    }

    /// The latest published detection.
    pub fn latest(&self) -> Detection {
        self.results.borrow().clone()
    }

    /// A receiver that wakes when a detection is published.
    pub fn subscribe(&self) -> watch::Receiver<Detection> {
        self.results.clone()
    }

    /// The thread's counters.
    pub fn counters(&self) -> &Arc<DetectorCounters> {
        &self.counters
    }
}

impl Drop for DetectorWorker {
    fn drop(&mut self) {
        if let Ok(mut state) = self.slot.state.lock() {
            state.closed = true;
        }
        self.slot.ready.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The frame size the detector warms up on (a 4:3 camera's; another size costs the network
/// a second allocation, no more).
const WARM_UP: (u32, u32) = (640, 480);

#[allow(clippy::too_many_arguments)]
fn detect_loop(
    detector: &mut dyn FaceDetector,
    slot: &LatestSlot,
    counters: &DetectorCounters,
    tx: &watch::Sender<Detection>,
    min_interval: Duration,
    pool: &FramePool,
    mut settings: watch::Receiver<Tuning>,
) {
    detector.configure(&settings.borrow_and_update());
    // A network's first run allocates its layers (CenterFace: ~0.1 s more than a normal
    // detection). Run it now, while the session is still starting, so the first frame's
    // detection — which the first boxes wait for — is a normal one. Its result is not
    // published.
    let _ = detector.detect(&Frame::filled(WARM_UP.0, WARM_UP.1, [128, 128, 128]));
    let mut not_before = Instant::now();
    loop {
        let (seq, frame) = {
            let Ok(mut state) = slot.state.lock() else {
                return;
            };
            loop {
                if state.closed {
                    return;
                }
                let now = Instant::now();
                let uncapped = state
                    .uncap
                    .as_ref()
                    .is_some_and(|u| u.load(Ordering::Relaxed));
                if now < not_before && !state.urgent && !uncapped {
                    // Rate cap: wait out the interval (frames arriving meanwhile replace
                    // each other), waking early only to close.
                    state = match slot.ready.wait_timeout(state, not_before - now) {
                        Ok((s, _)) => s,
                        Err(_) => return,
                    };
                    continue;
                }
                if let Some(pending) = state.frame.take() {
                    state.urgent = false;
                    break pending;
                }
                state = match slot.ready.wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        };
        // A closed settings channel (its session is ending) just keeps the last settings.
        if settings.has_changed().unwrap_or(false) {
            detector.configure(&settings.borrow_and_update());
        }
        let started = Instant::now();
        not_before = started + min_interval;
        match detector.detect_all(&frame) {
            Ok(found) => {
                let took = started.elapsed();
                ::metrics::counter!(metrics::FRAMES, "stage" => "detect").increment(1);
                ::metrics::histogram!(metrics::DETECT_SECONDS).record(took.as_secs_f64());
                let millis = took.as_secs_f32() * 1000.0;
                let _ = tx.send(Detection {
                    seq,
                    boxes: found.sure,
                    faint: found.faint,
                    millis,
                });
                // Counted after publishing, so a reader that sees the count sees the result.
                counters.runs.fetch_add(1, Ordering::Relaxed);
            }
            // Nothing is published: frames waiting on this detection leave at their
            // deadline, and privacy mode hides what no detection covered.
            Err(e) => tracing::warn!("face detection failed: {e}"),
        }
        pool.give(frame.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings that never change.
    fn no_settings() -> watch::Receiver<Tuning> {
        watch::channel(Tuning::default()).1
    }

    /// Reports one box per call whose x is the frame's first byte and whose width is the
    /// configured smallest face, after a delay.
    struct Marker(Duration, u32);
    impl FaceDetector for Marker {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            std::thread::sleep(self.0);
            Ok(vec![FaceBox {
                x: frame.data[0] as i32,
                y: 0,
                width: self.1 as i32,
                height: 1,
            }])
        }

        fn configure(&mut self, settings: &Tuning) {
            self.1 = settings.min_face;
        }
    }

    fn wait_for(worker: &DetectorWorker, pred: impl Fn(&Detection) -> bool) -> Detection {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = worker.latest();
            if pred(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "detector never produced the expected result"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn newest_frame_wins_and_skips_are_counted() {
        let factory: DetectorFactory =
            Arc::new(
                || Ok(Box::new(Marker(Duration::from_millis(50), 0)) as Box<dyn FaceDetector>),
            );
        let worker = DetectorWorker::start(
            factory,
            "test-detector".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        for i in 1..=20u8 {
            worker.offer(&Frame::filled(4, 4, [i, 0, 0]), u64::from(i), false);
        }
        let d = wait_for(&worker, |d| d.boxes.first().map(|b| b.x) == Some(20));
        assert_eq!(d.boxes.len(), 1);
        let c = worker.counters().clone();
        let total = || c.runs.load(Ordering::Relaxed) + c.skipped.load(Ordering::Relaxed);
        wait_for(&worker, |_| total() >= 20);
        let runs = c.runs.load(Ordering::Relaxed);
        let skipped = c.skipped.load(Ordering::Relaxed);
        assert!(
            runs < 20,
            "the slow detector should not have seen every frame ({runs})"
        );
        assert_eq!(
            runs + skipped,
            20,
            "every frame is either detected or counted as skipped"
        );
    }

    #[test]
    fn detections_are_capped_at_the_configured_rate() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        let interval = Duration::from_millis(200);
        let worker = DetectorWorker::start(
            factory,
            "capped".into(),
            interval,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        let started = Instant::now();
        for i in 1..=3u8 {
            let runs = worker.counters().runs.load(Ordering::Relaxed);
            worker.offer(&Frame::filled(2, 2, [i, 0, 0]), u64::from(i), false);
            wait_for(&worker, |_| {
                worker.counters().runs.load(Ordering::Relaxed) > runs
            });
        }
        // Three detections need at least two full intervals between them.
        assert!(started.elapsed() >= interval * 2, "{:?}", started.elapsed());
    }

    #[test]
    fn results_carry_their_frame_number_and_urgent_frames_skip_the_rate_cap() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        // An interval far beyond the test's deadline: only urgency can get a second run.
        let worker = DetectorWorker::start(
            factory,
            "urgent".into(),
            Duration::from_secs(3600),
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        worker.offer(&Frame::filled(2, 2, [7, 0, 0]), 70, false);
        let first = wait_for(&worker, |d| d.seq == 70);
        assert_eq!(first.boxes[0].x, 7);
        worker.offer(&Frame::filled(2, 2, [8, 0, 0]), 80, true);
        let second = wait_for(&worker, |d| d.seq == 80);
        assert_eq!(second.boxes[0].x, 8);
    }

    #[test]
    fn an_urgent_frame_is_not_replaced_by_newer_ones() {
        let factory: DetectorFactory = Arc::new(|| {
            Ok(Box::new(Marker(Duration::from_millis(100), 0)) as Box<dyn FaceDetector>)
        });
        let worker = DetectorWorker::start(
            factory,
            "sticky".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .unwrap();
        worker.offer(&Frame::filled(2, 2, [1, 0, 0]), 1, false);
        // While frame 1 waits or is detected (100 ms), the first frame of a new shot
        // arrives, then a newer frame: the new shot's first frame is detected next.
        worker.offer(&Frame::filled(2, 2, [2, 0, 0]), 2, true);
        worker.offer(&Frame::filled(2, 2, [3, 0, 0]), 3, false);
        let d = wait_for(&worker, |d| d.seq >= 2);
        assert_eq!((d.seq, d.boxes[0].x), (2, 2));
    }

    #[test]
    fn settings_changed_live_apply_from_the_next_detection() {
        let factory: DetectorFactory =
            Arc::new(|| Ok(Box::new(Marker(Duration::ZERO, 0)) as Box<dyn FaceDetector>));
        let (tx, rx) = watch::channel(Tuning::default());
        let worker = DetectorWorker::start(
            factory,
            "tuned".into(),
            Duration::ZERO,
            FramePool::default(),
            rx,
        )
        .unwrap();
        let detect = |v: u8| {
            let runs = worker.counters().runs.load(Ordering::Relaxed);
            worker.offer(&Frame::filled(2, 2, [v, 0, 0]), u64::from(v), false);
            wait_for(&worker, |_| {
                worker.counters().runs.load(Ordering::Relaxed) > runs
            })
        };
        let first = detect(1);
        assert_eq!(first.boxes[0].width, 48, "the initial settings are applied");
        tx.send_replace(Tuning {
            min_face: 200,
            ..Default::default()
        });
        let next = detect(2);
        assert_eq!(next.boxes[0].width, 200);
    }

    #[test]
    fn a_failing_factory_is_reported_at_start() {
        let factory: DetectorFactory = Arc::new(|| Err(ServerError::Detector("no model".into())));
        assert!(DetectorWorker::start(
            factory,
            "bad".into(),
            Duration::ZERO,
            FramePool::default(),
            no_settings(),
        )
        .is_err());
    }
}
