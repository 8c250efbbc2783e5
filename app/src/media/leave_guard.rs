//! Asks before the page is left while a session is live: the browser's own "leave page?"
//! prompt (a reload or a closed tab ends the session and its recording at once).

use crate::ui::Ui;
use leptos::prelude::GetUntracked;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::BeforeUnloadEvent;

/// The `beforeunload` listener, removed when dropped.
pub struct LeaveGuard {
    on_unload: Closure<dyn FnMut(BeforeUnloadEvent)>,
}

impl LeaveGuard {
    /// Listens while the page lives; asks only while `ui`'s session is active.
    pub fn new(ui: Ui) -> Option<Self> {
        let window = web_sys::window()?;
        let on_unload =
            Closure::<dyn FnMut(BeforeUnloadEvent)>::new(move |event: BeforeUnloadEvent| {
                if ui.phase.get_untracked().is_active() {
                    // Browsers show their own wording; the text is for older ones.
                    event.prevent_default();
                    event.set_return_value("Leaving ends the live session.");
                }
            });
        window
            .add_event_listener_with_callback("beforeunload", on_unload.as_ref().unchecked_ref())
            .ok()?;
        Some(LeaveGuard { on_unload })
    }
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback(
                "beforeunload",
                self.on_unload.as_ref().unchecked_ref(),
            );
        }
    }
}
