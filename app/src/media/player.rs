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
}

/// hls.js's `Hls.Events.ERROR`.
const HLS_ERROR_EVENT: &str = "hlsError";

/// hls.js settings for the server's Low-Latency HLS: `lowLatencyMode` loads parts and asks
/// for each next one with a blocking playlist reload, so a part is fetched as soon as it
/// exists; catch up by playing faster rather than by jumping; keep little back buffer. The
/// distance to the live edge (`liveSyncDuration`) is the playlist's `PART-HOLD-BACK`, passed
/// by the server too so the page and the playlist can never disagree.
const HLS_CONFIG: &str = r#"{
    "lowLatencyMode": true,
    "maxLiveSyncPlaybackRate": 1.5,
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
        let (hls, on_error) = if hls_ok {
            let config = js_sys::JSON::parse(HLS_CONFIG).map_err(|e| super::js_err("config", e))?;
            let sync = f64::from(live_sync_seconds.clamp(0.2, 10.0));
            let _ = js_sys::Reflect::set(&config, &"liveSyncDuration".into(), &sync.into());
            let _ = js_sys::Reflect::set(
                &config,
                &"liveMaxLatencyDuration".into(),
                &(sync * 5.0).into(),
            );
            let hls = Hls::new(&config).map_err(|e| super::js_err("hls.js", e))?;
            let mut on_fatal = on_fatal;
            let on_error =
                Closure::<dyn FnMut(JsValue, JsValue)>::new(move |_: JsValue, data: JsValue| {
                    let fatal = js_sys::Reflect::get(&data, &"fatal".into())
                        .ok()
                        .and_then(|f| f.as_bool())
                        .unwrap_or(false);
                    if fatal {
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
        // Muted autoplay is allowed; if the browser refuses, the controls still work.
        let _ = video.play();
        Ok(Player {
            video,
            hls,
            _on_playing: playing,
            _on_hls_error: on_error,
        })
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.video.set_onplaying(None);
        if let Some(hls) = self.hls.take() {
            hls.destroy();
        }
    }
}

/// Whether the hls.js script loaded (the global exists).
fn hls_available() -> bool {
    web_sys::window()
        .map(|w| js_sys::Reflect::has(&w, &"Hls".into()).unwrap_or(false))
        .unwrap_or(false)
}
