//! The HTTP surface: the Leptos pages (with their CSRF cookie), the WebSocket, the session
//! HLS files (and their viewer-link view), and `/metrics`.

pub mod csrf;
pub mod hls_files;
pub mod listener;
pub mod resume;
pub mod socket;

use crate::config::Config;
use crate::session::registry::Registry;
use crate::session::session::PipelineEnv;
use app::{shell, App};
use axum::extract::FromRef;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub shared: Arc<Shared>,
}

/// The server's shared parts.
pub struct Shared {
    pub config: Config,
    pub registry: Arc<Registry>,
    /// The live admission check.
    pub capacity: Arc<crate::session::capacity::Capacity>,
    pub pipeline: PipelineEnv,
    pub csrf: csrf::CsrfKey,
    /// The Host names requests may carry.
    pub hosts: csrf::HostPolicy,
    /// "https" when this server terminates TLS, else "http" (the scheme pages are loaded
    /// with, unless a trusted proxy says otherwise).
    pub scheme: &'static str,
    /// Cancelled on SIGINT/SIGTERM: every session ends its recording.
    pub shutdown: CancellationToken,
    /// Tracks every socket task so shutdown can wait for them.
    pub sockets: TaskTracker,
    /// Sessions whose socket dropped, waiting for their page to reconnect.
    pub resumes: resume::Resumes,
    /// Renders `/metrics` (`None` if another metrics recorder was installed first).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The value of query parameter `name` (no percent-decoding: every parameter the server
/// reads — CSRF tokens, `_HLS_msn` — is plain ASCII).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The full router.
pub fn app(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let page = Router::new()
        .route("/token", get(fresh_token))
        .leptos_routes(&state, routes, {
            let options = state.leptos.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::ensure_session_cookie,
        ));
    Router::new()
        .route("/socket", get(socket::upgrade))
        .route("/hls/{session}/{file}", get(hls_files::serve))
        .route("/view/{token}/{file}", get(hls_files::serve_viewer))
        .route("/metrics", get(metrics))
        .merge(page)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::check_host,
        ))
        .with_state(state)
}

/// `GET /token`: this browser's CSRF token as text (with a fresh session cookie if its old
/// one is gone, e.g. after a server restart), so an open page can reconnect without a reload.
async fn fresh_token(axum::Extension(token): axum::Extension<app::CsrfToken>) -> impl IntoResponse {
    ([(axum::http::header::CACHE_CONTROL, "no-store")], token.0)
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    ::metrics::gauge!(crate::metrics::SOCKETS).set(state.shared.sockets.len() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(state.shared.metrics.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn finds_query_parameters() {
        assert_eq!(query_param("csrf_token=abc", "csrf_token"), Some("abc"));
        assert_eq!(
            query_param("x=1&csrf_token=abc&y=2", "csrf_token"),
            Some("abc")
        );
        assert_eq!(query_param("csrf=abc", "csrf_token"), None);
        assert_eq!(query_param("", "csrf_token"), None);
        assert_eq!(query_param("_HLS_msn=12", "_HLS_msn"), Some("12"));
        assert_eq!(query_param("_HLS_part=0&_HLS_msn=7", "_HLS_msn"), Some("7"));
    }
}
