//! The HTTP surface: the Leptos pages (with their CSRF cookie), the WebSocket, the session
//! HLS files (and their viewer-link view), and `/metrics`.

pub mod channels;
pub mod csrf;
pub mod hls_files;
pub mod idle;
pub mod listener;
pub mod live_mp4;
pub mod recordings;
pub mod resume;
pub mod sign_in;
pub mod socket;
pub mod transport;
pub mod wire;

use crate::config::Config;
use crate::error::ServerError;
use crate::session::capacity::{Capacity, LoadGauge};
use crate::session::live::PipelineEnv;
use crate::session::registry::Registry;
use crate::video::detector::DetectorFactory;
use app::{shell, App};
use axum::extract::FromRef;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::net::SocketAddr;
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
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// What new sessions start with: `pipeline` with the detector settings of the last
    /// settings reload (running sessions keep theirs).
    pub pipeline_live: std::sync::RwLock<PipelineEnv>,
    /// The Host names requests may carry (replaced when the settings are reloaded).
    pub hosts: std::sync::RwLock<csrf::HostPolicy>,
    /// The `[limits]` new sockets and sessions get (replaced when the settings are
    /// reloaded; `config.limits` keeps the values at start).
    pub limits: std::sync::RwLock<crate::config::LimitsConfig>,
    /// "https" when this server terminates TLS, else "http" (the scheme pages are loaded
    /// with, unless a trusted proxy says otherwise).
    pub scheme: &'static str,
    /// Cancelled on SIGINT/SIGTERM: every session ends its recording.
    pub shutdown: CancellationToken,
    /// Tracks every socket task so shutdown can wait for them.
    pub sockets: TaskTracker,
    /// Open sockets per network address (`max-sockets-per-address`).
    pub sockets_per_address: crate::session::quota::Quota<std::net::IpAddr>,
    /// Sessions whose socket dropped, waiting for their page to reconnect.
    pub resumes: resume::Resumes,
    /// The operator's camera channels.
    pub channels: crate::channel::Channels,
    /// Who may stream (`[auth]`; replaced when the settings are reloaded).
    pub gate: std::sync::RwLock<Arc<crate::auth::Gate>>,
    /// Renders `/metrics` (`None` if another metrics recorder was installed first).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Shared {
    /// The `[auth]` gate in force now.
    pub fn gate(&self) -> Arc<crate::auth::Gate> {
        self.gate.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The pipeline settings a new session or channel run starts with now.
    pub fn pipeline_env(&self) -> PipelineEnv {
        self.pipeline_live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The limits in force now (the settings file may have changed them since start).
    pub fn limits(&self) -> crate::config::LimitsConfig {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl AppState {
    /// Everything the handlers of a server reachable at `addr` over `scheme` share:
    /// creates the runtime folder's registry, the admission check (`gauge` reads the CPU;
    /// `None` admits on the session limit alone) and the page-token key. Binds nothing, so
    /// tests can drive the router and a connection without a network.
    pub fn new(
        config: Config,
        detector: DetectorFactory,
        addr: SocketAddr,
        scheme: &'static str,
        gauge: Option<Arc<dyn LoadGauge>>,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        let registry = Arc::new(
            Registry::new(
                &config.pipeline.runtime_dir,
                &config.limits,
                shutdown.clone(),
            )?
            .on_node(&config.site.node),
        );
        registry.expire_adopted();
        let mut leptos = config.leptos_options();
        leptos.site_addr = addr;
        let hosts = csrf::HostPolicy::new(addr, &config.site.allowed_hosts);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let capacity = Arc::new(
            Capacity::new(gauge, cores, config.limits.max_cpu_percent)
                .kept_in(&config.pipeline.runtime_dir),
        );
        capacity.start_learning(shutdown.clone());
        tracing::info!(
            "session limit {} ({cores} cores){}",
            config.limits.effective_max_sessions(),
            if config.limits.max_cpu_percent < 100 {
                format!(
                    ", new sessions wait while the CPU would pass {} %",
                    config.limits.max_cpu_percent
                )
            } else {
                String::new()
            }
        );
        let csrf = match &config.site.csrf_key_file {
            Some(path) => csrf::CsrfKey::from_file(path)?,
            None => csrf::CsrfKey::kept_in(&config.pipeline.runtime_dir)?,
        };
        let sockets_per_address =
            crate::session::quota::Quota::new(config.limits.max_sockets_per_address);
        let channels = crate::channel::Channels::new(&config.channels, &config.site.node);
        let detectors =
            crate::video::detector::shared_pool(&config.pipeline.detector, detector.clone())?;
        let pipeline = PipelineEnv {
            spawner: config.pipeline.spawner(),
            detectors,
            detector_kind: crate::video::detector::running_kind(&config.pipeline.detector),
            config: config.pipeline.clone(),
            detector,
            min_free_disk_mb: config.limits.min_free_disk_mb,
            capacity: capacity.clone(),
            supervisors: TaskTracker::new(),
        };
        let gate = Arc::new(crate::auth::Gate::new(&config.auth)?);
        let shared = Arc::new(Shared {
            gate: std::sync::RwLock::new(gate),
            addr,
            pipeline_live: std::sync::RwLock::new(pipeline.clone()),
            hosts: std::sync::RwLock::new(hosts),
            limits: std::sync::RwLock::new(config.limits.clone()),
            scheme,
            pipeline,
            capacity,
            config,
            registry,
            csrf,
            shutdown,
            sockets: TaskTracker::new(),
            sockets_per_address,
            resumes: resume::Resumes::default(),
            channels,
            metrics: crate::metrics::install(),
        });
        Ok(AppState { leptos, shared })
    }
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
        .route("/channels.json", get(channels::list))
        .route("/recordings.json", get(recordings::list))
        .route("/auth", get(sign_in::status).post(sign_in::sign_in))
        .route("/channel/{name}/{file}", get(channels::file))
        .route("/channel/{name}/{run}/{file}", get(channels::stream))
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
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    connected: Option<
        axum::Extension<axum::extract::connect_info::ConnectInfo<std::net::SocketAddr>>,
    >,
) -> axum::response::Response {
    if state.shared.gate().protects_metrics() {
        let from = csrf::requester(&state, &headers, connected);
        if let Err(refusal) = sign_in::check(&state, &headers, from).await {
            sign_in::refused(refusal);
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs a bearer token or the passphrase ([auth] protect-metrics).",
            )
                .into_response();
        }
    }
    ::metrics::gauge!(crate::metrics::SOCKETS).set(state.shared.sockets.len() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(state.shared.metrics.as_ref()),
    )
        .into_response()
}
