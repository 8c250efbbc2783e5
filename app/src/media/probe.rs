//! The latency probe: on every presented frame of the preview and the output video
//! (requestVideoFrameCallback) it reads the frame-code strip the test clip carries and
//! publishes glass-to-glass latency; from the output's own timeline (media time and
//! presented count) it publishes player fps and the frames the player skipped. With a real
//! camera there is no valid code sequence, and the panel shows "—".

use super::frames::{Frame, FrameWatcher};
use crate::latency::{quantile, CodeClock, PlayerTimeline, BLOCKS, STRIP_HEIGHT, STRIP_TOP};
use crate::ui::{LiveEvent, PlayerFigures, Ui};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement};

/// Width of the scratch canvas the strip is drawn into (one 40 px block per code bit).
const STRIP_W: u32 = 640;
/// Height of the scratch canvas.
const STRIP_H: u32 = 24;
/// Latency samples kept for the panel's median.
const RECENT: usize = 60;
/// Samples kept for the benchmark in `window.hlsFaceProbe`.
const EXPORTED: u32 = 100_000;

/// The probe; dropping it stops the frame callbacks.
pub struct Probe {
    _inner: Rc<Inner>,
    _watchers: Vec<FrameWatcher>,
}

struct Inner {
    ui: Ui,
    ctx: CanvasRenderingContext2d,
    clock: RefCell<CodeClock>,
    timeline: RefCell<PlayerTimeline>,
    recent: RefCell<VecDeque<f64>>,
    /// Latency samples taken.
    measured: Cell<u64>,
    /// The last second's output callbacks: (time, presented frames so far).
    frame_times: RefCell<VecDeque<(f64, Option<u32>)>>,
    export: js_sys::Object,
    samples: js_sys::Array,
    /// When each of `samples` was taken (ms on the page's clock), for start-up figures.
    sample_times: js_sys::Array,
    /// The frame code of each of `samples`: the benchmark's latency budget finds the same
    /// frame in the server's frame times.
    sample_codes: js_sys::Array,
    /// Whether the output has presented a frame yet.
    output_started: Cell<bool>,
}

impl Probe {
    /// Watches both videos; `None` if the browser lacks requestVideoFrameCallback.
    pub fn start(ui: Ui, preview: HtmlVideoElement, output: HtmlVideoElement) -> Option<Self> {
        if !super::frames::supported(&preview) {
            return None;
        }
        let document = web_sys::window()?.document()?;
        let canvas: HtmlCanvasElement = document.create_element("canvas").ok()?.dyn_into().ok()?;
        canvas.set_width(STRIP_W);
        canvas.set_height(STRIP_H);
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"willReadFrequently".into(), &JsValue::TRUE);
        let ctx: CanvasRenderingContext2d = canvas
            .get_context_with_context_options("2d", &options)
            .ok()??
            .dyn_into()
            .ok()?;
        let export = js_sys::Object::new();
        let samples = js_sys::Array::new();
        let _ = js_sys::Reflect::set(&export, &"latencies".into(), &samples);
        let sample_times = js_sys::Array::new();
        let _ = js_sys::Reflect::set(&export, &"sampleTimes".into(), &sample_times);
        let sample_codes = js_sys::Array::new();
        let _ = js_sys::Reflect::set(&export, &"sampleCodes".into(), &sample_codes);
        let window: JsValue = web_sys::window()?.into();
        let _ = js_sys::Reflect::set(&window, &"hlsFaceProbe".into(), &export);
        let inner = Rc::new(Inner {
            ui,
            ctx,
            clock: RefCell::new(CodeClock::default()),
            timeline: RefCell::new(PlayerTimeline::default()),
            recent: RefCell::new(VecDeque::new()),
            measured: Cell::new(0),
            frame_times: RefCell::new(VecDeque::new()),
            export,
            samples,
            sample_times,
            sample_codes,
            output_started: Cell::new(false),
        });
        let on_preview = {
            let inner = Rc::downgrade(&inner);
            move |video: &HtmlVideoElement, now: f64, frame: Frame| {
                if let Some(inner) = inner.upgrade() {
                    if let Some(code) = inner.read_code(video) {
                        let mut clock = inner.clock.borrow_mut();
                        clock.preview(code, now, frame.presented);
                        let tally = &clock.preview;
                        inner.publish([("previewGaps", tally.gaps), ("previewCodes", tally.codes)]);
                    }
                }
            }
        };
        let on_output = {
            let inner = Rc::downgrade(&inner);
            move |video: &HtmlVideoElement, now: f64, frame: Frame| {
                if let Some(inner) = inner.upgrade() {
                    inner.on_output_frame(video, now, frame);
                }
            }
        };
        Some(Probe {
            _watchers: vec![
                FrameWatcher::new(preview, on_preview),
                FrameWatcher::new(output, on_output),
            ],
            _inner: inner,
        })
    }
}

impl Inner {
    /// Reads the strip of the video's current frame.
    fn read_code(&self, video: &HtmlVideoElement) -> Option<u32> {
        let (w, h) = (video.video_width() as f64, video.video_height() as f64);
        if w == 0.0 || h == 0.0 {
            return None;
        }
        self.ctx
            .draw_image_with_html_video_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
                video,
                0.0,
                h * STRIP_TOP,
                w,
                h * STRIP_HEIGHT,
                0.0,
                0.0,
                STRIP_W as f64,
                STRIP_H as f64,
            )
            .ok()?;
        let data = self
            .ctx
            .get_image_data(0.0, 0.0, STRIP_W as f64, STRIP_H as f64)
            .ok()?
            .data();
        let block = STRIP_W as usize / BLOCKS;
        let mut luma = [0u8; BLOCKS];
        for (k, l) in luma.iter_mut().enumerate() {
            let (x, y) = (k * block + block / 2, STRIP_H as usize / 2);
            let i = (y * STRIP_W as usize + x) * 4;
            let (r, g, b) = (data[i] as u32, data[i + 1] as u32, data[i + 2] as u32);
            *l = ((r * 299 + g * 587 + b * 114) / 1000) as u8;
        }
        crate::latency::decode(&luma)
    }

    /// Puts figures on `window.hlsFaceProbe`, for the benchmark.
    fn publish(&self, figures: [(&str, u64); 2]) {
        for (key, value) in figures {
            let _ =
                js_sys::Reflect::set(&self.export, &key.into(), &JsValue::from_f64(value as f64));
        }
    }

    fn on_output_frame(&self, video: &HtmlVideoElement, now: f64, frame: Frame) {
        if !self.output_started.replace(true) {
            // The first output frame on screen (ms on the page's clock): time to first frame.
            let _ = js_sys::Reflect::set(
                &self.export,
                &"firstOutputAt".into(),
                &JsValue::from_f64(now),
            );
        }
        let mut timeline = self.timeline.borrow_mut();
        if let (Some(media_time), Some(presented)) = (frame.media_time, frame.presented) {
            timeline.frame(media_time, presented);
            self.publish([("skipped", timeline.skipped), ("due", timeline.due)]);
        }
        let mut times = self.frame_times.borrow_mut();
        times.push_back((now, frame.presented));
        while times.front().is_some_and(|(t, _)| now - t > 1000.0) {
            times.pop_front();
        }
        let Some(code) = self.read_code(video) else {
            return;
        };
        let Some(latency) = self.clock.borrow().output(code, now) else {
            return;
        };
        if self.samples.length() < EXPORTED {
            self.samples.push(&JsValue::from_f64(latency));
            self.sample_times.push(&JsValue::from_f64(now));
            self.sample_codes.push(&JsValue::from_f64(f64::from(code)));
        }
        let mut recent = self.recent.borrow_mut();
        recent.push_back(latency);
        if recent.len() > RECENT {
            recent.pop_front();
        }
        self.measured.set(self.measured.get() + 1);
        // Publishing every 10th sample keeps the panel readable and the page cheap.
        if self.measured.get().is_multiple_of(10) {
            let samples: Vec<f64> = recent.iter().copied().collect();
            self.ui.event(LiveEvent::Measured {
                latency_ms: quantile(&samples, 0.5),
                player: PlayerFigures {
                    fps: frame_rate(&times),
                    frames: timeline.presented,
                    skipped: timeline.skipped,
                },
            });
        }
    }
}

/// Frames a second over the last second's callbacks: from the video's presented count
/// where the browser gives it (the page's callbacks may skip frames the video showed),
/// else the callbacks themselves.
fn frame_rate(times: &VecDeque<(f64, Option<u32>)>) -> f32 {
    if let (Some(&(t0, Some(p0))), Some(&(t1, Some(p1)))) = (times.front(), times.back()) {
        if t1 > t0 {
            return (f64::from(p1.wrapping_sub(p0)) * 1000.0 / (t1 - t0)) as f32;
        }
    }
    times.len() as f32
}
