//! Per-frame callbacks on a video element (`requestVideoFrameCallback`), with the frame's
//! metadata; used by the camera preview's painter and the latency probe.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::HtmlVideoElement;

#[wasm_bindgen]
extern "C" {
    /// A video element seen through the requestVideoFrameCallback API (not in web-sys).
    #[wasm_bindgen(extends = HtmlVideoElement)]
    type FrameVideo;
    #[wasm_bindgen(method, js_name = requestVideoFrameCallback)]
    fn request_video_frame_callback(this: &FrameVideo, callback: &js_sys::Function) -> u32;
    #[wasm_bindgen(method, js_name = cancelVideoFrameCallback)]
    fn cancel_video_frame_callback(this: &FrameVideo, handle: u32);
}

/// Whether the browser has requestVideoFrameCallback.
pub fn supported(video: &HtmlVideoElement) -> bool {
    js_sys::Reflect::has(video, &"requestVideoFrameCallback".into()).unwrap_or(false)
}

/// The frame callback, shared with itself so it can re-arm.
type FrameCallback = Rc<RefCell<Option<Closure<dyn FnMut(f64, JsValue)>>>>;

/// What a frame callback's metadata says of the frame, where the browser gives it.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// The video's count of presented frames (`presentedFrames`; the page may see fewer
    /// frames than the video presented).
    pub presented: Option<u32>,
    /// The frame's media time in seconds (`mediaTime`).
    pub media_time: Option<f64>,
}

/// Calls a function on every presented frame of a video until dropped, with the frame's
/// time and its [`Frame`] metadata.
pub struct FrameWatcher {
    video: HtmlVideoElement,
    handle: Rc<Cell<u32>>,
    callback: FrameCallback,
}

impl FrameWatcher {
    pub fn new(
        video: HtmlVideoElement,
        mut on_frame: impl FnMut(&HtmlVideoElement, f64, Frame) + 'static,
    ) -> Self {
        let handle = Rc::new(Cell::new(0));
        let callback: FrameCallback = Rc::new(RefCell::new(None));
        let weak = Rc::downgrade(&callback);
        let (video_in, handle_in) = (video.clone(), handle.clone());
        let closure = Closure::<dyn FnMut(f64, JsValue)>::new(move |now: f64, meta: JsValue| {
            let number = |key: &str| js_sys::Reflect::get(&meta, &key.into()).ok()?.as_f64();
            let frame = Frame {
                presented: number("presentedFrames").map(|v| v as u32),
                media_time: number("mediaTime"),
            };
            on_frame(&video_in, now, frame);
            // Re-arm for the next frame (the callback fires once per registration).
            if let Some(cb) = weak.upgrade() {
                if let Some(cb) = cb.borrow().as_ref() {
                    let frames: &FrameVideo = video_in.unchecked_ref();
                    handle_in.set(frames.request_video_frame_callback(cb.as_ref().unchecked_ref()));
                }
            }
        });
        let frames: &FrameVideo = video.unchecked_ref();
        handle.set(frames.request_video_frame_callback(closure.as_ref().unchecked_ref()));
        *callback.borrow_mut() = Some(closure);
        FrameWatcher {
            video,
            handle,
            callback,
        }
    }
}

impl Drop for FrameWatcher {
    fn drop(&mut self) {
        let frames: &FrameVideo = self.video.unchecked_ref();
        frames.cancel_video_frame_callback(self.handle.get());
        self.callback.borrow_mut().take();
    }
}
