//! The viewer page (`/watch/<token>`): another browser watches a live session's processed
//! stream through its read-only link, until the session ends.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// Where a viewer stands, as shown in `data-state` on `[data-testid=viewer-status]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerState {
    /// Loading the stream.
    Loading,
    /// The stream is playing.
    Live,
    /// The session ended, or the link was never valid (both look the same from outside,
    /// on purpose: a link reveals nothing once revoked).
    Ended,
}

impl ViewerState {
    /// The `data-state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewerState::Loading => "loading",
            ViewerState::Live => "live",
            ViewerState::Ended => "ended",
        }
    }

    /// The sentence shown to the viewer.
    pub fn message(self) -> &'static str {
        match self {
            ViewerState::Loading => "Connecting to the live session…",
            ViewerState::Live => "Live.",
            ViewerState::Ended => {
                "This session has ended, or the link is not valid: viewer links work only while \
                 the session they belong to is live. Ask for a new link."
            }
        }
    }
}

/// The viewer page.
#[component]
pub fn Viewer() -> impl IntoView {
    let params = use_params_map();
    let state = RwSignal::new(ViewerState::Loading);
    let hydrated = RwSignal::new(false);
    let video = NodeRef::<leptos::html::Video>::new();

    #[cfg(feature = "hydrate")]
    {
        let player = StoredValue::new_local(None);
        Effect::new(move |_| {
            hydrated.set(true);
            let token = params.read_untracked().get("token").unwrap_or_default();
            let Some(element) = video.get() else { return };
            if !crate::hls_path::is_id(&token) {
                state.set(ViewerState::Ended);
                return;
            }
            let live = move || state.set(ViewerState::Live);
            let ended = move || state.set(ViewerState::Ended);
            match crate::media::watch(element, &token, live, ended) {
                Ok(p) => player.set_value(Some(p)),
                Err(_) => state.set(ViewerState::Ended),
            }
            // The page says "ended" within a second of the session's end: the player alone
            // would only notice after its retries run out.
            let status = crate::hls_path::viewer_status(&token);
            let poll = leptos::prelude::set_interval_with_handle(
                move || {
                    if state.get_untracked() == ViewerState::Ended {
                        return;
                    }
                    let url = status.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        if !crate::media::still_live(&url).await {
                            state.set(ViewerState::Ended);
                            player.set_value(None);
                        }
                    });
                },
                std::time::Duration::from_secs(1),
            );
            if let Ok(handle) = poll {
                on_cleanup(move || handle.clear());
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = params;

    view! {
        <main class="studio viewer" data-hydrated=move || hydrated.get().to_string()>
            <header>
                <h1>"hls-face"</h1>
                <p class="tagline">"Watching someone's live session (read-only)."</p>
            </header>
            <section class="videos">
                <figure class:gone=move || state.get() == ViewerState::Ended>
                    <video
                        data-testid="viewer"
                        aria-label="Live processed stream of the session you are watching"
                        node_ref=video
                        autoplay=true
                        muted=true
                        playsinline=true
                        controls=true
                        on:ended=move |_| state.set(ViewerState::Ended)
                    ></video>
                    <figcaption>"Processed stream"</figcaption>
                </figure>
            </section>
            <p
                data-testid="viewer-status"
                class="status"
                role="status"
                aria-live="polite"
                data-state=move || state.get().as_str()
            >
                {move || state.get().message()}
            </p>
            <p>
                <a href="/">"Start your own session"</a>
            </p>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_the_documented_names() {
        assert_eq!(ViewerState::Loading.as_str(), "loading");
        assert_eq!(ViewerState::Live.as_str(), "live");
        assert_eq!(ViewerState::Ended.as_str(), "ended");
    }
}
