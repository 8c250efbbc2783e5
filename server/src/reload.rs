//! Settings and certificates reloaded without a restart: `notify` watches the settings
//! file and the TLS certificate and key (their folders, so editors and certbot that save by
//! renaming are seen too). A change that can apply live does, without touching running
//! sessions: `[limits]` (but the listener's), `[site] allowed-hosts`, `[detector]` (for new
//! sessions), `[[channel]]` tables, and the certificate for new connections. Any other changed key is named in the log as
//! needing a restart, and its running value stays. A file that does not load (syntax, an
//! unknown key, a value out of range, half written) changes nothing; the log says why, as
//! at start-up, and `/metrics` shows the last reload's result and time.

use crate::config::Config;
use crate::metrics;
use crate::web::listener::TlsSettings;
use crate::web::Shared;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Changes closer together than this are read as one (an editor's write, then rename).
const SETTLE: Duration = Duration::from_millis(300);

/// Keys that apply live. Every other key needs a restart.
fn applies_live(key: &str) -> bool {
    const RESTART_LIMITS: [&str; 2] = ["limits.max-connections", "limits.header-timeout-secs"];
    (key.starts_with("limits.") && !RESTART_LIMITS.contains(&key))
        || key == "site.allowed-hosts"
        || key == "site.tls-cert"
        || key == "site.tls-key"
        || key == "channel"
        || key.starts_with("pipeline.detector.")
        || key.starts_with("auth.")
}

/// Every leaf key whose value differs between `old` and `new` (`section.key`), with both
/// values as TOML text (`None`: absent, i.e. the default). `[[channel]]` counts as one key
/// and is never printed: it holds secrets.
pub fn changed_keys(
    old: &toml::Table,
    new: &toml::Table,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    diff("", old, new, &mut out);
    out
}

fn diff(
    prefix: &str,
    old: &toml::Table,
    new: &toml::Table,
    out: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => diff(&path, a, b, out),
            (a, b) if a == b => {}
            (a, b) if path == "channel" => {
                out.push((path, a.map(|_| "…".into()), b.map(|_| "…".into())));
            }
            (Some(toml::Value::Table(a)), None) => diff(&path, a, &toml::Table::new(), out),
            (None, Some(toml::Value::Table(b))) => diff(&path, &toml::Table::new(), b, out),
            (a, b) => out.push((path, a.map(ToString::to_string), b.map(ToString::to_string))),
        }
    }
}

/// Sets `key` (`a.b.c`) in `table` to `value` (removes it for `None`).
fn set_key(table: &mut toml::Table, key: &str, value: Option<&toml::Value>) {
    let mut parts = key.split('.').peekable();
    let mut here = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            match value {
                Some(v) => {
                    here.insert(part.to_string(), v.clone());
                }
                None => {
                    here.remove(part);
                }
            }
            return;
        }
        let next = here
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = next else {
            return;
        };
        here = next;
    }
}

fn get_key<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    parts.try_fold(table.get(first)?, |value, part| value.as_table()?.get(part))
}

/// Watches the settings and certificate files until `shutdown`.
pub struct Reloader {
    file: PathBuf,
    shared: Arc<Shared>,
    tls: Option<TlsSettings>,
    /// The settings in force, as a merged table (restart-only keys at their running values).
    running: toml::Table,
    /// The certificate and key files in force.
    cert: Option<(PathBuf, PathBuf)>,
}

impl Reloader {
    /// Starts watching (nothing to watch without a settings file: said in the log).
    pub fn start(shared: Arc<Shared>, tls: Option<TlsSettings>, shutdown: CancellationToken) {
        let Some(file) = shared.config.file.clone() else {
            tracing::info!("no settings file: nothing to reload");
            return;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let running = match Config::merged_table(&text, std::env::vars()) {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!("settings reload is off: {e}");
                return;
            }
        };
        let cert = match (&shared.config.site.tls_cert, &shared.config.site.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        let mut reloader = Reloader {
            file,
            shared,
            tls,
            running,
            cert,
        };
        let (tx, mut rx) = mpsc::channel::<Vec<PathBuf>>(64);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                if !matches!(event.kind, notify::EventKind::Access(_)) {
                    let _ = tx.try_send(event.paths);
                }
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("settings reload is off: cannot watch files: {e}");
                return;
            }
        };
        for dir in reloader.folders() {
            use notify::Watcher;
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}", dir.display());
            }
        }
        tracing::info!(
            "watching {} for changes (limits, allowed hosts, channels and the certificate apply live)",
            reloader.file.display()
        );
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                let mut paths = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    paths = rx.recv() => match paths {
                        Some(p) => p,
                        None => return,
                    },
                };
                while let Ok(Some(more)) = tokio::time::timeout(SETTLE, rx.recv()).await {
                    paths.extend(more);
                }
                let named = |target: &Path| {
                    paths
                        .iter()
                        .any(|p| p.file_name().is_some() && p.file_name() == target.file_name())
                };
                if named(&reloader.file) {
                    reloader.reload_settings();
                }
                let cert_changed = reloader
                    .cert
                    .as_ref()
                    .is_some_and(|(c, k)| named(c) || named(k));
                if cert_changed {
                    reloader.reload_certificate();
                }
            }
        });
    }

    /// The folders to watch: the settings file's and the certificate's.
    fn folders(&self) -> BTreeSet<PathBuf> {
        let folder = |f: &Path| {
            let parent = f.parent().filter(|p| !p.as_os_str().is_empty());
            parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let mut dirs = BTreeSet::from([folder(&self.file)]);
        if let Some((c, k)) = &self.cert {
            dirs.insert(folder(c));
            dirs.insert(folder(k));
        }
        dirs
    }

    fn record(ok: bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ::metrics::gauge!(metrics::CONFIG_RELOADED_AT).set(now);
        ::metrics::gauge!(metrics::CONFIG_RELOAD_OK).set(if ok { 1.0 } else { 0.0 });
        ::metrics::counter!(metrics::CONFIG_RELOADS, "result" => if ok { "ok" } else { "error" })
            .increment(1);
    }

    /// Reads the settings file again and applies what changed and can apply live.
    fn reload_settings(&mut self) {
        // One read of the file: the table compared and the settings applied are the same text.
        let loaded = std::fs::read_to_string(&self.file)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                let table =
                    Config::merged_table(&text, std::env::vars()).map_err(|e| e.to_string())?;
                let mut config =
                    Config::from_parts(&text, std::env::vars()).map_err(|e| e.to_string())?;
                if let Some(base) = self.file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    config.resolve_relative_to(base);
                }
                Ok((table, config))
            });
        let (table, config) = match loaded {
            Ok(pair) => pair,
            Err(why) => {
                tracing::error!(
                    "settings in {} not reloaded, the running ones stay: {why}",
                    self.file.display()
                );
                Self::record(false);
                return;
            }
        };
        let changes = changed_keys(&self.running, &table);
        if changes.is_empty() {
            Self::record(true);
            return;
        }
        let mut running = table;
        // Restart-only keys keep their running values; the rest applies, then is logged
        // (a log line is a promise that the change is in force).
        for (key, _, _) in changes.iter().filter(|(key, _, _)| !applies_live(key)) {
            set_key(&mut running, key, get_key(&self.running, key));
        }
        self.apply(&config);
        for (key, old, new) in &changes {
            let (old, new) = (
                old.as_deref().unwrap_or("(default)"),
                new.as_deref().unwrap_or("(default)"),
            );
            if !applies_live(key) {
                tracing::warn!(
                    "setting {key}: {old} → {new} needs a restart; the running value stays"
                );
            } else if key.starts_with("auth.") {
                // Its values are secrets (a passphrase's hash) or name where they are.
                tracing::info!("setting {key} changed");
            } else if key != "channel" {
                tracing::info!("setting {key}: {old} → {new}");
            }
        }
        if changes.iter().any(|(k, _, _)| k.starts_with("auth.")) {
            match crate::auth::Gate::new(&config.auth) {
                Ok(gate) => {
                    *self.shared.gate.write().unwrap_or_else(|p| p.into_inner()) =
                        std::sync::Arc::new(gate);
                    tracing::info!(
                        "sign-in settings applied (auth.mode = {:?}); earlier sign-ins hold only if the secret is unchanged",
                        config.auth.mode
                    );
                }
                Err(e) => {
                    tracing::warn!("sign-in settings not applied, the running ones stay: {e}")
                }
            }
        }
        if changes.iter().any(|(k, _, _)| k.starts_with("site.tls-")) {
            self.cert = match (&config.site.tls_cert, &config.site.tls_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => self.cert.clone(),
            };
            self.reload_certificate();
        }
        self.running = running;
        Self::record(true);
    }

    /// Applies the live parts of `config` (limits, allowed hosts, channels).
    fn apply(&self, config: &Config) {
        let shared = &self.shared;
        let mut limits = config.limits.clone();
        {
            let mut live = shared.limits.write().unwrap_or_else(|p| p.into_inner());
            // The listener's limits stay as they started.
            limits.max_connections = live.max_connections;
            limits.header_timeout_secs = live.header_timeout_secs;
            *live = limits.clone();
        }
        shared.registry.set_limits(&limits);
        shared.capacity.set_max_busy_percent(limits.max_cpu_percent);
        shared
            .sockets_per_address
            .set_limit(limits.max_sockets_per_address);
        *shared.hosts.write().unwrap_or_else(|p| p.into_inner()) =
            crate::web::csrf::HostPolicy::new(shared.addr, &config.site.allowed_hosts);
        {
            // New sessions (and channel runs) get the detector of the new settings.
            let detector = &config.pipeline.detector;
            let mut env = shared
                .pipeline_live
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if env.config.detector != *detector {
                env.detector = crate::video::detector::factory_for(detector);
                // Running sessions keep the threads they have; the old ones stop with them.
                env.detectors = crate::video::detector::shared_pool(detector, env.detector.clone())
                    .unwrap_or_else(|e| {
                        tracing::error!("detector threads: {e}; each new session runs its own");
                        None
                    });
                env.detector_kind = crate::video::detector::running_kind(detector);
                env.config.detector = detector.clone();
            }
        }
        for change in shared.channels.apply(&config.channels, shared) {
            tracing::info!("{change}");
        }
    }

    /// Loads the certificate and key again; new connections get them, open ones keep theirs.
    fn reload_certificate(&self) {
        let (Some(settings), Some((cert, key))) = (&self.tls, &self.cert) else {
            if self.cert.is_some() {
                tracing::warn!("TLS was off at start: turning it on needs a restart");
            }
            return;
        };
        match crate::web::listener::tls_config(cert, key) {
            Ok(fresh) => {
                *settings.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                tracing::info!(
                    "certificate {} reloaded: new connections get it",
                    cert.display()
                );
            }
            // A renewal caught half-written: the next write is seen again.
            Err(e) => tracing::error!("certificate not reloaded, the running one stays: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        Config::merged_table(text, []).unwrap()
    }

    #[test]
    fn changed_keys_name_each_leaf_and_hide_channels() {
        let old = table("[limits]\nmax-sessions = 4\n[hls]\nsegment-seconds = 1.0\n");
        let new = table(
            "[limits]\nmax-sessions = 2\n[hls]\nsegment-seconds = 2.0\n[[channel]]\nname = \"a\"\nsource = \"rtsp://u:secret@h/x\"\n",
        );
        let changes = changed_keys(&old, &new);
        let keys: Vec<&str> = changes.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "channel",
                "limits.max-sessions",
                "pipeline.hls.segment-seconds"
            ]
        );
        assert!(!format!("{changes:?}").contains("secret"));
        assert!(applies_live("limits.max-sessions") && applies_live("channel"));
        assert!(!applies_live("pipeline.hls.segment-seconds"));
        assert!(applies_live("pipeline.detector.min-face"));
        assert!(!applies_live("limits.max-connections") && !applies_live("site.addr"));
    }

    #[test]
    fn a_restart_only_key_keeps_its_running_value() {
        let old = table("[site]\naddr = \"127.0.0.1:3000\"\n");
        let mut new = table("[site]\naddr = \"0.0.0.0:4000\"\n");
        set_key(&mut new, "site.addr", get_key(&old, "site.addr"));
        assert!(changed_keys(&old, &new).is_empty());
        let mut absent = table("[site]\naddr = \"0.0.0.0:4000\"\n");
        set_key(&mut absent, "site.addr", None);
        assert!(get_key(&absent, "site.addr").is_none());
    }
}
