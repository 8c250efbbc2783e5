//! The camera preview painted into a canvas frame by frame, so the studio plays one video
//! (the output) instead of two; the camera's own video is the fallback
//! ([`crate::preview_mode`] says why and when).

use super::frames::{self, FrameWatcher};
use crate::preview_mode::{PreviewMode, Shown, CHECK_EVERY_MS};
use leptos::prelude::IntervalHandle;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement};

/// Paints the camera video's frames into the canvas until dropped; dropping it shows the
/// video again.
pub struct Painter {
    state: Rc<State>,
    check: Option<IntervalHandle>,
}

struct State {
    video: HtmlVideoElement,
    canvas: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
    mode: RefCell<PreviewMode>,
    /// The frame callbacks; taken (and so cancelled) when the canvas is given up.
    watcher: RefCell<Option<FrameWatcher>>,
}

impl Painter {
    /// Starts painting `video` (the camera) into `canvas`, which replaces the video once a
    /// frame is painted. `None`, with the video left as the preview, where the browser lacks
    /// requestVideoFrameCallback or a 2D canvas.
    pub fn start(video: HtmlVideoElement, canvas: HtmlCanvasElement) -> Option<Self> {
        if !frames::supported(&video) {
            return None;
        }
        let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        let state = Rc::new(State {
            video: video.clone(),
            canvas,
            ctx,
            mode: RefCell::new(PreviewMode::default()),
            watcher: RefCell::new(None),
        });
        state.show(Shown::Video);
        let on_frame = {
            let state = Rc::downgrade(&state);
            move |_: &HtmlVideoElement, _: f64, _: frames::Frame| {
                if let Some(state) = state.upgrade() {
                    state.paint();
                }
            }
        };
        *state.watcher.borrow_mut() = Some(FrameWatcher::new(video, on_frame));
        let check = {
            let state = Rc::downgrade(&state);
            leptos::prelude::set_interval_with_handle(
                move || {
                    if let Some(state) = state.upgrade() {
                        state.check();
                    }
                },
                Duration::from_millis(CHECK_EVERY_MS.into()),
            )
            .ok()
        };
        Some(Painter { state, check })
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        if let Some(check) = self.check.take() {
            check.clear();
        }
        self.state.watcher.borrow_mut().take();
        self.state.show(Shown::Video);
    }
}

impl State {
    /// Draws the video's current frame, sizing the canvas to the camera's picture (which
    /// turns with a phone).
    fn paint(&self) {
        if !self.mode.borrow().painting() {
            return;
        }
        let (w, h) = (self.video.video_width(), self.video.video_height());
        if w == 0 || h == 0 {
            return;
        }
        if self.canvas.width() != w || self.canvas.height() != h {
            self.canvas.set_width(w);
            self.canvas.set_height(h);
        }
        if self
            .ctx
            .draw_image_with_html_video_element(&self.video, 0.0, 0.0)
            .is_err()
        {
            return;
        }
        let change = self.mode.borrow_mut().painted();
        if let Some(shown) = change {
            self.show(shown);
        }
    }

    /// The periodic check that frames still arrive.
    fn check(&self) {
        let visible = web_sys::window()
            .and_then(|w| w.document())
            .is_none_or(|d| !d.hidden());
        let change = self.mode.borrow_mut().check(visible);
        if let Some(shown) = change {
            self.watcher.borrow_mut().take();
            self.show(shown);
        }
    }

    /// Shows one element and hides the other.
    fn show(&self, shown: Shown) {
        self.video.set_hidden(shown != Shown::Video);
        self.canvas.set_hidden(shown != Shown::Canvas);
    }
}
