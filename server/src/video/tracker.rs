//! Temporal smoothing of detections: a face must be seen in `confirm` detections in a row
//! before its box is drawn (a box seen once in isolation is a false positive far more often
//! than a face), and a confirmed face survives `hold` missed detections (a face found in
//! detection N and N+2 stays boxed through N+1). Pure, so it is tested without OpenCV.

use super::frame::FaceBox;

/// Boxes overlapping at least this much (intersection over union) are the same face...
const MATCH_IOU: f32 = 0.3;
/// ... or whose centres are closer than this share of the larger box's side: detections
/// can be rare (a few a second), and a face moves between them.
const MATCH_CENTRE: f32 = 0.5;

#[derive(Debug, Clone)]
struct Track {
    bbox: FaceBox,
    hits: u32,
    misses: u32,
}

/// Tracks faces across detections.
#[derive(Debug, Clone)]
pub struct Tracker {
    confirm: u32,
    hold: u32,
    tracks: Vec<Track>,
}

impl Tracker {
    /// `confirm` ≥ 1 detections in a row before drawing; `hold` misses before forgetting.
    pub fn new(confirm: u32, hold: u32) -> Self {
        Tracker {
            confirm: confirm.max(1),
            hold,
            tracks: Vec::new(),
        }
    }

    /// A scene cut: faces of the old shot are not held through misses any more; a face
    /// found again at once (a false cut) keeps its box.
    pub fn forget_held(&mut self) {
        let hold = self.hold;
        for t in &mut self.tracks {
            t.misses = t.misses.max(hold);
        }
    }

    /// Whether the next detection is needed soon: a face seen but not yet confirmed (its
    /// box waits for it), or a confirmed one just missed.
    pub fn unsettled(&self) -> bool {
        self.tracks
            .iter()
            .any(|t| t.hits < self.confirm || t.misses > 0)
    }

    /// Whether a face was seen but is not confirmed yet (its box waits for the next
    /// detection). Such a track goes at its first miss, so this never lasts.
    pub fn confirming(&self) -> bool {
        self.tracks.iter().any(|t| t.hits < self.confirm)
    }

    /// Takes one detection's boxes; returns the boxes to draw.
    pub fn update(&mut self, found: &[FaceBox]) -> Vec<FaceBox> {
        self.update_with_faint(found, &[])
    }

    /// Takes one detection's sure boxes and its faint ones (scored under the threshold but
    /// near it); returns the boxes to draw. A faint box never starts a face, but one that
    /// matches a face already seen counts as seeing it again (two thresholds, as
    /// ByteTrack associates its low-score boxes): a small or turned face whose score
    /// hovers around the threshold is confirmed and stays boxed, and a lone faint blob
    /// stays unboxed.
    pub fn update_with_faint(&mut self, found: &[FaceBox], faint: &[FaceBox]) -> Vec<FaceBox> {
        let mut matched = vec![false; self.tracks.len()];
        let mut fresh = Vec::new();
        for b in found {
            match self.best_match(b, &matched) {
                Some(i) => {
                    matched[i] = true;
                    self.tracks[i].seen(*b);
                }
                None => fresh.push(Track {
                    bbox: *b,
                    hits: 1,
                    misses: 0,
                }),
            }
        }
        for b in faint {
            if let Some(i) = self.best_match(b, &matched) {
                matched[i] = true;
                self.tracks[i].seen(*b);
            }
        }
        for (t, m) in self.tracks.iter_mut().zip(&matched) {
            if !m {
                t.misses += 1;
            }
        }
        let (confirm, hold) = (self.confirm, self.hold);
        // An unconfirmed track is forgotten at its first miss; a confirmed one after `hold`.
        self.tracks
            .retain(|t| t.misses == 0 || (t.hits >= confirm && t.misses <= hold));
        self.tracks.extend(fresh);
        self.tracks
            .iter()
            .filter(|t| t.hits >= confirm)
            .map(|t| t.bbox)
            .collect()
    }

    /// The unmatched track most like `b`, if any is like it at all.
    fn best_match(&self, b: &FaceBox, matched: &[bool]) -> Option<usize> {
        self.tracks
            .iter()
            .enumerate()
            .filter(|(i, _)| !matched[*i])
            .map(|(i, t)| (i, likeness(&t.bbox, b)))
            .filter(|(_, o)| *o > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

impl Track {
    /// The face was found again, at `b`.
    fn seen(&mut self, b: FaceBox) {
        self.bbox = b;
        self.hits += 1;
        self.misses = 0;
    }
}

/// How alike two detections of the same face are: their overlap, or failing that a small
/// score for nearby centres; 0 when they are not the same face.
fn likeness(a: &FaceBox, b: &FaceBox) -> f32 {
    let overlap = iou(a, b);
    if overlap >= MATCH_IOU {
        return overlap;
    }
    let distance = a.centre_distance(b);
    if distance < MATCH_CENTRE {
        // Below any real overlap match, closer is better.
        MATCH_IOU * (1.0 - distance) * 0.5
    } else {
        0.0
    }
}

/// Intersection over union of two boxes.
pub fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.width).min(b.x + b.width);
    let y1 = (a.y + a.height).min(b.y + b.height);
    let inter = ((x1 - x0).max(0) * (y1 - y0).max(0)) as f32;
    let union = (a.width * a.height + b.width * b.height) as f32 - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
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

    #[test]
    fn a_box_seen_once_is_not_drawn() {
        let mut t = Tracker::new(2, 2);
        assert!(t.update(&[b(100)]).is_empty());
        assert!(t.update(&[]).is_empty());
        assert!(
            t.update(&[b(300)]).is_empty(),
            "elsewhere: a new, unconfirmed track"
        );
    }

    #[test]
    fn a_faint_box_confirms_and_keeps_a_face_but_never_starts_one() {
        let mut t = Tracker::new(2, 0);
        assert!(
            t.update_with_faint(&[], &[b(100)]).is_empty(),
            "faint alone"
        );
        assert!(
            t.update_with_faint(&[], &[b(100)]).is_empty(),
            "still faint alone"
        );
        assert!(t.update_with_faint(&[b(100)], &[]).is_empty(), "seen once");
        assert_eq!(
            t.update_with_faint(&[], &[b(104)]),
            vec![b(104)],
            "found again, faintly: confirmed"
        );
        assert_eq!(t.update_with_faint(&[], &[b(108)]), vec![b(108)], "kept");
        assert!(t.update_with_faint(&[], &[]).is_empty(), "missed, no hold");
        assert!(
            t.update_with_faint(&[b(300)], &[b(100)]).is_empty(),
            "a faint box where a face was forgotten starts nothing"
        );
    }

    #[test]
    fn a_face_seen_twice_is_drawn_and_survives_short_misses() {
        let mut t = Tracker::new(2, 2);
        assert!(t.update(&[b(100)]).is_empty());
        assert_eq!(
            t.update(&[b(104)]),
            vec![b(104)],
            "moved a little: same face"
        );
        assert_eq!(t.update(&[]), vec![b(104)], "one miss: held");
        assert_eq!(t.update(&[b(108)]), vec![b(108)], "seen again in N+2");
        assert_eq!(t.update(&[]), vec![b(108)]);
        assert_eq!(t.update(&[]), vec![b(108)]);
        assert!(t.update(&[]).is_empty(), "three misses: gone");
    }

    #[test]
    fn after_a_cut_a_face_not_found_again_goes_at_once() {
        let mut t = Tracker::new(2, 2);
        t.update(&[b(100), b(300)]);
        t.update(&[b(100), b(300)]);
        t.forget_held();
        assert_eq!(
            t.update(&[b(302)]),
            vec![b(302)],
            "found again: still drawn"
        );
        assert_eq!(t.update(&[b(302)]), vec![b(302)]);
    }

    #[test]
    fn confirm_one_draws_at_once() {
        let mut t = Tracker::new(1, 0);
        assert_eq!(t.update(&[b(5)]), vec![b(5)]);
        assert!(t.update(&[]).is_empty());
    }

    #[test]
    fn two_faces_are_tracked_apart() {
        let mut t = Tracker::new(2, 1);
        t.update(&[b(0), b(200)]);
        let drawn = t.update(&[b(202), b(2)]);
        assert_eq!(drawn.len(), 2);
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&b(0), &b(0)), 1.0);
        assert_eq!(iou(&b(0), &b(100)), 0.0);
        assert!((iou(&b(0), &b(20)) - 1.0 / 3.0).abs() < 1e-6);
    }
}
