//! Which boxes belong on which frame. Detections are tagged with the number of the frame
//! they ran on; a frame between two detections of the same shot gets its boxes interpolated
//! between them (so a box follows a moving face instead of lagging where it was), and a
//! frame after a scene cut only ever gets boxes found in its own shot. Pure: the frame path
//! feeds it and asks; tests drive it with numbers.

use super::frame::FaceBox;
use super::tracker::iou;
use std::collections::VecDeque;

/// One detection, as the frame path keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// The frame it ran on.
    pub seq: u64,
    /// Boxes to draw (after the tracker's confirm/hold smoothing).
    pub drawn: Vec<FaceBox>,
    /// Every face the detector reported, confirmed or not (what privacy mode must hide).
    pub raw: Vec<FaceBox>,
}

/// The boxes of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameBoxes {
    /// Boxes to draw, interpolated between the detections around the frame.
    pub drawn: Vec<FaceBox>,
    /// Areas to hide in privacy mode: every face of the detections around the frame, each
    /// stretched over the path it took between them.
    pub hidden: Vec<FaceBox>,
    /// Frames between this one and the nearest detection of its shot; `None` when no
    /// detection of its shot is known (nothing can be said about its faces).
    pub distance: Option<u64>,
    /// Frames between the two detections of its shot around the frame (0 when one ran on
    /// it); `None` when only one side has one. A face can come and go unseen in a wide
    /// span, so privacy mode hides the frame whole past its reach.
    pub span: Option<u64>,
    /// A face of the next detection was not in the one before: it came in between, and
    /// where it was on this frame is not known (privacy mode hides the whole frame).
    pub uncertain: bool,
}

/// Detections and cuts of the frames still waiting to leave the frame path.
#[derive(Debug, Default)]
pub struct Timeline {
    detections: VecDeque<Detected>,
    /// Numbers of frames that start a new shot, ascending.
    cuts: VecDeque<u64>,
}

/// Boxes of two detections closer than this (intersection over union) are the same face.
const SAME_FACE_IOU: f32 = 0.1;
/// ... or whose centres are closer than this many times the larger box's side (a face
/// moving fast between two detections ~0.1 s apart).
const SAME_FACE_DISTANCE: f32 = 1.5;

impl Timeline {
    /// Records that frame `seq` starts a new shot (call in frame order).
    pub fn cut(&mut self, seq: u64) {
        self.cuts.push_back(seq);
    }

    /// Records a detection (call in the order detections finish; their frames ascend).
    pub fn detected(&mut self, d: Detected) {
        if self.detections.back().is_some_and(|last| last.seq >= d.seq) {
            return; // an older frame's result arriving late adds nothing
        }
        self.detections.push_back(d);
    }

    /// Whether a cut lies in (from, to]: frames `from` and `to` are in different shots.
    pub fn cut_between(&self, from: u64, to: u64) -> bool {
        self.cuts.iter().any(|&c| c > from && c <= to)
    }

    /// Whether a detection at or after frame `seq` exists: nothing newer can change what
    /// the frame gets, so it may leave.
    pub fn settled(&self, seq: u64) -> bool {
        self.detections.back().is_some_and(|d| d.seq >= seq)
    }

    /// The newest detection.
    pub fn latest(&self) -> Option<&Detected> {
        self.detections.back()
    }

    /// The newest detection's frame number.
    pub fn last_detected(&self) -> Option<u64> {
        self.detections.back().map(|d| d.seq)
    }

    /// The boxes for frame `seq`.
    pub fn boxes(&self, seq: u64) -> FrameBoxes {
        let same_shot = |d: &&Detected| !self.cut_between(d.seq.min(seq), d.seq.max(seq));
        let before = self
            .detections
            .iter()
            .rev()
            .find(|d| d.seq <= seq)
            .filter(same_shot);
        let after = self
            .detections
            .iter()
            .find(|d| d.seq >= seq)
            .filter(same_shot);
        match (before, after) {
            (None, None) => FrameBoxes::default(),
            (Some(d), None) | (None, Some(d)) => FrameBoxes {
                drawn: d.drawn.clone(),
                hidden: union(&d.raw, &d.drawn),
                distance: Some(d.seq.abs_diff(seq)),
                span: (d.seq == seq).then_some(0),
                uncertain: false,
            },
            (Some(a), Some(b)) => {
                let span = (b.seq - a.seq).max(1) as f32;
                let t = (seq - a.seq) as f32 / span;
                let drawn = pairs(&a.drawn, &b.drawn)
                    .into_iter()
                    .map(|pair| match pair {
                        (Some(x), Some(y)) => lerp(x, y, t),
                        (Some(x), None) | (None, Some(x)) => *x,
                        (None, None) => unreachable!("pairs never yields two Nones"),
                    })
                    .collect();
                let (before, after) = (union(&a.raw, &a.drawn), union(&b.raw, &b.drawn));
                let hidden_pairs = pairs(&before, &after);
                // A face only one of the two detections has may be anywhere between them: one
                // that came in on its way in, one that the later detection lost (it left, or
                // moved too fast to be seen: motion blur) on its way out.
                let uncertain = (seq < b.seq
                    && hidden_pairs.iter().any(|p| matches!(p, (None, Some(_)))))
                    || (seq > a.seq && hidden_pairs.iter().any(|p| matches!(p, (Some(_), None))));
                let hidden = hidden_pairs
                    .into_iter()
                    .map(|pair| match pair {
                        (Some(x), Some(y)) => hull(x, y),
                        (Some(x), None) | (None, Some(x)) => *x,
                        (None, None) => unreachable!("pairs never yields two Nones"),
                    })
                    .collect();
                FrameBoxes {
                    drawn,
                    hidden,
                    distance: Some((seq - a.seq).min(b.seq - seq)),
                    span: Some(b.seq - a.seq),
                    uncertain,
                }
            }
        }
    }

    /// Forgets what frames before `seq` needed, keeping the detection just before it.
    pub fn forget_before(&mut self, seq: u64) {
        while self.detections.len() > 1 && self.detections[1].seq <= seq {
            self.detections.pop_front();
        }
        let keep_from = self.detections.front().map_or(seq, |d| d.seq.min(seq));
        while self.cuts.front().is_some_and(|&c| c <= keep_from) {
            self.cuts.pop_front();
        }
    }
}

/// `a` and `b` as one list, boxes of `b` that repeat one of `a` left out.
fn union(a: &[FaceBox], b: &[FaceBox]) -> Vec<FaceBox> {
    let mut all = a.to_vec();
    all.extend(b.iter().filter(|x| !a.contains(x)));
    all
}

/// Pairs each box of `a` with the same face in `b` (greedy, closest first); faces found in
/// only one of them are paired with `None`.
fn pairs<'a>(
    a: &'a [FaceBox],
    b: &'a [FaceBox],
) -> Vec<(Option<&'a FaceBox>, Option<&'a FaceBox>)> {
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            if let Some(score) = likeness(x, y) {
                candidates.push((score, i, j));
            }
        }
    }
    candidates.sort_by(|p, q| q.0.total_cmp(&p.0));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut out = Vec::new();
    for (_, i, j) in candidates {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            out.push((Some(&a[i]), Some(&b[j])));
        }
    }
    out.extend(
        a.iter()
            .zip(&used_a)
            .filter(|(_, u)| !**u)
            .map(|(x, _)| (Some(x), None)),
    );
    out.extend(
        b.iter()
            .zip(&used_b)
            .filter(|(_, u)| !**u)
            .map(|(y, _)| (None, Some(y))),
    );
    out
}

/// How alike two boxes are (higher is more), or `None` if they are not the same face.
fn likeness(x: &FaceBox, y: &FaceBox) -> Option<f32> {
    let overlap = iou(x, y);
    if overlap >= SAME_FACE_IOU {
        return Some(1.0 + overlap);
    }
    let distance = x.centre_distance(y);
    (distance < SAME_FACE_DISTANCE).then_some(1.0 - distance)
}

/// The box a fraction `t` of the way from `x` to `y`.
fn lerp(x: &FaceBox, y: &FaceBox, t: f32) -> FaceBox {
    let mix = |a: i32, b: i32| (a as f32 + (b - a) as f32 * t).round() as i32;
    FaceBox {
        x: mix(x.x, y.x),
        y: mix(x.y, y.y),
        width: mix(x.width, y.width),
        height: mix(x.height, y.height),
    }
}

/// The smallest box holding both.
fn hull(x: &FaceBox, y: &FaceBox) -> FaceBox {
    let (x0, y0) = (x.x.min(y.x), x.y.min(y.y));
    let (x1, y1) = (
        (x.x + x.width).max(y.x + y.width),
        (x.y + x.height).max(y.y + y.height),
    );
    FaceBox {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: i32) -> FaceBox {
        FaceBox {
            x,
            y: 10,
            width: 40,
            height: 40,
        }
    }

    fn det(seq: u64, boxes: &[FaceBox]) -> Detected {
        Detected {
            seq,
            drawn: boxes.to_vec(),
            raw: boxes.to_vec(),
        }
    }

    #[test]
    fn a_face_that_came_in_between_two_detections_makes_the_frames_between_uncertain() {
        let mut t = Timeline::default();
        t.cut(0);
        t.detected(det(0, &[b(100)]));
        t.detected(det(6, &[b(100), b(400)]));
        // Frames 1-5: where the newcomer was is not known.
        for seq in 1..6 {
            assert!(t.boxes(seq).uncertain, "frame {seq}");
        }
        // On the detection itself it is known.
        assert!(!t.boxes(6).uncertain);
        // A face the next detection no longer has (it left, or a fast pan blurred it) may be
        // anywhere between the two: uncertain too, but not on the detections themselves.
        t.detected(det(9, &[b(400)]));
        assert!(t.boxes(7).uncertain && t.boxes(8).uncertain);
        assert!(!t.boxes(9).uncertain);
        t.detected(det(12, &[b(400)]));
        assert!(!t.boxes(10).uncertain, "the same faces on both sides");
    }

    #[test]
    fn boxes_move_with_the_face_between_detections() {
        let mut t = Timeline::default();
        t.cut(0);
        t.detected(det(0, &[b(100)]));
        t.detected(det(4, &[b(140)]));
        assert_eq!(t.boxes(0).drawn, vec![b(100)]);
        assert_eq!(t.boxes(1).drawn, vec![b(110)]);
        assert_eq!(t.boxes(2).drawn, vec![b(120)]);
        assert_eq!(t.boxes(4).drawn, vec![b(140)]);
        assert_eq!(t.boxes(2).distance, Some(2));
        assert_eq!(
            t.boxes(2).span,
            Some(4),
            "frames between the detections around it"
        );
        assert_eq!(t.boxes(4).span, Some(0), "detected itself");
        assert_eq!(
            t.boxes(6).span,
            None,
            "after the last detection: one side only"
        );
        // Privacy hides the whole path of the face between the two detections.
        assert_eq!(
            t.boxes(1).hidden,
            vec![FaceBox {
                x: 100,
                y: 10,
                width: 80,
                height: 40
            }]
        );
    }

    #[test]
    fn a_frame_is_settled_once_a_detection_at_or_after_it_exists() {
        let mut t = Timeline::default();
        t.detected(det(3, &[]));
        assert!(t.settled(2) && t.settled(3));
        assert!(!t.settled(4));
        // A late result for an older frame is ignored.
        t.detected(det(2, &[b(5)]));
        assert_eq!(t.last_detected(), Some(3));
    }

    #[test]
    fn faces_never_cross_a_cut() {
        let mut t = Timeline::default();
        t.cut(0);
        t.detected(det(2, &[b(100)]));
        t.cut(5);
        t.detected(det(7, &[b(300)]));
        assert_eq!(
            t.boxes(4).drawn,
            vec![b(100)],
            "before the cut: the old shot"
        );
        assert_eq!(
            t.boxes(5).drawn,
            vec![b(300)],
            "after it: only the new shot"
        );
        assert_eq!(t.boxes(5).distance, Some(2));
        t.detected(det(9, &[]));
        assert!(t.boxes(9).drawn.is_empty(), "the face is gone at 9");
        assert_eq!(
            t.boxes(8).drawn,
            vec![b(300)],
            "kept until the detection that lost it"
        );
        assert_eq!(t.boxes(8).hidden, vec![b(300)]);
    }

    #[test]
    fn a_new_shot_without_a_detection_knows_nothing() {
        let mut t = Timeline::default();
        t.cut(0);
        t.detected(det(1, &[b(100)]));
        t.cut(3);
        let frame = t.boxes(4);
        assert_eq!(frame.distance, None);
        assert!(frame.drawn.is_empty() && frame.hidden.is_empty());
        assert_eq!(t.boxes(2).distance, Some(1), "the old shot is still known");
    }

    #[test]
    fn new_and_vanished_faces_are_kept_and_two_faces_stay_apart() {
        let mut t = Timeline::default();
        t.detected(det(0, &[b(0), b(200)]));
        t.detected(det(2, &[b(210), b(500)]));
        let mut drawn = t.boxes(1).drawn;
        drawn.sort_by_key(|x| x.x);
        assert_eq!(drawn, vec![b(0), b(205), b(500)]);
    }

    #[test]
    fn old_detections_and_cuts_are_forgotten() {
        let mut t = Timeline::default();
        t.cut(0);
        for seq in [0, 3, 6, 9] {
            t.detected(det(seq, &[b(seq as i32)]));
        }
        t.cut(10);
        t.forget_before(7);
        assert_eq!(t.detections.len(), 2, "6 (just before 7) and 9");
        assert_eq!(t.cuts, VecDeque::from([10]));
        assert_eq!(t.boxes(7).drawn, vec![b(7)]);
    }
}
