//! Browser-only media: camera, recorder, socket and player, driven through web-sys.
//!
//! [`Controller`] is the page's handle on them; it is `Copy` so event handlers can hold it,
//! and owns the non-`Send` browser objects through local-only stored values.

mod camera;
mod live;
mod player;
mod probe;
mod recorder;
mod socket;

use crate::protocol::DetectorSettings;
use crate::studio::{Phase, Ui};
use crate::viewer::ViewerState;
use leptos::html::Video;
use leptos::prelude::*;
use live::Live;
use web_sys::MediaStream;

/// The page's handle on the camera and the current live session.
#[derive(Clone, Copy)]
pub struct Controller {
    ui: Ui,
    preview: NodeRef<Video>,
    output: NodeRef<Video>,
    camera: StoredValue<Option<MediaStream>, LocalStorage>,
    live: StoredValue<Option<Live>, LocalStorage>,
    probe: StoredValue<Option<probe::Probe>, LocalStorage>,
}

impl Controller {
    /// A controller for the page's two video elements.
    pub fn new(ui: Ui, preview: NodeRef<Video>, output: NodeRef<Video>) -> Self {
        Controller {
            ui,
            preview,
            output,
            camera: StoredValue::new_local(None),
            live: StoredValue::new_local(None),
            probe: StoredValue::new_local(None),
        }
    }

    /// Asks for the camera and shows it in the preview; failures go to the status line.
    pub fn open_camera(self) {
        let ui = self.ui;
        ui.message.set("Asking for the camera…".into());
        wasm_bindgen_futures::spawn_local(async move {
            match camera::open().await {
                Ok(stream) => {
                    if let Some(video) = self.preview.get_untracked() {
                        video.set_src_object(Some(&stream));
                        // Autoplay is allowed for muted video; a refusal only delays the preview.
                        let _ = video.play();
                    }
                    self.camera.set_value(Some(stream));
                    if let (Some(preview), Some(output)) =
                        (self.preview.get_untracked(), self.output.get_untracked())
                    {
                        self.probe
                            .set_value(probe::Probe::start(ui, preview, output));
                    }
                    ui.camera_ready.set(true);
                    ui.set(Phase::Idle, "Camera ready. Press Start to stream it.");
                }
                Err(err) => ui.fail(err.user_message()),
            }
        });
    }

    /// Starts a new session, replacing any ended one.
    pub fn start(self) {
        let Some(stream) = self.camera.get_value() else {
            self.ui.fail("The camera is not available.");
            return;
        };
        let Some(output) = self.output.get_untracked() else {
            return;
        };
        // Dropping the previous session releases its socket, recorder and player.
        self.live.set_value(None);
        self.ui.playlist.set(None);
        self.ui.stats.set(Default::default());
        self.ui.recording.set(None);
        self.ui.viewer_url.set(None);
        self.ui.notice.set(String::new());
        match Live::start(self.ui, stream, output) {
            Ok(live) => self.live.set_value(Some(live)),
            Err(err) => self.ui.fail(err.user_message()),
        }
    }

    /// Switches privacy mode for the current session (and the next ones).
    pub fn set_privacy(self, blur: bool) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                live.set_privacy(blur);
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

    /// Copies `text` to the clipboard; the notice line says whether it worked.
    pub fn copy(self, text: String) {
        let ui = self.ui;
        let Some(window) = web_sys::window() else {
            return;
        };
        let promise = window.navigator().clipboard().write_text(&text);
        wasm_bindgen_futures::spawn_local(async move {
            let done = wasm_bindgen_futures::JsFuture::from(promise).await;
            ui.notice.set(match done {
                Ok(_) => "Viewer link copied.".into(),
                Err(_) => "The browser did not allow copying; select the link instead.".into(),
            });
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

/// Plays a viewer link's stream in `video`, following it in `state`.
pub fn watch(
    video: web_sys::HtmlVideoElement,
    token: &str,
    state: RwSignal<ViewerState>,
) -> Result<player::Player, MediaError> {
    let live_sync = meta_content(crate::LIVE_SYNC_META)
        .and_then(|v| v.parse::<f32>().ok())
        .unwrap_or(0.5);
    player::Player::attach(
        video,
        &crate::hls_path::viewer_playlist(token),
        live_sync,
        move || state.set(ViewerState::Live),
        move || state.set(ViewerState::Ended),
    )
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
                "Camera access was denied. Allow the camera for this site and reload.".into()
            }
            MediaError::NoCamera => "No camera was found. Connect one and reload.".into(),
            MediaError::Camera(name) => format!("The camera could not be started ({name})."),
            MediaError::NoRecorderFormat => {
                "This browser cannot record WebM video; use a recent Chromium or Firefox.".into()
            }
            MediaError::Browser(what) => format!("The browser refused: {what}."),
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
