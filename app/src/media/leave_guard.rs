//! Asks before the page is left while a session is live (the browser's own "leave page?"
//! prompt), and when it is left anyway, stops the session on the way out so the server
//! finishes its recording and keeps it for this browser (a reload offers it again).

use crate::ui::Ui;
use leptos::prelude::GetUntracked;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::BeforeUnloadEvent;

/// The `beforeunload` listener, removed when dropped.
pub struct LeaveGuard {
    on_unload: Closure<dyn FnMut(BeforeUnloadEvent)>,
    on_hide: Closure<dyn FnMut(web_sys::Event)>,
}

impl LeaveGuard {
    /// Listens while the page lives; asks only while `ui`'s session is active, and calls
    /// `on_leave` when the page goes with the session still active.
    pub fn new(ui: Ui, mut on_leave: impl FnMut() + 'static) -> Option<Self> {
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
        let on_hide = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            // `persisted`: kept in the back-forward cache, not gone.
            let persisted = js_sys::Reflect::get(&event, &"persisted".into())
                .ok()
                .and_then(|p| p.as_bool())
                .unwrap_or(false);
            if !persisted && ui.phase.get_untracked().is_active() {
                on_leave();
            }
        });
        window
            .add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref())
            .ok()?;
        Some(LeaveGuard { on_unload, on_hide })
    }
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback(
                "beforeunload",
                self.on_unload.as_ref().unchecked_ref(),
            );
            let _ = window.remove_event_listener_with_callback(
                "pagehide",
                self.on_hide.as_ref().unchecked_ref(),
            );
        }
    }
}
