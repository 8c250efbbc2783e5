//! hls-face's Leptos application: the HTML shell, the page, and the wire protocol both
//! sides share. Browser-only media code lives in [`media`] (feature `hydrate`).

pub mod channels;
pub mod chunk_log;
pub mod connection;
pub mod figures;
pub mod hls_path;
pub mod latency;
pub mod link_health;
pub mod preview_mode;
pub mod protocol;
pub mod studio;
pub mod ui;
pub mod viewer;

#[cfg(feature = "hydrate")]
pub mod media;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};

/// The per-browser CSRF token the server puts into the request extensions of `GET /`; the
/// shell renders it into a `<meta name="csrf-token">` that the page sends back when it opens
/// the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken(pub String);

/// Name of the meta element carrying the CSRF token.
pub const CSRF_META: &str = "csrf-token";

/// How far behind the live edge players stay (seconds), which the server derives from its
/// segment length; rendered into `<meta name="hls-live-sync">` for the viewer page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSync(pub f32);

/// Name of the meta element carrying [`LiveSync`].
pub const LIVE_SYNC_META: &str = "hls-live-sync";

/// Where the app serves the pinned hls.js bundle (copied from npm into the site at setup).
pub const HLS_JS_PATH: &str = "/vendor/hls.min.js";

/// The full HTML document, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let csrf = request_extension::<CsrfToken>()
        .map(|t| t.0)
        .unwrap_or_default();
    let live_sync = request_extension::<LiveSync>()
        .map(|s| s.0.to_string())
        .unwrap_or_default();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name=CSRF_META content=csrf/>
                <meta name=LIVE_SYNC_META content=live_sync/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <script src=HLS_JS_PATH></script>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// A value the server attached to this request, if rendering one on the server.
fn request_extension<T: Clone + Send + Sync + 'static>() -> Option<T> {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>().and_then(|parts| parts.extensions.get::<T>().cloned())
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}

/// The application root: the studio at `/`, a viewer link's page at `/watch/<token>`.
#[component]
pub fn App() -> impl IntoView {
    use leptos_router::components::{Route, Router, Routes};
    use leptos_router::path;
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/hls-face.css"/>
        <Title text="hls-face · live face detection"/>
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                <Route path=path!("/") view=studio::Studio/>
                <Route path=path!("/watch/:token") view=viewer::Viewer/>
                <Route path=path!("/channels") view=channels::ChannelList/>
                <Route path=path!("/channel/:name") view=channels::ChannelPage/>
            </Routes>
        </Router>
    }
}
