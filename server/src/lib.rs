//! hls-face server: the web app, the per-session video pipeline, and the server lifecycle.

pub mod allocator;
pub mod auth;
pub mod batch;
pub mod channel;
pub mod child;
pub mod config;
pub mod disk;
pub mod error;
#[cfg(test)]
mod fake_ffmpeg;
pub mod hls;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod session;
pub mod source;
pub mod video;
pub mod web;

use config::Config;
use error::ServerError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use video::detector::{factory_for, DetectorFactory};
use web::AppState;

/// How long shutdown waits for sockets to end their sessions (exit within 5 s in all).
const SOCKET_DRAIN: Duration = Duration::from_secs(4);

/// A server bound to its address and serving in the background.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// "http" or "https".
    pub scheme: &'static str,
    /// Cancel to shut down gracefully.
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Binds `config.site.addr` and starts serving, with the detector the config names.
    pub async fn start(config: Config) -> Result<Self, ServerError> {
        let detector = factory_for(&config.pipeline.detector);
        Self::start_with(config, detector).await
    }

    /// Like [`RunningServer::start`] with an injected detector.
    pub async fn start_with(
        config: Config,
        detector: DetectorFactory,
    ) -> Result<Self, ServerError> {
        let shutdown = CancellationToken::new();
        let addr = config.site.addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let tls =
            match (&config.site.tls_cert, &config.site.tls_key) {
                (Some(cert), Some(key)) => Some(web::listener::tls_config(cert, key)?),
                (None, None) => None,
                _ => return Err(ServerError::Config(
                    "site.tls-cert and site.tls-key go together: set both for HTTPS, or neither"
                        .into(),
                )),
            };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls: Option<web::listener::TlsSettings> =
            tls.map(|config| Arc::new(std::sync::RwLock::new(config)));
        let gauge = config.limits.measure_cpu.then(|| {
            session::capacity::ProcStat::start(shutdown.clone())
                as Arc<dyn session::capacity::LoadGauge>
        });
        let state = AppState::new(config, detector, addr, scheme, gauge, shutdown.clone())?;
        let shared = state.shared.clone();
        shared.channels.start(&shared);
        reload::Reloader::start(shared.clone(), tls.clone(), shutdown.clone());
        let registry = shared.registry.clone();
        let router = web::app(state);
        let token = shutdown.clone();
        let limits = web::listener::Limits {
            max_connections: shared.config.limits.max_connections,
            header_timeout: Duration::from_secs(shared.config.limits.header_timeout_secs),
            silent_timeout: web::listener::SILENT_TIMEOUT,
        };
        let task = tokio::spawn(async move {
            let served = web::listener::serve(listener, router, tls, limits, token).await;
            // Upgraded sockets are not tracked by axum: wait for them to end their sessions.
            shared.sockets.close();
            if tokio::time::timeout(SOCKET_DRAIN, shared.sockets.wait())
                .await
                .is_err()
            {
                tracing::warn!("some sessions did not end within {SOCKET_DRAIN:?}");
            }
            // Channels end their streams on the same signal.
            shared.channels.tasks.close();
            if tokio::time::timeout(SOCKET_DRAIN, shared.channels.tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("some channels did not end within {SOCKET_DRAIN:?}");
            }
            // Sockets end their sessions; a session whose socket was gone already ends on
            // its own once its input closed: wait for every pipeline to reap its children.
            let supervisors = &shared.pipeline.supervisors;
            supervisors.close();
            if tokio::time::timeout(SOCKET_DRAIN, supervisors.wait())
                .await
                .is_err()
            {
                tracing::warn!("some pipelines did not end within {SOCKET_DRAIN:?}");
            }
            registry.drain().await;
            served.map_err(|source| ServerError::Serve { source })
        });
        Ok(RunningServer {
            addr,
            scheme,
            shutdown,
            task,
        })
    }

    /// Waits until the server has stopped (after [`RunningServer::shutdown`] is cancelled).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(source) => Err(ServerError::Task {
                what: "the server task",
                source,
            }),
        }
    }
}
