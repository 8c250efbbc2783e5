//! hls-face's Leptos application: the HTML shell, the page, and the wire protocol both
//! sides share. Browser-only media code lives in [`media`] (feature `hydrate`).

pub mod hls_path;
pub mod latency;
pub mod protocol;
pub mod studio;

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

/// Where the app serves the pinned hls.js bundle (copied from npm into the site at setup).
pub const HLS_JS_PATH: &str = "/vendor/hls.min.js";

/// The full HTML document, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let csrf = request_csrf_token();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name=CSRF_META content=csrf/>
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

/// The CSRF token the server attached to this request, or "" outside a request.
fn request_csrf_token() -> String {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CsrfToken>().map(|t| t.0.clone()))
            .unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        String::new()
    }
}

/// The application root: one page, the studio.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/hls-face.css"/>
        <Title text="hls-face · live face detection"/>
        <studio::Studio/>
    }
}
