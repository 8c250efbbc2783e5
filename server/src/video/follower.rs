//! Carries faces from the frame a detection ran on to every later frame, so frames never
//! wait for a detection and detections can be rare: each face's patch is looked for in the
//! next frame around where it was (block matching on small grey copies of the frames), and
//! its box moves with it. A face the follower cannot find again is reported lost, so privacy
//! mode can hide the whole frame rather than guess. Pure Rust on small images: ~0.1 ms a
//! face and frame, tested with synthetic frames.

use super::frame::{FaceBox, Frame};
use super::timeline::FrameBoxes;
use std::collections::VecDeque;

/// The grey copies are this many times smaller than the frame on each side (a 640×480
/// frame → 160×120): small enough to search cheaply, large enough that a 48 px face is a
/// 12 px patch with texture to match.
pub const SCALE: u32 = 4;
/// Frames kept to replay a late detection through (its frame up to the newest; ~1 s at
/// 30 fps, ~600 KB at 640×480): a detection that arrives later than this is too old to
/// carry, so its faces are placed where it saw them and count as lost.
const RECENT: usize = 32;
/// What frames got is kept until the frame path lets go of them ([`Follower::forget_before`]);
/// this caps it should a caller never do (a frame path holds frames well under a second).
const CARRIED_CAP: usize = 1024;
/// How far a face may move between two frames, as a share of its side (a person walking
/// at the camera moves their face by about a tenth of its size a frame), at least
/// [`MIN_REACH`] small pixels.
const REACH: f32 = 0.3;
const MIN_REACH: i32 = 3;
/// A match whose mean absolute difference per pixel (0–255, after removing the patch's
/// brightness) is above this has lost the face: it turned away, left or was covered.
const LOST_DIFF: f32 = 18.0;
/// A match this much better than [`LOST_DIFF`] (as a share of it) refreshes the patch.
const REFRESH: f32 = 0.5;
/// A face box's patch is its middle part (the edges of a box hold background, which moves
/// differently from the face).
const CORE: f32 = 0.7;

/// A small grey copy of a frame: each 4×4 block's mean of (B + 2G + R) / 4 over four of its
/// pixels (one per 2×2 quarter: a quarter of the reads, as good for matching).
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    width: usize,
    height: usize,
    px: Vec<u8>,
}

impl Grey {
    /// The grey copy of `frame`.
    pub fn of(frame: &Frame) -> Self {
        let s = SCALE as usize;
        let fw = frame.width as usize;
        let (width, height) = (fw / s, frame.height as usize / s);
        let luma = |x: usize, y: usize| {
            let i = (y * fw + x) * 3;
            let p = &frame.data[i..i + 3];
            u32::from(p[0]) + 2 * u32::from(p[1]) + u32::from(p[2])
        };
        let mut px = Vec::with_capacity(width * height);
        for y in 0..height {
            let (y0, y1) = (y * s + 1, y * s + 3);
            for x in 0..width {
                let (x0, x1) = (x * s + 1, x * s + 3);
                let sum = luma(x0, y0) + luma(x1, y0) + luma(x0, y1) + luma(x1, y1);
                px.push((sum / 16) as u8);
            }
        }
        Grey { width, height, px }
    }

    fn at(&self, x: usize, y: usize) -> u8 {
        self.px[y * self.width + x]
    }

    /// The patch `w`×`h` at (`x`, `y`) (inside the image).
    fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Grey {
        let mut px = Vec::with_capacity(w * h);
        for row in y..y + h {
            px.extend_from_slice(&self.px[row * self.width + x..row * self.width + x + w]);
        }
        Grey {
            width: w,
            height: h,
            px,
        }
    }

    fn mean(&self) -> f32 {
        self.px.iter().map(|&p| f32::from(p)).sum::<f32>() / self.px.len().max(1) as f32
    }
}

/// One face being followed.
#[derive(Debug, Clone)]
struct Followed {
    /// Where the face is, in frame pixels.
    face: FaceBox,
    /// Boxed (confirmed by the tracker), or only to be hidden in privacy mode.
    drawn: bool,
    /// Its patch as the detection saw it, where the patch is now (small pixels, top left),
    /// and where the patch sits relative to the box (frame pixels).
    patch: Grey,
    at: (i32, i32),
    offset: (i32, i32),
    lost: bool,
}

/// Follows the faces of the newest detection through every frame after it.
#[derive(Debug, Default)]
pub struct Follower {
    /// Recent frames' grey copies by number, and whether each starts a new shot.
    recent: VecDeque<(u64, bool, Grey)>,
    /// The detection the faces come from, and the faces as of frame `at`.
    detected: Option<u64>,
    at: u64,
    faces: Vec<Followed>,
    /// What each recent frame got, by number.
    carried: VecDeque<(u64, FrameBoxes)>,
}

impl Follower {
    /// Takes frame `seq` (in order; `cut` when it starts a new shot) and moves every face
    /// to it.
    pub fn frame(&mut self, seq: u64, cut: bool, grey: Grey) {
        self.recent.push_back((seq, cut, grey));
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        let index = self.recent.len() - 1;
        self.step(index);
    }

    /// A detection of frame `seq` found `drawn` (to box) and `hidden` (every face): they
    /// are followed from that frame on, through the frames since.
    pub fn detected(&mut self, seq: u64, drawn: &[FaceBox], hidden: &[FaceBox]) {
        let Some(start) = self.recent.iter().position(|(s, _, _)| *s == seq) else {
            self.detected_long_ago(seq, drawn, hidden);
            return;
        };
        let grey = &self.recent[start].2;
        self.faces = each_face(drawn, hidden, |b, is_drawn| patch_of(grey, b, is_drawn));
        self.detected = Some(seq);
        self.at = seq;
        self.carried.retain(|(s, _)| *s < seq);
        self.record(seq);
        for index in start + 1..self.recent.len() {
            self.step(index);
        }
    }

    /// A detection of a frame older than those kept (the detector is far behind): no
    /// frames to carry its faces through, so they stay where it saw them, lost (boxed there
    /// until the next detection, which the frame path asks for at once; privacy mode hides
    /// the whole frame meanwhile). Forgetting it instead would leave frames without the
    /// boxes of a face it confirmed.
    fn detected_long_ago(&mut self, seq: u64, drawn: &[FaceBox], hidden: &[FaceBox]) {
        let Some(&(newest, _, _)) = self.recent.back() else {
            return;
        };
        if newest <= seq || self.cut_since(seq) {
            // Not older than the frames kept after all, or of a shot that has ended.
            return;
        }
        self.faces = each_face(drawn, hidden, |b, is_drawn| Followed {
            face: *b,
            drawn: is_drawn,
            patch: Grey {
                width: 0,
                height: 0,
                px: Vec::new(),
            },
            at: (0, 0),
            offset: (0, 0),
            lost: true,
        });
        self.detected = Some(seq);
        self.at = newest;
        self.record(newest);
    }

    /// Whether a frame after `seq` among those kept starts a new shot (or all kept are
    /// after one that may have).
    fn cut_since(&self, seq: u64) -> bool {
        self.recent.iter().any(|(s, cut, _)| *s > seq && *cut)
    }

    /// The frame path is done with every frame before `seq`.
    pub fn forget_before(&mut self, seq: u64) {
        while self.carried.front().is_some_and(|(s, _)| *s < seq) {
            self.carried.pop_front();
        }
    }

    /// Whether a face of the newest detection is lost in the newest frame.
    pub fn lost(&self) -> bool {
        self.faces.iter().any(|f| f.lost)
    }

    /// What frame `seq` gets (the default, with no distance, if it is not known); a face
    /// of the detection that could not be found in it makes it `uncertain`.
    pub fn carried(&self, seq: u64) -> FrameBoxes {
        self.carried
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// Moves the faces from frame `at` to the frame at `index` of the recent ones.
    fn step(&mut self, index: usize) {
        let (seq, cut, _) = &self.recent[index];
        let (seq, cut) = (*seq, *cut);
        if cut {
            // A new shot: nothing of the old one carries over.
            self.faces.clear();
            self.detected = None;
        }
        if self.detected.is_some() && seq == self.at + 1 {
            let grey = &self.recent[index].2;
            if self.faces.iter().any(|f| !f.lost) {
                let sums = AreaSums::of(grey);
                for face in &mut self.faces {
                    follow(face, grey, &sums);
                }
            }
            self.at = seq;
        }
        self.record(seq);
    }

    fn record(&mut self, seq: u64) {
        let carried = match self.detected {
            Some(d) if self.at == seq => FrameBoxes {
                // A lost face keeps its box where it was last seen until the next
                // detection (an urgent one: the frame path asks for it at once).
                drawn: self
                    .faces
                    .iter()
                    .filter(|f| f.drawn)
                    .map(|f| f.face)
                    .collect(),
                hidden: self.faces.iter().map(|f| f.face).collect(),
                distance: Some(seq - d),
                span: None,
                uncertain: self.faces.iter().any(|f| f.lost),
            },
            // The faces could not be brought to this frame (a gap in the frames kept).
            Some(d) => FrameBoxes {
                distance: Some(seq.saturating_sub(d)),
                uncertain: true,
                ..FrameBoxes::default()
            },
            None => FrameBoxes::default(),
        };
        self.carried.retain(|(s, _)| *s != seq);
        self.carried.push_back((seq, carried));
        while self.carried.len() > CARRIED_CAP {
            self.carried.pop_front();
        }
    }
}

/// One followed face per distinct box of `hidden` (every face) and `drawn` (those boxed),
/// made by `follow`; a box in both is drawn.
fn each_face(
    drawn: &[FaceBox],
    hidden: &[FaceBox],
    follow: impl Fn(&FaceBox, bool) -> Followed,
) -> Vec<Followed> {
    let mut faces: Vec<Followed> = Vec::new();
    for (b, is_drawn) in hidden
        .iter()
        .map(|b| (b, false))
        .chain(drawn.iter().map(|b| (b, true)))
    {
        if let Some(same) = faces.iter_mut().find(|f| f.face == *b) {
            same.drawn |= is_drawn;
            continue;
        }
        faces.push(follow(b, is_drawn));
    }
    faces
}

/// The patch of `b` in `grey`, to follow.
fn patch_of(grey: &Grey, b: &FaceBox, drawn: bool) -> Followed {
    let s = SCALE as f32;
    let (w, h) = (b.width as f32 * CORE / s, b.height as f32 * CORE / s);
    let (w, h) = (w.round().max(2.0) as usize, h.round().max(2.0) as usize);
    let cx = (b.x as f32 + b.width as f32 / 2.0) / s;
    let cy = (b.y as f32 + b.height as f32 / 2.0) / s;
    let x = (cx - w as f32 / 2.0)
        .round()
        .clamp(0.0, (grey.width.saturating_sub(w)) as f32) as usize;
    let y = (cy - h as f32 / 2.0)
        .round()
        .clamp(0.0, (grey.height.saturating_sub(h)) as f32) as usize;
    let (w, h) = (w.min(grey.width - x), h.min(grey.height - y));
    let patch = grey.crop(x, y, w, h);
    Followed {
        face: *b,
        drawn,
        at: (x as i32, y as i32),
        offset: (x as i32 * SCALE as i32 - b.x, y as i32 * SCALE as i32 - b.y),
        patch,
        lost: w < 2 || h < 2,
    }
}

/// Sums of a grey copy's pixels over any rectangle in constant time (a summed-area table):
/// every candidate position of every face needs its area's mean brightness.
struct AreaSums {
    /// `(width + 1) × (height + 1)`: entry (x, y) sums the pixels left of x and above y.
    table: Vec<u32>,
    stride: usize,
}

impl AreaSums {
    fn of(grey: &Grey) -> Self {
        let stride = grey.width + 1;
        let mut table = vec![0u32; stride * (grey.height + 1)];
        for y in 0..grey.height {
            let mut row = 0u32;
            for x in 0..grey.width {
                row += u32::from(grey.at(x, y));
                table[(y + 1) * stride + x + 1] = table[y * stride + x + 1] + row;
            }
        }
        AreaSums { table, stride }
    }

    /// The sum over the `w`×`h` area at (`x`, `y`).
    fn sum(&self, x: usize, y: usize, w: usize, h: usize) -> u32 {
        let at = |x: usize, y: usize| self.table[y * self.stride + x];
        at(x + w, y + h) + at(x, y) - at(x + w, y) - at(x, y + h)
    }
}

/// Moves `face` to where its patch matches best in `grey`, near where it was.
fn follow(face: &mut Followed, grey: &Grey, sums: &AreaSums) {
    if face.lost {
        return;
    }
    let s = SCALE as i32;
    let (pw, ph) = (face.patch.width as i32, face.patch.height as i32);
    let reach = ((pw.max(ph) as f32 * REACH).round() as i32).max(MIN_REACH);
    let (px, py) = face.at;
    let patch_mean = face.patch.mean();
    let mut best: Option<(f32, i32, i32)> = None;
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let (x, y) = (px + dx, py + dy);
            if x < 0 || y < 0 || x + pw > grey.width as i32 || y + ph > grey.height as i32 {
                continue;
            }
            let diff = difference(&face.patch, patch_mean, grey, sums, x as usize, y as usize);
            if best.is_none_or(|(d, _, _)| diff < d) {
                best = Some((diff, dx, dy));
            }
        }
    }
    match best {
        Some((diff, dx, dy)) if diff <= LOST_DIFF => {
            face.at = (px + dx, py + dy);
            face.face.x = face.at.0 * s - face.offset.0;
            face.face.y = face.at.1 * s - face.offset.1;
            if diff <= LOST_DIFF * REFRESH {
                // A sure match: take the face as it looks now (it turns, its light
                // changes); the next detection puts any drift right.
                let (x, y) = (face.at.0 as usize, face.at.1 as usize);
                face.patch = grey.crop(x, y, pw as usize, ph as usize);
            }
        }
        _ => face.lost = true,
    }
}

/// Mean absolute difference per pixel between `patch` and the same-sized area of `grey` at
/// (`x`, `y`), each without its mean brightness (a light change is not motion).
fn difference(
    patch: &Grey,
    patch_mean: f32,
    grey: &Grey,
    sums: &AreaSums,
    x: usize,
    y: usize,
) -> f32 {
    let (w, h) = (patch.width, patch.height);
    let shift = sums.sum(x, y, w, h) as f32 / (w * h) as f32 - patch_mean;
    // Eight running sums, so the compiler can work on eight pixels at once.
    let mut lanes = [0.0f32; 8];
    let mut rest = 0.0f32;
    for (row, wanted) in patch.px.chunks_exact(w).enumerate() {
        let start = (y + row) * grey.width + x;
        let found = &grey.px[start..start + w];
        let (a8, b8) = (wanted.chunks_exact(8), found.chunks_exact(8));
        for (&a, &b) in a8.remainder().iter().zip(b8.remainder()) {
            rest += (f32::from(a) - f32::from(b) + shift).abs();
        }
        for (a, b) in a8.zip(b8) {
            for k in 0..8 {
                lanes[k] += (f32::from(a[k]) - f32::from(b[k]) + shift).abs();
            }
        }
    }
    (lanes.iter().sum::<f32>() + rest) / (w * h) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 160×120 frame of smooth noise-like texture with a distinct "face" (a bright
    /// textured square) whose top-left is at (`fx`, `fy`).
    fn frame_with_face(fx: u32, fy: u32) -> Frame {
        let (w, h) = (160 * SCALE, 120 * SCALE);
        let mut f = Frame::filled(w, h, [0, 0, 0]);
        for y in 0..h {
            for x in 0..w {
                // Texture without repeats (a hash of the 8 px cell), so a match is unique.
                let hash =
                    |u: u32, v: u32| (u.wrapping_mul(2_654_435_761) ^ v.wrapping_mul(40_503)) >> 11;
                let inside = x >= fx && x < fx + 120 && y >= fy && y < fy + 120;
                let v = if inside {
                    150 + (hash((x - fx) / 8, (y - fy) / 8 + 1000) % 100) as u8
                } else {
                    40 + (hash(x / 8, y / 8) % 60) as u8
                };
                let i = ((y * w + x) * 3) as usize;
                f.data[i..i + 3].copy_from_slice(&[v, v, v]);
            }
        }
        f
    }

    fn face_at(x: i32, y: i32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: 120,
            height: 120,
        }
    }

    #[test]
    fn grey_copies_are_block_means() {
        let f = Frame::filled(8, 8, [40, 100, 200]);
        let g = Grey::of(&f);
        assert_eq!((g.width, g.height), (2, 2));
        assert_eq!(g.px, vec![110; 4]); // (40 + 200 + 200) / 4
    }

    #[test]
    fn a_moving_face_is_followed_frame_by_frame() {
        let mut follower = Follower::default();
        follower.frame(0, true, Grey::of(&frame_with_face(100, 100)));
        follower.detected(0, &[face_at(100, 100)], &[face_at(100, 100)]);
        // The face moves 8 px right and 4 px down a frame.
        for n in 1..=10u32 {
            follower.frame(
                u64::from(n),
                false,
                Grey::of(&frame_with_face(100 + 8 * n, 100 + 4 * n)),
            );
        }
        let c = follower.carried(10);
        assert_eq!(c.distance, Some(10));
        assert!(!c.uncertain);
        assert_eq!(c.drawn.len(), 1);
        let b = c.drawn[0];
        assert!(
            (b.x - 180).abs() <= 4 && (b.y - 140).abs() <= 4,
            "box at {b:?}, face at (180, 140)"
        );
    }

    #[test]
    fn a_late_detection_is_replayed_through_the_frames_since() {
        let mut follower = Follower::default();
        for n in 0..6u32 {
            follower.frame(
                u64::from(n),
                n == 0,
                Grey::of(&frame_with_face(100 + 8 * n, 100)),
            );
        }
        assert_eq!(
            follower.carried(5),
            FrameBoxes::default(),
            "nothing detected yet"
        );
        // The detection of frame 2 finishes while frame 5 is the newest.
        follower.detected(2, &[face_at(116, 100)], &[face_at(116, 100)]);
        let c = follower.carried(5);
        assert_eq!(c.distance, Some(3));
        assert!((c.drawn[0].x - 140).abs() <= 4, "{:?}", c.drawn[0]);
    }

    #[test]
    fn a_face_that_vanishes_is_lost_and_a_cut_forgets_every_face() {
        let mut follower = Follower::default();
        follower.frame(0, true, Grey::of(&frame_with_face(100, 100)));
        follower.detected(0, &[face_at(100, 100)], &[face_at(100, 100)]);
        // The face is gone (covered by background texture).
        let mut gone = frame_with_face(100, 100);
        for p in gone.data.chunks_exact_mut(3) {
            p.copy_from_slice(&[60, 60, 60]);
        }
        follower.frame(1, false, Grey::of(&gone));
        let c = follower.carried(1);
        assert!(c.uncertain, "privacy mode then hides the whole frame");
        assert_eq!(
            c.drawn,
            vec![face_at(100, 100)],
            "boxed where it was last seen"
        );
        assert_eq!(c.hidden.len(), 1);
        follower.frame(2, true, Grey::of(&frame_with_face(300, 200)));
        assert_eq!(follower.carried(2), FrameBoxes::default());
    }

    #[test]
    fn what_a_frame_got_is_kept_until_the_frame_path_lets_go() {
        let mut follower = Follower::default();
        follower.frame(0, true, Grey::of(&frame_with_face(100, 100)));
        follower.detected(0, &[face_at(100, 100)], &[face_at(100, 100)]);
        let still = Grey::of(&frame_with_face(100, 100));
        for n in 1..=(RECENT as u64 * 2) {
            follower.frame(n, false, still.clone());
        }
        // Frames held back longer than the frames kept for replay (a start of a shot
        // waiting for its faces, on a slow machine) still get their boxes.
        assert_eq!(follower.carried(1).drawn, vec![face_at(100, 100)]);
        follower.forget_before(2);
        assert_eq!(follower.carried(1), FrameBoxes::default());
        assert_eq!(follower.carried(2).drawn, vec![face_at(100, 100)]);
    }

    #[test]
    fn a_detection_older_than_the_frames_kept_is_placed_where_it_saw_the_faces() {
        let mut follower = Follower::default();
        let still = Grey::of(&frame_with_face(100, 100));
        for n in 0..(RECENT as u64 + 10) {
            follower.frame(n, n == 0, still.clone());
        }
        let newest = RECENT as u64 + 9;
        // The detector was far behind: its result is of frame 3.
        follower.detected(3, &[face_at(100, 100)], &[face_at(100, 100)]);
        let c = follower.carried(newest);
        assert_eq!(c.drawn, vec![face_at(100, 100)], "boxed where it was seen");
        assert!(c.uncertain, "privacy mode hides the whole frame");
        assert!(follower.lost(), "the next detection is asked for at once");
        // A detection of a shot that has ended since is not carried into the new one.
        let mut follower = Follower::default();
        for n in 0..(RECENT as u64 + 10) {
            follower.frame(n, n == 0 || n == RECENT as u64 + 5, still.clone());
        }
        follower.detected(3, &[face_at(100, 100)], &[face_at(100, 100)]);
        assert_eq!(follower.carried(newest), FrameBoxes::default());
    }

    #[test]
    fn faint_faces_are_followed_for_hiding_only() {
        let mut follower = Follower::default();
        follower.frame(0, true, Grey::of(&frame_with_face(100, 100)));
        follower.detected(0, &[], &[face_at(100, 100)]);
        follower.frame(1, false, Grey::of(&frame_with_face(104, 100)));
        let c = follower.carried(1);
        assert!(c.drawn.is_empty());
        assert_eq!(c.hidden.len(), 1);
    }
}
