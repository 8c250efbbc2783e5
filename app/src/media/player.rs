//! The output player: hls.js (the pinned bundle the app serves) bound through
//! wasm-bindgen, or the browser's native HLS where `canPlayType` says so.

use super::MediaError;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Event, HtmlVideoElement};

#[wasm_bindgen]
extern "C" {
    /// The global `Hls` class from hls.js's UMD bundle.
    #[wasm_bindgen(js_name = Hls)]
    type Hls;

    #[wasm_bindgen(constructor, js_class = "Hls", catch)]
    fn new(config: &JsValue) -> Result<Hls, JsValue>;

    #[wasm_bindgen(static_method_of = Hls, js_class = "Hls", js_name = isSupported, catch)]
    fn is_supported() -> Result<bool, JsValue>;

    #[wasm_bindgen(method, js_name = loadSource)]
    fn load_source(this: &Hls, url: &str);

    #[wasm_bindgen(method, js_name = attachMedia)]
    fn attach_media(this: &Hls, media: &HtmlVideoElement);

    #[wasm_bindgen(method)]
    fn on(this: &Hls, event: &str, callback: &js_sys::Function);

    #[wasm_bindgen(method)]
    fn destroy(this: &Hls);

    /// Seconds from the estimated live edge to the playhead (0 before the first playlist).
    #[wasm_bindgen(method, getter)]
    fn latency(this: &Hls) -> f64;

    /// The distance to the live edge hls.js aims for (PART-HOLD-BACK, plus its stall
    /// allowance); `null` before the first playlist.
    #[wasm_bindgen(method, getter, js_name = targetLatency)]
    fn target_latency(this: &Hls) -> Option<f64>;

    /// Sets the target distance and forgets the stall allowance.
    #[wasm_bindgen(method, setter, js_name = targetLatency)]
    fn set_target_latency(this: &Hls, seconds: f64);

    /// The wall-clock time of the playhead, from the stream's PROGRAM-DATE-TIME (`null`
    /// before playback).
    #[wasm_bindgen(method, getter, js_name = playingDate)]
    fn playing_date(this: &Hls) -> Option<js_sys::Date>;
}

/// hls.js's `Hls.Events.ERROR`.
const HLS_ERROR_EVENT: &str = "hlsError";

/// hls.js's error details for a stall (the buffer ran dry while playing).
const STALL_DETAILS: &str = "bufferStalledError";

/// How long after its first frame a player counts as starting (it joins the live edge then).
const STARTING_MS: f64 = 5_000.0;

/// hls.js settings for the server's Low-Latency HLS: `lowLatencyMode` loads parts and asks
/// for each next one with a blocking playlist reload, so a part is fetched as soon as it
/// exists; keep little back buffer. The distance to the live edge (`liveSyncDuration`) is
/// the playlist's `PART-HOLD-BACK`, passed by the server too so the page and the playlist
/// can never disagree. Stalls move the target back ([`crate::latency::StallMargin`]: the
/// page owns that, so hls.js's own increase is off — its default, a whole second a stall,
/// kept until the next seek, would undo low latency after one hiccup). Holding the
/// distance is the page's ([`crate::latency::live_sync_rate`], faster and slower): hls.js's
/// own (`maxLiveSyncPlaybackRate` > 1) only speeds up, only with more than a second
/// buffered, and resets any other rate, so it is off. A player far behind (the first
/// frames after Start, a connection back with a backlog) skips to the target instead
/// ([`crate::latency::live_jump`]).
const HLS_CONFIG: &str = r#"{
    "lowLatencyMode": true,
    "maxLiveSyncPlaybackRate": 1,
    "liveSyncOnStallIncrease": 0,
    "backBufferLength": 10,
    "manifestLoadingMaxRetry": 6,
    "levelLoadingMaxRetry": 6,
    "fragLoadingMaxRetry": 6
}"#;

/// A player attached to the output video; owns its callbacks, detaches when dropped.
pub struct Player {
    video: HtmlVideoElement,
    hls: Option<Hls>,
    _on_playing: Closure<dyn FnMut(Event)>,
    _on_hls_error: Option<Closure<dyn FnMut(JsValue, JsValue)>>,
    /// Adjusts the playback rate on every `timeupdate` (hls.js players only).
    live_sync: Option<Closure<dyn FnMut(Event)>>,
    /// Hears the video run dry (`waiting`; hls.js players only).
    on_waiting: Option<Closure<dyn FnMut(Event)>>,
}

impl Player {
    /// Plays `url` in `video`; `on_playing` fires when frames show, `on_fatal` when the
    /// player gives up.
    pub fn attach(
        video: HtmlVideoElement,
        url: &str,
        live_sync_seconds: f32,
        on_playing: impl FnMut() + 'static,
        on_fatal: impl FnMut() + 'static,
    ) -> Result<Self, MediaError> {
        let mut on_playing = on_playing;
        let playing = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_playing());
        video.set_onplaying(Some(playing.as_ref().unchecked_ref()));

        let hls_ok = hls_available() && Hls::is_supported().unwrap_or(false);
        let margin = std::rc::Rc::new(std::cell::RefCell::new(
            crate::latency::StallMargin::default(),
        ));
        let base_target = f64::from(live_sync_seconds.clamp(0.05, 10.0));
        let (hls, on_error) = if hls_ok {
            let config = js_sys::JSON::parse(HLS_CONFIG).map_err(|e| super::js_err("config", e))?;
            let sync = base_target;
            let _ = js_sys::Reflect::set(&config, &"liveSyncDuration".into(), &sync.into());
            let _ = js_sys::Reflect::set(
                &config,
                &"liveMaxLatencyDuration".into(),
                &(sync * 5.0).into(),
            );
            let hls = Hls::new(&config).map_err(|e| super::js_err("hls.js", e))?;
            let mut on_fatal = on_fatal;
            let stalled = margin.clone();
            let on_error =
                Closure::<dyn FnMut(JsValue, JsValue)>::new(move |_: JsValue, data: JsValue| {
                    let field = |name: &str| js_sys::Reflect::get(&data, &name.into()).ok();
                    if field("details").and_then(|d| d.as_string()).as_deref()
                        == Some(STALL_DETAILS)
                    {
                        stalled.borrow_mut().stalled(super::now_ms());
                    }
                    if field("fatal").and_then(|f| f.as_bool()).unwrap_or(false) {
                        on_fatal();
                    }
                });
            hls.on(HLS_ERROR_EVENT, on_error.as_ref().unchecked_ref());
            hls.attach_media(&video);
            hls.load_source(url);
            (Some(hls), Some(on_error))
        } else if !video
            .can_play_type("application/vnd.apple.mpegurl")
            .is_empty()
        {
            video.set_src(url);
            (None, None)
        } else {
            video.set_onplaying(None);
            return Err(MediaError::Browser("this browser cannot play HLS".into()));
        };
        let stall_margin = margin.clone();
        let live_sync = hls.as_ref().map(|hls| {
            let hls: Hls = AsRef::<JsValue>::as_ref(hls).clone().unchecked_into();
            let media = video.clone();
            let mut first_update: Option<f64> = None;
            let on_time = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let Some(mut target) = hls.target_latency() else {
                    return;
                };
                let want = base_target + margin.borrow_mut().margin(super::now_ms());
                if (target - want).abs() > 0.005 {
                    hls.set_target_latency(want);
                    target = want;
                }
                let (latency, buffered) = (hls.latency(), ahead(&media));
                let now = super::now_ms();
                let starting = now - *first_update.get_or_insert(now) < STARTING_MS;
                if let Some(skip) = crate::latency::live_jump(latency, target, buffered, starting) {
                    media.set_current_time(media.current_time() + skip);
                    return;
                }
                let rate = crate::latency::live_sync_rate(latency, target, buffered);
                if (media.playback_rate() - rate).abs() > 0.01 {
                    media.set_playback_rate(rate);
                }
                publish_edge(latency, target, buffered, rate);
            });
            let _ = video
                .add_event_listener_with_callback("timeupdate", on_time.as_ref().unchecked_ref());
            on_time
        });
        // A wait while playing (not the one before the first frame, nor one a seek caused) is
        // a stall, also when it is too short for hls.js to report one.
        let on_waiting = live_sync.as_ref().map(|_| {
            let media = video.clone();
            let on_waiting = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                if !media.seeking() && media.played().length() > 0 {
                    stall_margin.borrow_mut().stalled(super::now_ms());
                }
            });
            let _ = video
                .add_event_listener_with_callback("waiting", on_waiting.as_ref().unchecked_ref());
            on_waiting
        });
        // Muted autoplay is allowed; if the browser refuses, the controls still work.
        let _ = video.play();
        Ok(Player {
            video,
            hls,
            _on_playing: playing,
            _on_hls_error: on_error,
            live_sync,
            on_waiting,
        })
    }

    /// Seconds the frame on screen is behind the server's clock when it was packaged
    /// (PROGRAM-DATE-TIME against this browser's clock); `None` before playback or without
    /// hls.js.
    pub fn behind_live(&self) -> Option<f64> {
        let date = self.hls.as_ref()?.playing_date()?;
        let behind = (js_sys::Date::now() - date.get_time()) / 1000.0;
        behind.is_finite().then_some(behind)
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.video.set_onplaying(None);
        if let Some(on_time) = self.live_sync.take() {
            let _ = self.video.remove_event_listener_with_callback(
                "timeupdate",
                on_time.as_ref().unchecked_ref(),
            );
            self.video.set_playback_rate(1.0);
        }
        if let Some(on_waiting) = self.on_waiting.take() {
            let _ = self.video.remove_event_listener_with_callback(
                "waiting",
                on_waiting.as_ref().unchecked_ref(),
            );
        }
        if let Some(hls) = self.hls.take() {
            hls.destroy();
        }
    }
}

/// Puts the player's view of the live edge on `window.hlsFacePlayer` for the benchmark:
/// `{latency, target, buffered, rate}` (seconds from the edge, the target, seconds
/// buffered ahead, playback rate).
fn publish_edge(latency: f64, target: f64, buffered: f64, rate: f64) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let edge = js_sys::Object::new();
    for (key, value) in [
        ("latency", latency),
        ("target", target),
        ("buffered", buffered),
        ("rate", rate),
    ] {
        let _ = js_sys::Reflect::set(&edge, &key.into(), &value.into());
    }
    let _ = js_sys::Reflect::set(&window, &"hlsFacePlayer".into(), &edge);
}

/// Seconds buffered ahead of the playhead (0 when nothing is).
fn ahead(video: &HtmlVideoElement) -> f64 {
    let buffered = video.buffered();
    let now = video.current_time();
    (0..buffered.length())
        .filter_map(|i| Some((buffered.start(i).ok()?, buffered.end(i).ok()?)))
        .find(|(start, end)| *start <= now + 0.05 && now < *end)
        .map_or(0.0, |(_, end)| end - now)
}

/// Whether the hls.js script loaded (the global exists).
fn hls_available() -> bool {
    web_sys::window()
        .map(|w| js_sys::Reflect::has(&w, &"Hls".into()).unwrap_or(false))
        .unwrap_or(false)
}
