//! `[site]`: where and how the HTTP server listens, the built site it serves, and its place
//! in a cluster.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[site] env`: Leptos' build mode (cargo-leptos sets `LEPTOS_ENV=DEV` while watching).
/// Anything else is refused instead of silently meaning production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SiteEnv {
    /// Adds cargo-leptos' live-reload script.
    #[serde(
        rename = "DEV",
        alias = "dev",
        alias = "development",
        alias = "DEVELOPMENT"
    )]
    Dev,
    #[serde(
        rename = "PROD",
        alias = "prod",
        alias = "production",
        alias = "PRODUCTION"
    )]
    Prod,
}

/// `[site]`: the Leptos site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct SiteConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Built site folder.
    pub root: String,
    /// Sub-folder of `root` with the wasm bundle.
    pub pkg_dir: String,
    /// Bundle base name.
    pub output_name: String,
    /// "DEV" or "PROD".
    pub env: SiteEnv,
    /// cargo-leptos live-reload port.
    pub reload_port: u32,
    /// Host names (`host` or `host:port`) requests may carry besides the listen address
    /// and localhost, e.g. the name a reverse proxy or a certificate uses.
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain: with `tls-key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls-cert`.
    pub tls_key: Option<PathBuf>,
    /// Take the scheme and host the browser used from `X-Forwarded-Proto`/`-Host` (or
    /// `Forwarded`) set by a reverse proxy in front; only when such a proxy is the only
    /// way in, since a direct client could set them too.
    pub trust_forwarded: bool,
    /// This server's name in a cluster behind one proxy (`deploy/cluster`): session ids and
    /// viewer tokens start with it (`n2-…`) so the proxy routes a session's requests here.
    /// Empty on a single server.
    pub node: String,
    /// A file holding the secret behind page tokens (64 hex digits). Every node of a
    /// cluster needs the same one: a page loaded from one node opens its socket on another.
    /// Unset: a fresh secret per process (tokens end with it).
    pub csrf_key_file: Option<PathBuf>,
}

impl SiteConfig {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        super::first_failure(&[(
            self.node.is_empty() || app::hls_path::is_node_name(&self.node),
            "site.node must be 1 to 16 lowercase letters and digits (or empty)",
        )])
    }
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            root: "target/site".into(),
            pkg_dir: "pkg".into(),
            output_name: "hls-face".into(),
            env: SiteEnv::Prod,
            reload_port: 3001,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            trust_forwarded: false,
            node: String::new(),
            csrf_key_file: None,
        }
    }
}
