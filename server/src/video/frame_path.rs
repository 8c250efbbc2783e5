//! The one frame path that both front doors drive (a live session and `process`): decoded
//! frames in, in order; faces detected (live: on the newest frame, on the detector's own
//! thread; offline: every frame, inline); scene cuts noticed; boxes drawn, or faces hidden
//! in privacy mode; frames out, in order.
//!
//! A frame waits (at most `max_hold`) until a detection at or after it exists, so its boxes
//! can be interpolated between the detections around it: a box drawn on frame N is where
//! the face is on frame N. Privacy mode fails closed: a frame that no detection of its own
//! shot has covered (the start, after a cut, while the detector is behind) is pixelated
//! whole rather than shown.

use super::detector::{Detection, DetectorWorker, FaceDetector, Found};
use super::follower::{Follower, Grey};
use super::frame::{FaceBox, Frame};
use super::overlay::{draw_boxes, pixelate_boxes, pixelate_whole};
use super::scene::SceneCuts;
use super::timeline::{Detected, FrameBoxes, Timeline};
use super::tracker::Tracker;
use crate::config::PipelineConfig;
use crate::error::ServerError;
use crate::video::detector::Tuning;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A hidden face's box is grown by this fraction of its size on every side: detectors box
/// the face tightly, and hair, ears and chin identify a person too.
const HIDE_MARGIN: f32 = 0.35;
/// ... and by this fraction more per frame between the frame and the detection its box
/// comes from, for the face's motion in between (a person walking at the camera moves
/// their face by about a tenth of its size a frame).
const HIDE_MARGIN_PER_FRAME: f32 = 0.1;

/// In privacy mode a frame between two detections farther apart than this (or the longest
/// hold, if longer) is pixelated whole: the detector runs at `privacy-detect-fps` there (6
/// a second by default, one every ~170 ms), so a wider span means it fell behind, and a
/// face can walk in and out between the two unseen (the live privacy test on the cuts clip
/// showed one, with detections half a second apart under load; the footage sweep finds it
/// at 15 frames and none at 9).
const PRIVACY_REACH_MS: u64 = 300;

/// In privacy mode a frame waits at most this long for a detection at or after it (about
/// one detection interval at `privacy-detect-fps`, plus the detection itself); past it, the
/// frame leaves pixelated whole.
const PRIVACY_HOLD: Duration = Duration::from_millis(300);

/// At the start of a shot, frames wait at most this long for its faces to be confirmed
/// (about two detections; once a shot), so the first frames of a face get its box too.
/// Afterwards frames never wait (unless `max-hold-ms` asks for it).
const START_HOLD: Duration = Duration::from_millis(400);

/// How the frame path is tuned.
#[derive(Debug, Clone)]
pub struct PathSettings {
    /// Detections in a row before a box is drawn.
    pub confirm: u32,
    /// Missed detections a drawn box survives.
    pub hold: u32,
    /// Longest a frame waits for a detection before it leaves anyway (0: frames never
    /// wait; the follower carries the newest detection's faces to them).
    pub max_hold: Duration,
    /// In privacy mode, a frame is pixelated whole when the detections of its shot around
    /// it are more than this many frames apart, or when it has a detection on one side only
    /// (the end of a shot) more than one frame away.
    pub privacy_reach: u64,
    /// Live, only every this many frames is offered to the detector (besides scene cuts,
    /// and every frame in privacy mode): the detection rate's share of the frame rate. The
    /// follower carries faces to the frames in between.
    pub detect_every: u64,
    /// Live, in privacy mode: the least time between two detections.
    pub privacy_interval: Duration,
}

impl From<&PipelineConfig> for PathSettings {
    fn from(config: &PipelineConfig) -> Self {
        let (d, hls) = (&config.detector, &config.hls);
        PathSettings {
            confirm: d.confirm_detections,
            hold: d.hold_detections,
            max_hold: Duration::from_millis(d.max_hold_ms),
            // Detections of one shot farther apart than this are ones the detector fell
            // behind on.
            privacy_reach: (d.max_hold_ms.max(PRIVACY_REACH_MS) * u64::from(hls.frame_rate))
                .div_ceil(1000),
            detect_every: (u64::from(hls.frame_rate) / u64::from(d.detect_fps.max(1))).max(1),
            privacy_interval: Duration::from_secs(1) / d.privacy_detect_fps.max(1),
        }
    }
}

/// Where faces come from.
enum Faces {
    /// The detector thread of a live session, and its results.
    Live {
        worker: DetectorWorker,
        results: watch::Receiver<Detection>,
    },
    /// A detector run on this thread as frames are pushed (offline processing): on every
    /// frame, or on every `every`th from `phase` (and at scene cuts).
    Inline {
        detector: Box<dyn FaceDetector>,
        every: u64,
        phase: u64,
    },
}

/// A frame leaving the path, with its overlay applied.
#[derive(Debug)]
pub struct Output {
    pub frame: Frame,
    /// Boxes drawn (or faces hidden, in privacy mode).
    pub faces: usize,
    /// Privacy mode pixelated the whole frame: no detection of its shot covered it.
    pub hidden_whole: bool,
    /// Faces the newest detection found that are smaller than the minimum face size, so
    /// not boxed (0 in privacy mode, which hides them).
    pub faces_small: usize,
}

struct Held {
    seq: u64,
    frame: Frame,
    deadline: Instant,
    /// When it came in (the start of a shot may hold it a little: [`START_HOLD`]).
    pushed: Instant,
}

/// Decoded frames → detection, scene cuts and overlay → frames for the encoder.
pub struct FramePath {
    faces: Faces,
    settings: PathSettings,
    tracker: Tracker,
    cuts: SceneCuts,
    timeline: Timeline,
    /// Live: carries the newest detection's faces to the frames after it.
    follower: Option<Follower>,
    held: VecDeque<Held>,
    next_seq: u64,
    privacy: Arc<AtomicBool>,
    /// The live detector settings: boxes are drawn only for faces of at least their
    /// smallest face size (privacy mode hides smaller ones too).
    tuning: watch::Receiver<Tuning>,
    /// The latest detection's duration, in milliseconds.
    detect_millis: f32,
    /// Faces the latest detection found below the minimum face size.
    faces_small: usize,
}

impl FramePath {
    /// A live path: `worker` detects the newest frame on its own thread.
    pub fn live(
        worker: DetectorWorker,
        settings: PathSettings,
        privacy: Arc<AtomicBool>,
        tuning: watch::Receiver<Tuning>,
    ) -> Self {
        let results = worker.subscribe();
        // Privacy mode detects at its own, higher rate: each frame waits for a detection
        // at or after it, and a face never moves far between the detections its hidden
        // area is drawn from.
        worker.privacy_rate_while(privacy.clone(), settings.privacy_interval);
        Self::new(Faces::Live { worker, results }, settings, privacy, tuning)
    }

    /// An offline path: `detector` runs on every frame as it is pushed.
    pub fn inline(
        detector: Box<dyn FaceDetector>,
        settings: PathSettings,
        privacy: Arc<AtomicBool>,
        tuning: Tuning,
    ) -> Self {
        Self::sampled(detector, settings, privacy, tuning, 1, 0)
    }

    /// An offline path that detects only frames `phase`, `phase + every`, … (and every
    /// scene cut's first frame, as a live session does at once): a live session's detection
    /// rate, without its clock. The footage tests sweep `phase` to check privacy mode on
    /// every way the detections can fall on a clip.
    pub fn sampled(
        mut detector: Box<dyn FaceDetector>,
        settings: PathSettings,
        privacy: Arc<AtomicBool>,
        tuning: Tuning,
        every: u64,
        phase: u64,
    ) -> Self {
        detector.configure(&tuning);
        let (_, tuning) = watch::channel(tuning);
        let every = every.max(1);
        let faces = Faces::Inline {
            detector,
            every,
            phase: phase % every,
        };
        Self::new(faces, settings, privacy, tuning)
    }

    fn new(
        faces: Faces,
        settings: PathSettings,
        privacy: Arc<AtomicBool>,
        tuning: watch::Receiver<Tuning>,
    ) -> Self {
        FramePath {
            tuning,
            follower: matches!(faces, Faces::Live { .. }).then(Follower::default),
            faces,
            tracker: Tracker::new(settings.confirm, settings.hold),
            settings,
            cuts: SceneCuts::default(),
            timeline: Timeline::default(),
            held: VecDeque::new(),
            next_seq: 0,
            privacy,
            detect_millis: 0.0,
            faces_small: 0,
        }
    }

    /// Takes the next decoded frame (offline: detects it first, on this thread).
    pub fn push(&mut self, frame: Frame, now: Instant) -> Result<(), ServerError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let cut = self.cuts.is_cut(&frame);
        if cut {
            self.timeline.cut(seq);
        }
        if let Some(follower) = &mut self.follower {
            follower.frame(seq, cut, Grey::of(&frame));
        }
        match &mut self.faces {
            // Detect rarely while the follower holds every face; at once (past the rate
            // cap) when something is unsure: a new shot, a face seen but not confirmed yet
            // (its box waits for the next detection), a face missed or lost.
            Faces::Live { worker, .. } => {
                // Privacy offers every frame at its own rate: there only a cut is urgent (an
                // urgent frame is not replaced by newer ones, which privacy needs detected).
                let privacy = self.privacy.load(Ordering::Relaxed);
                let unsure = cut
                    || (!privacy
                        && (self.tracker.unsettled()
                            || self.follower.as_ref().is_some_and(Follower::lost)));
                let due = seq.is_multiple_of(self.settings.detect_every.max(1));
                if unsure || due || privacy {
                    worker.offer(&frame, seq, unsure);
                }
            }
            Faces::Inline {
                detector,
                every,
                phase,
            } => {
                if !cut && seq % *every != *phase {
                    return self.hold(seq, frame, now);
                }
                let started = Instant::now();
                let found = detector.detect_all(&frame)?;
                self.detect_millis = started.elapsed().as_secs_f32() * 1000.0;
                self.record(seq, found);
            }
        }
        self.hold(seq, frame, now)
    }

    /// Keeps frame `seq` until it may leave.
    fn hold(&mut self, seq: u64, frame: Frame, now: Instant) -> Result<(), ServerError> {
        self.held.push_back(Held {
            seq,
            frame,
            deadline: now + self.settings.max_hold,
            pushed: now,
        });
        Ok(())
    }

    /// The next frame that may leave (covered by a detection, or past its deadline), with
    /// its boxes drawn or its faces hidden.
    pub fn next_ready(&mut self, now: Instant) -> Option<Output> {
        self.poll();
        let front = self.held.front()?;
        let settled = self.timeline.settled(front.seq);
        if !settled && now < self.deadline_of(front) {
            return None;
        }
        let Held { seq, mut frame, .. } = self.held.pop_front()?;
        let privacy = self.privacy.load(Ordering::Relaxed);
        // A detection at or after the frame places its boxes exactly (interpolated); before
        // one exists, the follower has carried the newest detection's faces to it (boxes
        // only: privacy hides what the detections around the frame found, or all of it).
        let (boxes, uncovered) = match (settled, privacy, &self.follower) {
            // Privacy, and no detection at or after the frame within its hold (the detector
            // fell behind): where its faces are is a guess, so the whole frame is hidden.
            (false, true, _) => (FrameBoxes::default(), true),
            (false, false, Some(follower)) => (follower.carried(seq), false),
            _ => (self.timeline.boxes(seq), false),
        };
        self.timeline.forget_before(seq);
        if let Some(follower) = &mut self.follower {
            follower.forget_before(seq);
        }
        // A face that entered between the detections around the frame may be anywhere on
        // its way in: hidden whole too. So is a frame between detections too far apart to
        // vouch for it (a face can come and go between them unseen), or at the end of a
        // shot past the frame after its last detection (nothing bounds a face's path there).
        let reach = self.settings.privacy_reach;
        let hidden_whole = privacy
            && (uncovered
                || boxes.uncertain
                || match (boxes.span, boxes.distance) {
                    (Some(span), _) => span > reach,
                    (None, Some(distance)) => distance > 1,
                    (None, None) => true,
                });
        let faces = if !privacy {
            draw_boxes(&mut frame, &boxes.drawn);
            boxes.drawn.len()
        } else if hidden_whole {
            pixelate_whole(&mut frame);
            0
        } else {
            let distance = boxes.distance.unwrap_or(0);
            let grown: Vec<FaceBox> = boxes.hidden.iter().map(|b| grow(b, distance)).collect();
            pixelate_boxes(&mut frame, &grown);
            grown.len()
        };
        frame.hidden = privacy;
        Some(Output {
            frame,
            faces,
            hidden_whole,
            faces_small: if privacy { 0 } else { self.faces_small },
        })
    }

    /// When the oldest waiting frame leaves even without a detection.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| self.deadline_of(h))
    }

    /// When `held` leaves without a detection: at its hold (none by default), or a little
    /// later at the start of a shot whose faces are still being confirmed.
    fn deadline_of(&self, held: &Held) -> Instant {
        if self.privacy.load(Ordering::Relaxed) {
            // Privacy waits for a detection at or after the frame: a face that entered
            // since the last detection is hidden too, which no carrying can promise.
            held.deadline.max(held.pushed + PRIVACY_HOLD)
        } else if self.follower.is_some() && self.faces_unconfirmed(held.seq) {
            held.deadline.max(held.pushed + START_HOLD)
        } else {
            held.deadline
        }
    }

    /// Whether frame `seq`'s faces are still unknown: nothing detected in its shot yet, or
    /// a face seen that is not confirmed (its box waits for the next detection, an urgent
    /// one). Faces too small to box, or faint ones, never hold frames.
    fn faces_unconfirmed(&self, seq: u64) -> bool {
        match self.timeline.latest() {
            Some(d) if !self.timeline.cut_between(d.seq.min(seq), d.seq.max(seq)) => {
                self.tracker.confirming()
            }
            _ => true,
        }
    }

    /// Frames waiting for a detection.
    pub fn waiting(&self) -> usize {
        self.held.len()
    }

    /// A receiver that wakes when the live detector publishes (`None` offline).
    pub fn detections(&self) -> Option<watch::Receiver<Detection>> {
        match &self.faces {
            Faces::Live { worker, .. } => Some(worker.subscribe()),
            Faces::Inline { .. } => None,
        }
    }

    /// The live detector thread, if any (for its counters).
    pub fn worker(&self) -> Option<&DetectorWorker> {
        match &self.faces {
            Faces::Live { worker, .. } => Some(worker),
            Faces::Inline { .. } => None,
        }
    }

    /// How long the latest detection took, in milliseconds.
    pub fn detect_millis(&self) -> f32 {
        self.detect_millis
    }

    /// Takes a new live detection, if one was published since the last look.
    fn poll(&mut self) {
        let Faces::Live { results, .. } = &mut self.faces else {
            return;
        };
        if !results.has_changed().unwrap_or(false) {
            return;
        }
        let d = results.borrow_and_update().clone();
        if self
            .timeline
            .last_detected()
            .is_some_and(|last| last >= d.seq)
        {
            return;
        }
        self.detect_millis = d.millis;
        let found = Found {
            sure: d.boxes,
            faint: d.faint,
        };
        self.record(d.seq, found);
    }

    /// Runs the tracker over a detection of frame `seq` and keeps the result.
    fn record(&mut self, seq: u64, found: Found) {
        let crossed_cut = self
            .timeline
            .last_detected()
            .is_some_and(|last| self.timeline.cut_between(last, seq));
        if crossed_cut {
            self.tracker.forget_held();
        }
        let min_face = self.tuning.borrow().min_face as i32;
        let large = |boxes: &[FaceBox]| -> Vec<FaceBox> {
            boxes
                .iter()
                .filter(|b| b.width.min(b.height) >= min_face)
                .copied()
                .collect()
        };
        let (sure, faint) = (large(&found.sure), large(&found.faint));
        self.faces_small = found.sure.len() - sure.len();
        let drawn = self.tracker.update_with_faint(&sure, &faint);
        let mut raw = found.sure;
        raw.extend(found.faint);
        if let Some(follower) = &mut self.follower {
            follower.detected(seq, &drawn, &raw);
        }
        self.timeline.detected(Detected { seq, drawn, raw });
    }
}

/// `b` grown for hiding: a margin around the face, more the older its detection.
fn grow(b: &FaceBox, distance: u64) -> FaceBox {
    let f = HIDE_MARGIN + HIDE_MARGIN_PER_FRAME * distance.min(30) as f32;
    let (dx, dy) = (
        (b.width as f32 * f).round() as i32,
        (b.height as f32 * f).round() as i32,
    );
    FaceBox {
        x: b.x - dx,
        y: b.y - dy,
        width: b.width + 2 * dx,
        height: b.height + 2 * dy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::detector::DetectorFactory;
    use crate::video::frame::FramePool;
    use crate::video::overlay::BOX_BGR;

    /// Detector settings that draw faces of any size.
    fn tiny() -> Tuning {
        Tuning {
            min_face: 1,
            ..Tuning::default()
        }
    }

    fn settings(confirm: u32, hold: u32) -> PathSettings {
        PathSettings {
            confirm,
            hold,
            max_hold: Duration::from_secs(3600),
            privacy_reach: 3,
            detect_every: 1,
            privacy_interval: Duration::ZERO,
        }
    }

    /// Finds a face only in frames whose first byte is odd.
    struct Blinking;
    impl FaceDetector for Blinking {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            let b = FaceBox {
                x: 1,
                y: 1,
                width: 2,
                height: 2,
            };
            Ok(if frame.data[0] % 2 == 1 {
                vec![b]
            } else {
                vec![]
            })
        }

        fn configure(&mut self, _: &Tuning) {}
    }

    /// A grey frame (no cut between two of them) whose first byte is `v`.
    fn grey(v: u8) -> Frame {
        let mut f = Frame::filled(64, 48, [100, 100, 100]);
        f.data[0] = v;
        f
    }

    fn run(path: &mut FramePath, frame: Frame) -> Output {
        let now = Instant::now();
        path.push(frame, now).unwrap();
        path.next_ready(now)
            .expect("an inline frame leaves at once")
    }

    #[test]
    fn a_single_miss_keeps_the_last_box_but_a_lasting_one_clears_it() {
        let mut path =
            FramePath::inline(Box::new(Blinking), settings(1, 2), Arc::default(), tiny());
        assert_eq!(run(&mut path, grey(1)).faces, 1);
        assert_eq!(run(&mut path, grey(2)).faces, 1, "one miss: held");
        assert_eq!(run(&mut path, grey(2)).faces, 1, "two misses: still held");
        assert_eq!(run(&mut path, grey(2)).faces, 0, "three: the face is gone");
    }

    /// Reports a face at x = 10 × the frame's first byte.
    #[derive(Clone)]
    struct Mover;
    impl FaceDetector for Mover {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            Ok(vec![FaceBox {
                x: 10 * i32::from(frame.data[0]),
                y: 8,
                width: 12,
                height: 12,
            }])
        }

        fn configure(&mut self, _: &Tuning) {}
    }

    /// Never finds anything: every detection fails.
    #[derive(Clone)]
    struct Never;
    impl FaceDetector for Never {
        fn detect(&mut self, _: &Frame) -> Result<Vec<FaceBox>, ServerError> {
            Err(ServerError::Detector("always fails".into()))
        }
        fn configure(&mut self, _: &Tuning) {}
    }

    /// A live path over `detector`, privacy mode per `privacy`.
    fn live_path(
        detector: impl FaceDetector + Clone + Sync + 'static,
        s: PathSettings,
        privacy: Arc<AtomicBool>,
    ) -> FramePath {
        live_path_tuned(detector, s, privacy, tiny())
    }

    /// [`live_path`] with the page's `tuning`.
    fn live_path_tuned(
        detector: impl FaceDetector + Clone + Sync + 'static,
        s: PathSettings,
        privacy: Arc<AtomicBool>,
        tuning: Tuning,
    ) -> FramePath {
        let factory: DetectorFactory =
            Arc::new(move || Ok(Box::new(detector.clone()) as Box<dyn FaceDetector>));
        let worker = DetectorWorker::start(
            factory,
            "path".into(),
            Duration::ZERO,
            FramePool::default(),
            watch::channel(Tuning::default()).1,
        )
        .unwrap();
        FramePath::live(worker, s, privacy, watch::channel(tuning).1)
    }

    #[test]
    fn once_a_shot_is_known_frames_leave_at_once_and_small_faces_hold_nothing() {
        let mut s = settings(2, 0);
        s.max_hold = Duration::ZERO;
        let small = Tuning {
            min_face: 100,
            ..Tuning::default()
        };
        let mut path = live_path_tuned(Mover, s, Arc::default(), small);
        // Nothing is known of the shot yet: the first frame waits for its detection.
        path.push(grey(1), Instant::now()).unwrap();
        assert_eq!(wait_ready(&mut path).faces, 0);
        // Its only face is under the smallest size: nothing to confirm, nothing waits.
        for v in 2..6 {
            let now = Instant::now();
            path.push(grey(v), now).unwrap();
            assert!(path.next_ready(now).is_some(), "frame {v} left at once");
        }
    }

    /// Waits (bounded) for the next frame to leave.
    fn wait_ready(path: &mut FramePath) -> Output {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(out) = path.next_ready(Instant::now()) {
                return out;
            }
            assert!(Instant::now() < deadline, "no frame left the path");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn live_frames_wait_for_a_detection_and_leave_in_order() {
        let mut path = live_path(Mover, settings(1, 0), Arc::default());
        let now = Instant::now();
        path.push(grey(1), now).unwrap();
        let first = wait_ready(&mut path);
        assert_eq!(first.frame.data[0], 1);
        assert_eq!(first.faces, 1);
        // The box is drawn where the detector saw the face on this very frame.
        assert_eq!(first.frame.pixel(10, 8), BOX_BGR);
        for v in 2..6 {
            path.push(grey(v), Instant::now()).unwrap();
        }
        for v in 2..6 {
            assert_eq!(wait_ready(&mut path).frame.data[0], v, "in order");
        }
        assert_eq!(path.waiting(), 0);
    }

    #[test]
    fn a_frame_leaves_at_its_deadline_without_a_detection() {
        // Its shot's faces are not known yet: the start hold applies, or a longer hold.
        for (hold, leaves) in [
            (Duration::from_millis(50), START_HOLD),
            (START_HOLD * 2, START_HOLD * 2),
        ] {
            let mut s = settings(1, 0);
            s.max_hold = hold;
            let mut path = live_path(Never, s, Arc::default());
            let pushed = Instant::now();
            path.push(grey(1), pushed).unwrap();
            assert!(path.next_ready(pushed).is_none(), "waits for a detection");
            assert_eq!(path.deadline(), Some(pushed + leaves));
            assert!(path
                .next_ready(pushed + leaves - Duration::from_millis(1))
                .is_none());
            let out = path
                .next_ready(pushed + leaves)
                .expect("leaves at its deadline");
            assert_eq!(out.faces, 0);
        }
    }

    #[test]
    fn privacy_hides_the_whole_frame_until_a_detection_covers_its_shot() {
        let privacy = Arc::new(AtomicBool::new(true));
        let mut s = settings(2, 2);
        s.max_hold = Duration::ZERO; // frames do not wait, beyond a shot's start
        let mut path = live_path(Never, s, privacy);
        let frame = Frame::checkerboard(64, 48, [200, 200, 200]);
        let now = Instant::now();
        path.push(frame, now).unwrap();
        // Nothing of the shot is known: it waits the start hold, then leaves hidden.
        assert!(path.next_ready(now).is_none());
        let out = path.next_ready(now + START_HOLD).unwrap();
        assert!(out.hidden_whole);
        assert_eq!(
            out.frame.pixel(0, 0),
            out.frame.pixel(1, 0),
            "the checkerboard is gone"
        );
    }

    #[test]
    fn privacy_hides_a_face_from_its_first_detection_on() {
        // confirm = 2: box mode would not draw a face seen once; privacy hides it anyway.
        let privacy = Arc::new(AtomicBool::new(true));
        let mut path = FramePath::inline(Box::new(Mover), settings(2, 0), privacy.clone(), tiny());
        let mut f = grey(3);
        f.data[(10 * 64 + 35) * 3] = 0; // a detail inside the face
        let out = run(&mut path, f);
        assert!(!out.hidden_whole);
        assert_eq!(out.faces, 1);
        assert_ne!(
            out.frame.data[(10 * 64 + 35) * 3],
            0,
            "the face is pixelated"
        );
        assert_eq!(
            out.frame.pixel(63, 47),
            [100, 100, 100],
            "far away: untouched"
        );
        privacy.store(false, Ordering::Relaxed);
        assert_eq!(run(&mut path, grey(3)).faces, 1, "box mode: confirmed now");
    }

    #[test]
    fn privacy_hides_frames_between_detections_too_far_apart_to_vouch_for_them() {
        // privacy_reach 3: detections 2 frames apart vouch for the frame between them; 4
        // apart (the detector fell behind) do not, and those frames are hidden whole.
        for (every, far) in [(2, false), (4, true)] {
            let privacy = Arc::new(AtomicBool::new(true));
            let mut path =
                FramePath::sampled(Box::new(Mover), settings(1, 0), privacy, tiny(), every, 0);
            let now = Instant::now();
            for _ in 0..9 {
                path.push(grey(2), now).unwrap(); // a face standing still
            }
            let out: Vec<Output> = std::iter::from_fn(|| path.next_ready(now)).collect();
            assert_eq!(out.len(), 9, "all covered by the detection at frame 8");
            for (seq, o) in (0u64..).zip(&out) {
                let detected = seq % every == 0;
                assert_eq!(
                    o.hidden_whole,
                    far && !detected,
                    "frame {seq}, every {every}"
                );
            }
        }
    }

    #[test]
    fn faces_under_the_smallest_size_are_not_boxed_but_are_hidden() {
        let privacy = Arc::new(AtomicBool::new(false));
        let big = Tuning {
            min_face: 20,
            ..Tuning::default()
        };
        // Mover's faces are 12 pixels.
        let mut path = FramePath::inline(Box::new(Mover), settings(1, 0), privacy.clone(), big);
        assert_eq!(run(&mut path, grey(3)).faces, 0, "too small to box");
        privacy.store(true, Ordering::Relaxed);
        assert_eq!(run(&mut path, grey(3)).faces, 1, "hidden all the same");
    }

    #[test]
    fn a_cut_forgets_the_old_shots_faces() {
        let mut path =
            FramePath::inline(Box::new(Blinking), settings(1, 5), Arc::default(), tiny());
        assert_eq!(run(&mut path, grey(1)).faces, 1);
        assert_eq!(run(&mut path, grey(2)).faces, 1, "held through a miss");
        // A different picture: a cut; the held face is not carried into the new shot.
        let mut other = Frame::filled(64, 48, [250, 250, 250]);
        other.data[0] = 2;
        assert_eq!(run(&mut path, other).faces, 0);
    }
}
