//! Which element shows the camera preview: a canvas the page paints each camera frame into,
//! or the camera's own `<video>` where painting does not work.
//!
//! Why a canvas at all: desktop Chromium lowers the display's refresh rate to the videos'
//! frame rate when two or more videos play at once (its "video conference" heuristic). The
//! studio would then show its 30 fps output on a 30 Hz display, where every late display
//! frame or playback-rate change makes the player skip a frame; with the camera shown as a
//! painted canvas only one video plays, and the display keeps its full rate (measured: the
//! player's skipped frames went from 0.4–5 % a run to 0 in the same browser).
//!
//! The canvas is shown only once a frame has been painted into it, and given up for good
//! when frames stop arriving while the page is visible (a browser that stops delivering
//! frames of a video it does not display): the camera's own video is shown again.

/// The element showing the preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The camera's `<video>` itself.
    Video,
    /// The canvas the frames are painted into.
    Canvas,
}

/// How often the page checks that frames still arrive (ms); a check with none painted since
/// the last one gives the canvas up. A camera in dim light still gives several frames a second.
pub const CHECK_EVERY_MS: u32 = 1500;

/// Where the preview is in its life: what it shows follows from this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stage {
    /// No frame painted yet: the video shows.
    #[default]
    Waiting,
    /// Frames are painted: the canvas shows.
    Painting,
    /// Frames stopped: the video shows, for good.
    GivenUp,
}

/// The preview's state: its stage, and whether frames arrived since the last check.
#[derive(Debug, Clone, Default)]
pub struct PreviewMode {
    stage: Stage,
    painted_since_check: bool,
}

impl PreviewMode {
    /// What is shown now.
    pub fn shown(&self) -> Shown {
        match self.stage {
            Stage::Painting => Shown::Canvas,
            Stage::Waiting | Stage::GivenUp => Shown::Video,
        }
    }

    /// Whether frames should still be painted (false once the canvas is given up).
    pub fn painting(&self) -> bool {
        self.stage != Stage::GivenUp
    }

    /// A frame was painted into the canvas; returns the element to show if that changes.
    pub fn painted(&mut self) -> Option<Shown> {
        match self.stage {
            Stage::GivenUp => None,
            Stage::Painting => {
                self.painted_since_check = true;
                None
            }
            Stage::Waiting => {
                self.painted_since_check = true;
                self.stage = Stage::Painting;
                Some(Shown::Canvas)
            }
        }
    }

    /// The periodic check; `visible` is whether the page is visible (a hidden page renders
    /// no frames, which is no reason to give up). Returns the element to show if that changes.
    pub fn check(&mut self, visible: bool) -> Option<Shown> {
        // A hidden page's check counts as a painted one, so the first check after the page
        // shows again gives the frames a whole period to resume.
        let painted = std::mem::replace(&mut self.painted_since_check, !visible);
        if !visible || painted || self.stage != Stage::Painting {
            return None;
        }
        self.stage = Stage::GivenUp;
        Some(Shown::Video)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_video_shows_until_the_first_frame_is_painted() {
        let mut mode = PreviewMode::default();
        assert_eq!(mode.shown(), Shown::Video);
        // No frame yet: checks change nothing (the camera may take a while to start).
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.painted(), Some(Shown::Canvas));
        assert_eq!(mode.painted(), None);
        assert_eq!(mode.shown(), Shown::Canvas);
        assert!(mode.painting());
    }

    #[test]
    fn frames_arriving_keep_the_canvas() {
        let mut mode = PreviewMode::default();
        mode.painted();
        for _ in 0..5 {
            mode.painted();
            assert_eq!(mode.check(true), None);
        }
        assert_eq!(mode.shown(), Shown::Canvas);
    }

    #[test]
    fn frames_stopping_give_the_canvas_up_for_good() {
        let mut mode = PreviewMode::default();
        mode.painted();
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.check(true), Some(Shown::Video));
        assert!(!mode.painting());
        // A late frame does not bring the canvas back: the browser would pause the hidden
        // video again, and the preview would flip every check.
        assert_eq!(mode.painted(), None);
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.shown(), Shown::Video);
    }

    #[test]
    fn a_hidden_page_is_no_reason_to_give_up() {
        let mut mode = PreviewMode::default();
        mode.painted();
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.check(false), None);
        assert_eq!(mode.check(false), None);
        // Back in view: the first check may come before any frame was rendered again.
        assert_eq!(mode.check(true), None);
        assert_eq!(mode.shown(), Shown::Canvas);
        // A whole quiet period in view still gives up.
        assert_eq!(mode.check(true), Some(Shown::Video));
    }
}
