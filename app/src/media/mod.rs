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

use crate::studio::{Phase, Ui};
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

    /// Stops the current session; the recording stays playable.
    pub fn stop(self) {
        self.live.with_value(|live| {
            if let Some(live) = live {
                live.stop();
            }
        });
    }
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
