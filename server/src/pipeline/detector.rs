//! Face detection beside the frame path: a [`FaceDetector`] runs on its own thread over the
//! newest frame only (older ones are skipped and counted) and publishes the latest boxes,
//! tagged with the number of the frame they were found in.

use super::frame::{FaceBox, Frame, FramePool};
use crate::config::{DetectorKind, PipelineConfig};
use crate::error::ServerError;
use crate::metrics;
use app::protocol::DetectorSettings;
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What one detection found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// Faces at the detector's threshold: these are boxed.
    pub sure: Vec<FaceBox>,
    /// Candidates just under it: not boxed, but privacy mode hides them too.
    pub faint: Vec<FaceBox>,
}

/// Finds faces in a frame.
pub trait FaceDetector: Send {
    /// Boxes of the faces in `frame`, in full-frame pixels.
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError>;

    /// The faces and, where the detector has scores, the faint candidates under its
    /// threshold (by default none).
    fn detect_all(&mut self, frame: &Frame) -> Result<Found, ServerError> {
        Ok(Found {
            sure: self.detect(frame)?,
            faint: Vec::new(),
        })
    }

    /// Applies settings changed live from the page (already range-checked). Detectors
    /// apply what they have: the Haar cascade all three (the smallest face bounds its
    /// search); CenterFace none. The frame path draws only faces of at least the smallest
    /// face size, whatever the detector.
    fn configure(&mut self, settings: &DetectorSettings);
}

/// Makes a detector on the detector thread (OpenCV objects stay on the thread that made them).
pub type DetectorFactory =
    Arc<dyn Fn() -> Result<Box<dyn FaceDetector>, ServerError> + Send + Sync>;

/// Haar cascade settings.
#[derive(Debug, Clone)]
pub struct HaarSettings {
    /// Width of the grey image the cascade scans.
    pub detect_width: u32,
    /// Pyramid scale step.
    pub scale_factor: f64,
    /// Neighbouring hits needed.
    pub min_neighbors: i32,
    /// Smallest face, full-frame pixels.
    pub min_face: u32,
    /// OpenCV threads per detection (0 = OpenCV's default).
    pub threads: i32,
}

impl HaarSettings {
    /// The live-tunable part of these settings.
    pub fn tunable(&self) -> DetectorSettings {
        DetectorSettings {
            scale_factor: self.scale_factor as f32,
            min_neighbors: self.min_neighbors.max(0) as u32,
            min_face: self.min_face,
        }
    }
}

impl From<&PipelineConfig> for HaarSettings {
    fn from(c: &PipelineConfig) -> Self {
        HaarSettings {
            detect_width: c.detect_width,
            scale_factor: c.scale_factor,
            min_neighbors: c.min_neighbors,
            min_face: c.min_face,
            threads: c.opencv_threads,
        }
    }
}

/// OpenCV's Haar frontal-face cascade on a downscaled, equalised grey frame.
pub struct HaarDetector {
    cascade: CascadeClassifier,
    settings: HaarSettings,
    grey: Mat,
    small: Mat,
    equalised: Mat,
}

impl HaarDetector {
    /// Loads the cascade XML.
    pub fn new(cascade: &Path, settings: HaarSettings) -> Result<Self, ServerError> {
        let path = cascade.to_string_lossy();
        let classifier = CascadeClassifier::new(cascade)
            .map_err(|e| ServerError::Detector(format!("loading {path}: {e}")))?;
        if settings.threads > 0 {
            opencv::core::set_num_threads(settings.threads)?;
        }
        if classifier.empty()? {
            return Err(ServerError::Detector(format!(
                "cascade {path} is empty or missing"
            )));
        }
        Ok(HaarDetector {
            cascade: classifier,
            settings,
            grey: Mat::default(),
            small: Mat::default(),
            equalised: Mat::default(),
        })
    }

    /// A factory for the server's sessions, from the pipeline config.
    pub fn factory(config: &PipelineConfig) -> DetectorFactory {
        let cascade = config.cascade.clone();
        let settings = HaarSettings::from(config);
        Arc::new(move || {
            Ok(Box::new(HaarDetector::new(&cascade, settings.clone())?) as Box<dyn FaceDetector>)
        })
    }
}

impl FaceDetector for HaarDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
        use opencv::imgproc;
        let flat = Mat::from_slice(&frame.data)?;
        let bgr = flat.reshape(3, frame.height as i32)?;
        imgproc::cvt_color_def(&bgr, &mut self.grey, imgproc::COLOR_BGR2GRAY)?;
        let scale = (self.settings.detect_width as f64 / frame.width as f64).min(1.0);
        let size = Size::new(
            (frame.width as f64 * scale).round() as i32,
            (frame.height as f64 * scale).round() as i32,
        );
        imgproc::resize(
            &self.grey,
            &mut self.small,
            size,
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        imgproc::equalize_hist(&self.small, &mut self.equalised)?;
        let min_side = ((self.settings.min_face as f64 * scale).round() as i32).max(12);
        let mut found = Vector::<Rect>::new();
        self.cascade.detect_multi_scale(
            &self.equalised,
            &mut found,
            self.settings.scale_factor,
            self.settings.min_neighbors,
            0,
            Size::new(min_side, min_side),
            Size::new(0, 0),
        )?;
        let back = |v: i32| (v as f64 / scale).round() as i32;
        let min_face = self.settings.min_face as i32;
        Ok(found
            .iter()
            .map(|r| FaceBox {
                x: back(r.x),
                y: back(r.y),
                width: back(r.width),
                height: back(r.height),
            })
            // The cascade's minimum is in scaled pixels; rounding can let a face a pixel
            // or two under the limit through.
            .filter(|b| b.width.min(b.height) >= min_face)
            .collect())
    }

    fn configure(&mut self, settings: &DetectorSettings) {
        self.settings.scale_factor = settings.scale_factor as f64;
        self.settings.min_neighbors = settings.min_neighbors as i32;
        self.settings.min_face = settings.min_face;
    }
}

/// The detector the config asks for. The Haar cascade scans regions of interest between
/// full-frame scans when `roi-full-scan-every` > 1 (see [`super::roi`]); CenterFace always
/// sees the whole frame (it needs the context around a face: in a tight region its boxes
/// go astray — `scripts/quality` measured it).
pub fn factory_for(config: &PipelineConfig) -> DetectorFactory {
    let base = base_factory_for(config);
    let (every, min_face) = (config.roi_full_scan_every, config.min_face);
    if every <= 1 || uses_centerface(config) {
        return base;
    }
    Arc::new(move || {
        let roi = super::roi::RoiDetector::new(base()?, every, min_face);
        Ok(Box::new(roi) as Box<dyn FaceDetector>)
    })
}

/// The whole-frame detector the config asks for: `haar`, or `centerface` when its model
/// file is present (otherwise Haar, with a warning saying why).
pub fn base_factory_for(config: &PipelineConfig) -> DetectorFactory {
    if config.detector == DetectorKind::Centerface {
        if uses_centerface(config) {
            let (model, width, threshold, threads) = (
                config.model.clone(),
                config.dnn_width,
                config.dnn_threshold,
                config.opencv_threads,
            );
            return Arc::new(move || {
                let d = super::centerface::CenterFace::new(&model, width, threshold, threads)?;
                Ok(Box::new(d) as Box<dyn FaceDetector>)
            });
        }
        tracing::warn!(
            "detector \"centerface\" asked for, but its model {} is missing (run scripts/setup); using the Haar cascade",
            config.model.display()
        );
    }
    HaarDetector::factory(config)
}

/// Whether the config gets CenterFace (asked for, and its model is present).
fn uses_centerface(config: &PipelineConfig) -> bool {
    config.detector == DetectorKind::Centerface && config.model.is_file()
}

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
    /// Starts the thread; the detector is made on it by `factory`. A factory failure is
    /// returned here, before any frame flows.
    pub fn start(
        factory: DetectorFactory,
        name: String,
        min_interval: Duration,
        pool: FramePool,
        settings: watch::Receiver<DetectorSettings>,
    ) -> Result<Self, ServerError> {
        let slot = Arc::new(LatestSlot::default());
        let counters = Arc::new(DetectorCounters::default());
        let (tx, results) = watch::channel(Detection::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
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
            .map_err(|e| ServerError::Detector(format!("cannot start thread: {e}")))?;
        let worker = DetectorWorker {
            slot,
            pool,
            counters,
            results,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ServerError::Detector("detector thread died".into())),
        }
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

#[allow(clippy::too_many_arguments)]
fn detect_loop(
    detector: &mut dyn FaceDetector,
    slot: &LatestSlot,
    counters: &DetectorCounters,
    tx: &watch::Sender<Detection>,
    min_interval: Duration,
    pool: &FramePool,
    mut settings: watch::Receiver<DetectorSettings>,
) {
    detector.configure(&settings.borrow_and_update());
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
    fn no_settings() -> watch::Receiver<DetectorSettings> {
        watch::channel(DetectorSettings::default()).1
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

        fn configure(&mut self, settings: &DetectorSettings) {
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
        let (tx, rx) = watch::channel(DetectorSettings::default());
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
        tx.send_replace(DetectorSettings {
            min_face: 200,
            ..Default::default()
        });
        let next = detect(2);
        assert_eq!(next.boxes[0].width, 200);
    }

    #[test]
    fn haar_honours_live_settings() {
        let config = PipelineConfig::default();
        let mut haar = HaarDetector::new(&config.cascade, HaarSettings::from(&config)).unwrap();
        assert_eq!(haar.settings.tunable(), DetectorSettings::default());
        let tuned = DetectorSettings {
            scale_factor: 1.3,
            min_neighbors: 6,
            min_face: 120,
        };
        haar.configure(&tuned);
        assert_eq!(haar.settings.tunable(), tuned);
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

    #[test]
    fn haar_reports_a_missing_cascade() {
        let settings = HaarSettings::from(&PipelineConfig::default());
        assert!(HaarDetector::new(Path::new("/nonexistent/cascade.xml"), settings).is_err());
    }

    #[test]
    fn haar_finds_no_face_in_a_flat_frame() {
        let config = PipelineConfig::default();
        let mut haar = HaarDetector::new(&config.cascade, HaarSettings::from(&config)).unwrap();
        let boxes = haar.detect(&Frame::filled(640, 480, [90, 90, 90])).unwrap();
        assert!(boxes.is_empty());
    }
}
