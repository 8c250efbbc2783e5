//! Browser-only media: camera, recorder, socket and player, driven through web-sys.
//!
//! [`Controller`] is the page's handle on them; it is `Copy` so event handlers can hold it,
//! and owns the non-`Send` browser objects through local-only stored values.

mod camera;
mod camera_watch;
mod frames;
mod leave_guard;
mod live;
mod player;
mod preview;
mod probe;
mod recorder;
mod socket;

use crate::protocol::{AuthStatus, DetectorSettings, KeptRecordings, SignIn};
use crate::ui::{CameraProblem, LiveEvent, Ui};
use leptos::html::{Canvas, Video};
use leptos::prelude::*;
use live::Live;
pub use player::Player;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, MediaStream};

/// How long the Copy button says "Copied".
const COPIED_SHOWN: std::time::Duration = std::time::Duration::from_secs(2);

/// A DOM event listener, owned by whoever registered it.
type EventHandler = Closure<dyn FnMut(Event)>;

/// The page's handle on the camera and the current live session.
#[derive(Clone, Copy)]
pub struct Controller {
    ui: Ui,
    preview: NodeRef<Video>,
    /// The canvas the preview is painted into (see [`crate::preview_mode`]).
    preview_view: NodeRef<Canvas>,
    output: NodeRef<Video>,
    camera: StoredValue<Option<MediaStream>, LocalStorage>,
    live: StoredValue<Option<Live>, LocalStorage>,
    painter: StoredValue<Option<preview::Painter>, LocalStorage>,
    probe: StoredValue<Option<probe::Probe>, LocalStorage>,
    /// Listens for the camera's track ending (unplugged, taken by another app).
    on_track_ended: StoredValue<Option<EventHandler>, LocalStorage>,
    /// After a denial: the camera permission, watched for the user allowing it.
    permission: StoredValue<Option<camera_watch::PermissionWatch>, LocalStorage>,
    /// Without a camera: devices, watched for one being plugged in.
    devices: StoredValue<Option<camera_watch::DeviceWatch>, LocalStorage>,
}

/// How often, and how many times, the page asks again for kept recordings while one of
/// this browser's sessions is still being finished.
const KEPT_POLL: std::time::Duration = std::time::Duration::from_millis(1500);
const KEPT_POLLS: u32 = 40;

impl Controller {
    /// A controller for the page's camera video, the canvas the camera is painted into,
    /// and the output video.
    pub fn new(
        ui: Ui,
        preview: NodeRef<Video>,
        preview_view: NodeRef<Canvas>,
        output: NodeRef<Video>,
    ) -> Self {
        Controller {
            ui,
            preview,
            preview_view,
            output,
            camera: StoredValue::new_local(None),
            live: StoredValue::new_local(None),
            painter: StoredValue::new_local(None),
            probe: StoredValue::new_local(None),
            on_track_ended: StoredValue::new_local(None),
            permission: StoredValue::new_local(None),
            devices: StoredValue::new_local(None),
        }
    }

    /// Asks the server whether it wants to know who streams, and whether this browser has
    /// signed in.
    pub fn load_auth(self) {
        wasm_bindgen_futures::spawn_local(async move {
            let status = fetch_text("/auth")
                .await
                .and_then(|text| serde_json::from_str::<AuthStatus>(&text).ok());
            if let Some(status) = status {
                self.ui.event(LiveEvent::Auth(status));
            }
        });
    }

    /// Sends the passphrase or token; the page learns whether it was accepted.
    pub fn sign_in(self, secret: String) {
        wasm_bindgen_futures::spawn_local(async move {
            let ui = self.ui;
            match post_sign_in(&secret).await {
                Ok(()) => ui.event(LiveEvent::SignedIn),
                Err(why) => ui.event(LiveEvent::SignInFailed(why)),
            }
        });
    }

    /// Asks the server for the recordings it keeps for this browser (an earlier session,
    /// one cut by a reload or a restart) and offers them; asks again while one is still
    /// being finished.
    pub fn load_kept(self) {
        self.load_kept_polling(KEPT_POLLS);
    }

    fn load_kept_polling(self, polls_left: u32) {
        wasm_bindgen_futures::spawn_local(async move {
            let kept = fetch_text("/recordings.json")
                .await
                .and_then(|text| serde_json::from_str::<KeptRecordings>(&text).ok());
            let Some(kept) = kept else { return };
            let again = kept.finishing > 0 && polls_left > 0;
            self.ui.event(LiveEvent::Kept(kept));
            if again {
                set_timeout(move || self.load_kept_polling(polls_left - 1), KEPT_POLL);
            }
        });
    }

    /// Asks for the camera and shows it in the preview; failures go to the status line.
    pub fn open_camera(self) {
        self.ui.event(LiveEvent::AskingForCamera);
        wasm_bindgen_futures::spawn_local(async move {
            if self.acquire().await {
                self.ui.event(LiveEvent::CameraReady);
            }
        });
    }

    /// Opens the camera into the preview; `false` (with the reason on the page) if not.
    async fn acquire(self) -> bool {
        let ui = self.ui;
        let stream = match camera::open().await {
            Ok(stream) => stream,
            Err(err) => {
                self.blocked(err).await;
                return false;
            }
        };
        self.permission.set_value(None);
        self.devices.set_value(None);
        if let Some(video) = self.preview.get_untracked() {
            video.set_src_object(Some(&stream));
            // Autoplay is allowed for muted video; a refusal only delays the preview.
            let _ = video.play();
            // The previous painter (a camera opened again) shows its video as it goes.
            self.painter.set_value(None);
            if let Some(canvas) = self.preview_view.get_untracked() {
                self.painter
                    .set_value(preview::Painter::start(video, canvas));
            }
        }
        self.watch_track(&stream);
        self.camera.set_value(Some(stream));
        let probing = measure_param().is_some_and(|v| v != "quality");
        if probing && self.probe.with_value(|p| p.is_none()) {
            if let (Some(preview), Some(output)) =
                (self.preview.get_untracked(), self.output.get_untracked())
            {
                self.probe
                    .set_value(probe::Probe::start(ui, preview, output));
            }
        }
        ui.event(LiveEvent::CameraOn);
        true
    }

    /// Tells the page why the camera cannot be used, and watches for what would fix it: the
    /// permission being granted (the camera then opens by itself, or Start asks again), or
    /// a camera being plugged in.
    async fn blocked(self, err: MediaError) {
        let message = err.user_message();
        let problem = match err {
            MediaError::Insecure(_) => CameraProblem::Insecure,
            MediaError::NoCamera => {
                if self.devices.with_value(Option::is_none) {
                    let watch = camera_watch::watch_devices(move || {
                        if self.ui.camera_problem.get_untracked() == Some(CameraProblem::Missing) {
                            self.open_camera();
                        }
                    });
                    self.devices.set_value(watch);
                }
                CameraProblem::Missing
            }
            MediaError::CameraDenied => {
                let watch = camera_watch::watch_permission(move |now| match now {
                    camera_watch::Permission::Granted => self.open_camera(),
                    camera_watch::Permission::Prompt => self.ui.event(LiveEvent::CameraAskable),
                    camera_watch::Permission::Denied => {}
                })
                .await;
                match watch {
                    Some((now, watch)) => {
                        self.permission.set_value(Some(watch));
                        CameraProblem::Denied {
                            // A dismissed prompt leaves "prompt": Start asks again.
                            watched: now == camera_watch::Permission::Denied,
                        }
                    }
                    None => CameraProblem::Denied { watched: false },
                }
            }
            _ => CameraProblem::Other,
        };
        let message = match problem {
            CameraProblem::Denied { watched: true } => "Camera access was denied. Allow the \
                camera for this site (the camera icon in the address bar, or the site \
                settings): this page opens it as soon as you do, with no reload."
                .to_string(),
            _ => message,
        };
        self.ui.event(LiveEvent::CameraBlocked { problem, message });
    }

    /// When the camera's video track ends mid-session, the session is stopped (its
    /// recording kept) and the page says the camera was lost; Start opens it again.
    fn watch_track(self, stream: &MediaStream) {
        let Some(track) = stream
            .get_video_tracks()
            .get(0)
            .dyn_into::<web_sys::MediaStreamTrack>()
            .ok()
        else {
            return;
        };
        let on_ended = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let ui = self.ui;
            self.camera.set_value(None);
            self.painter.set_value(None);
            ui.event(LiveEvent::CameraOff);
            if ui.phase.get_untracked().is_active() {
                self.stop();
            }
            ui.event(LiveEvent::Failed(MediaError::CameraLost.user_message()));
        });
        track.set_onended(Some(on_ended.as_ref().unchecked_ref()));
        self.on_track_ended.set_value(Some(on_ended));
    }

    /// Starts a new session, replacing any ended one (and opening the camera again if it
    /// was lost).
    pub fn start(self) {
        let Some(stream) = self.camera.get_value() else {
            wasm_bindgen_futures::spawn_local(async move {
                self.ui.event(LiveEvent::ReopeningCamera);
                if self.acquire().await {
                    self.start();
                }
            });
            return;
        };
        let Some(output) = self.output.get_untracked() else {
            return;
        };
        // Dropping the previous session releases its socket, recorder and player.
        self.live.set_value(None);
        self.ui.event(LiveEvent::NewSession);
        match Live::start(self.ui, stream, output) {
            Ok(live) => self.live.set_value(Some(live)),
            Err(err) => self.ui.event(LiveEvent::Failed(err.user_message())),
        }
    }

    /// Switches privacy mode for the current session (and the next ones).
    pub fn set_privacy(self, privacy: bool) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                live.set_privacy(privacy);
            }
        });
    }

    /// Sends detector settings to the current session (the next session gets them at start).
    pub fn set_detector(self, settings: DetectorSettings) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                live.set_detector(settings);
            }
        });
    }

    /// Copies `text` to the clipboard; the Copy button and the notice line say whether it
    /// worked.
    pub fn copy(self, text: String) {
        let ui = self.ui;
        let Some(window) = web_sys::window() else {
            return;
        };
        let promise = window.navigator().clipboard().write_text(&text);
        wasm_bindgen_futures::spawn_local(async move {
            match wasm_bindgen_futures::JsFuture::from(promise).await {
                Ok(_) => {
                    ui.event(LiveEvent::Copied(true));
                    set_timeout(move || ui.event(LiveEvent::Copied(false)), COPIED_SHOWN);
                }
                Err(_) => ui.event(LiveEvent::Notice(
                    "The browser did not allow copying; select the link instead.".into(),
                )),
            }
        });
    }

    /// Stops the current session; the recording stays playable.
    pub fn stop(self) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                live.stop();
            }
        });
    }
}

/// Plays a viewer link's stream in `video`; `on_live` runs when it plays, `on_ended` when
/// it has ended.
pub fn watch(
    video: web_sys::HtmlVideoElement,
    token: &str,
    on_live: impl Fn() + 'static,
    on_ended: impl Fn() + 'static,
) -> Result<player::Player, MediaError> {
    play(
        video,
        &crate::hls_path::viewer_playlist(token),
        on_live,
        on_ended,
    )
}

/// Plays the live playlist at `url` in `video`, aiming at the server's live-sync target.
pub fn play(
    video: web_sys::HtmlVideoElement,
    url: &str,
    on_live: impl Fn() + 'static,
    on_ended: impl Fn() + 'static,
) -> Result<Player, MediaError> {
    let live_sync = meta_content(crate::LIVE_SYNC_META)
        .and_then(|v| v.parse::<f32>().ok())
        .unwrap_or(0.5);
    player::Player::attach(video, url, live_sync, on_live, on_ended)
}

/// Whether a viewer link's status URL still answers 200 (a network error counts as live:
/// only the server's "gone" ends the page).
pub async fn still_live(url: &str) -> bool {
    let Some(window) = web_sys::window() else {
        return true;
    };
    let Ok(response) = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url)).await
    else {
        return true;
    };
    match response.dyn_into::<web_sys::Response>() {
        Ok(r) => r.status() != 404,
        Err(_) => true,
    }
}

/// The body of a same-origin GET as text (`None` on any failure or a non-2xx answer).
pub async fn fetch_text(url: &str) -> Option<String> {
    let window = web_sys::window()?;
    let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
        .await
        .ok()?
        .dyn_into::<web_sys::Response>()
        .ok()?;
    if !response.ok() {
        return None;
    }
    let text = wasm_bindgen_futures::JsFuture::from(response.text().ok()?)
        .await
        .ok()?;
    text.as_string()
}

/// `POST /auth` with the page's token; `Err` carries the sentence to show.
async fn post_sign_in(secret: &str) -> Result<(), String> {
    const UNREACHABLE: &str =
        "The server could not be reached: check the connection and try again.";
    let window = web_sys::window().ok_or_else(|| UNREACHABLE.to_string())?;
    let body = serde_json::to_string(&SignIn {
        secret: secret.to_string(),
    })
    .map_err(|_| UNREACHABLE.to_string())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&wasm_bindgen::JsValue::from_str(&body));
    let headers = web_sys::Headers::new().map_err(|_| UNREACHABLE.to_string())?;
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set(
        "x-csrf-token",
        &meta_content(crate::CSRF_META).unwrap_or_default(),
    );
    init.set_headers(&headers);
    let response =
        wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init("/auth", &init))
            .await
            .map_err(|_| UNREACHABLE.to_string())?
            .dyn_into::<web_sys::Response>()
            .map_err(|_| UNREACHABLE.to_string())?;
    if response.ok() {
        return Ok(());
    }
    // The server's refusals are sentences written for people (wrong, expired, throttled).
    let text = match response.text() {
        Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string()),
        Err(_) => None,
    };
    Err(text
        .filter(|t| !t.is_empty() && t.len() < 200)
        .unwrap_or_else(|| "The sign-in was refused.".to_string()))
}

/// Milliseconds on the page's clock (`performance.now()`; 0 without a window).
pub(crate) fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// Sets the content of `<meta name="{name}">` in the page head.
pub(crate) fn set_meta_content(name: &str, value: &str) {
    let element = web_sys::window().and_then(|w| w.document()).and_then(|d| {
        d.query_selector(&format!("meta[name={name}]"))
            .ok()
            .flatten()
    });
    if let Some(element) = element {
        let _ = element.set_attribute("content", value);
    }
}

/// The content of `<meta name="{name}">` in the page head.
pub(crate) fn meta_content(name: &str) -> Option<String> {
    web_sys::window()?
        .document()?
        .query_selector(&format!("meta[name={name}]"))
        .ok()
        .flatten()?
        .get_attribute("content")
}

/// What can go wrong in the browser, each with a sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("camera access denied")]
    CameraDenied,
    #[error("no camera")]
    NoCamera,
    #[error("camera unavailable: {0}")]
    Camera(String),
    #[error("camera in use or unplugged")]
    CameraBusy,
    #[error("the camera stopped during the session")]
    CameraLost,
    #[error("not a secure context: {0}")]
    Insecure(String),
    #[error("no supported recording format")]
    NoRecorderFormat,
    #[error("browser API failed: {0}")]
    Browser(String),
}

impl MediaError {
    /// The sentence shown in the status element.
    pub fn user_message(&self) -> String {
        match self {
            MediaError::CameraDenied => {
                "Camera access was denied. Allow the camera for this site (the camera icon in \
                 the address bar, or the site settings), then press Start."
                    .into()
            }
            MediaError::NoCamera => {
                "No camera was found. Connect one: this page notices, or press Start to look \
                 again."
                    .into()
            }
            MediaError::Camera(_) => {
                "The camera could not be started. Check that it is connected and not in use, \
                 then press Start."
                    .into()
            }
            MediaError::CameraBusy => {
                "The camera is in use by another app, or was unplugged. Close the other app or \
                 reconnect the camera, then press Start."
                    .into()
            }
            MediaError::CameraLost => {
                "The camera stopped (unplugged, or taken by another app). The recording so far \
                 is kept. Reconnect it and press Start to go on."
                    .into()
            }
            MediaError::Insecure(origin) => format!(
                "The camera needs a secure page: this page is {origin}, and browsers give the \
                 camera only to HTTPS pages or to http://localhost. Open the app over HTTPS \
                 (see the README: HTTPS for the LAN) or on the computer that runs it."
            ),
            MediaError::NoRecorderFormat => {
                "This browser cannot record video in a format the server reads (WebM or MP4 \
                 with VP8, VP9 or H.264). Use a recent Chromium, Firefox or Safari."
                    .into()
            }
            // Raw browser text never reaches the page; the console keeps the detail.
            MediaError::Browser(what) => {
                leptos::logging::warn!("browser error: {what}");
                "The browser could not start the video. Reload the page and try again.".into()
            }
        }
    }
}

/// Turns a thrown JS value into a [`MediaError::Browser`].
pub(crate) fn js_err(context: &str, value: wasm_bindgen::JsValue) -> MediaError {
    let detail = js_sys::Reflect::get(&value, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{value:?}"));
    MediaError::Browser(format!("{context}: {detail}"))
}

/// Whether this page measures itself for the benchmark (`?measure` in its address): the
/// frame-code latency probe and `window.hlsFaceStats`. Off for everyone else, who would pay
/// for reading every frame of two videos and could not use the result (a real camera shows
/// no frame codes). `?measure=quality` leaves the probe out (the benchmark then sees what
/// the probe's own per-frame work costs the player).
pub(crate) fn measuring() -> bool {
    measure_param().is_some()
}

/// The value of `measure` in the page's address ("" for a bare `?measure`).
fn measure_param() -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get("measure")
}
