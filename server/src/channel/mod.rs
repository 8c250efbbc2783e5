//! Camera channels: the operator's `[[channel]]` sources (RTSP cameras, SRT publishers,
//! file loops), each run by a task that keeps its source connected and feeds it through
//! the same pipeline a browser session runs; and each channel's state as the Channels page
//! and `/metrics` show it.

pub mod ingest;
mod runner;

use crate::config::{ChannelConfig, ChannelSource};
use crate::session::registry::SessionId;
use crate::video::thumbnail::Latest;
use app::channels::{ChannelInfo, ChannelState};
use ingest::Fault;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::task::TaskTracker;

/// A live channel with no frame for this long says so (its run ends after the idle limit).
const QUIET_AFTER: Duration = Duration::from_secs(2);
/// What a live channel without frames says.
const QUIET: &str = "no video from the source right now";

/// A viewer counts while it fetched anything of the channel within this long.
const VIEWER_WINDOW: Duration = Duration::from_secs(10);

/// Every configured channel, by name.
pub struct Channels {
    list: std::sync::RwLock<Vec<Running>>,
    /// This server's cluster node (`[site] node`; empty without one).
    node: String,
    /// Every channel of the settings, this node's and the others' (in the settings' order).
    settings: std::sync::RwLock<Vec<ChannelConfig>>,
    /// The channel tasks (shutdown waits for them).
    pub tasks: TaskTracker,
}

/// A channel and the token that stops its task.
struct Running {
    channel: Arc<Channel>,
    stop: tokio_util::sync::CancellationToken,
}

impl Channels {
    /// The channels of the settings (checked already) that node `node` runs, not yet
    /// running.
    pub fn new(configs: &[ChannelConfig], node: &str) -> Self {
        let list = configs
            .iter()
            .filter(|c| c.runs_on(node))
            .filter_map(|config| match config.check() {
                Ok(source) => Some(Running {
                    channel: Arc::new(Channel::new(config.clone(), source)),
                    stop: tokio_util::sync::CancellationToken::new(),
                }),
                Err(why) => {
                    tracing::error!("{why}");
                    None
                }
            })
            .collect();
        if !node.is_empty() {
            for c in configs.iter().filter(|c| c.node.is_none()) {
                tracing::warn!(
                    channel = %c.name,
                    "the channel names no node: every node reading these settings runs it"
                );
            }
        }
        Channels {
            list: std::sync::RwLock::new(list),
            node: node.to_string(),
            settings: std::sync::RwLock::new(configs.to_vec()),
            tasks: TaskTracker::new(),
        }
    }

    fn list(&self) -> std::sync::RwLockReadGuard<'_, Vec<Running>> {
        self.list.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every channel's task.
    pub fn start(&self, shared: &Arc<crate::web::Shared>) {
        for running in self.list().iter() {
            self.spawn(running, shared);
        }
    }

    fn spawn(&self, running: &Running, shared: &Arc<crate::web::Shared>) {
        let channel = &running.channel;
        tracing::info!(
            channel = %channel.config.name,
            "channel from {}",
            channel.source.describe()
        );
        let env = runner::Env::new(shared, &channel.config, running.stop.clone());
        self.tasks.spawn(runner::run(channel.clone(), env));
    }

    /// Brings the running channels in line with `configs` (reloaded settings): a new one
    /// starts, a removed one stops (its stream ends cleanly), a changed one restarts.
    /// Returns what changed, for the log.
    pub fn apply(&self, all: &[ChannelConfig], shared: &Arc<crate::web::Shared>) -> Vec<String> {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = all.to_vec();
        let configs: Vec<ChannelConfig> = all
            .iter()
            .filter(|c| c.runs_on(&self.node))
            .cloned()
            .collect();
        let configs = configs.as_slice();
        let mut changes = Vec::new();
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let mut restarted = Vec::new();
        list.retain(|running| {
            let name = &running.channel.config.name;
            let keep = configs.iter().any(|c| *c == running.channel.config);
            if !keep {
                running.stop.cancel();
                if configs.iter().any(|c| &c.name == name) {
                    changes.push(format!("channel {name} changed: restarting it"));
                    restarted.push(name.clone());
                } else {
                    changes.push(format!("channel {name} removed: stopping it"));
                }
            }
            keep
        });
        for config in configs {
            if list.iter().any(|r| r.channel.config == *config) {
                continue;
            }
            match config.check() {
                Ok(source) => {
                    let running = Running {
                        channel: Arc::new(Channel::new(config.clone(), source)),
                        stop: tokio_util::sync::CancellationToken::new(),
                    };
                    if !restarted.contains(&config.name) {
                        changes.push(format!("channel {} added: starting it", config.name));
                    }
                    self.spawn(&running, shared);
                    list.push(running);
                }
                Err(why) => tracing::error!("{why}"),
            }
        }
        // The page lists channels in the settings' order.
        list.sort_by_key(|r| configs.iter().position(|c| c.name == r.channel.config.name));
        changes
    }

    /// The channel named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.list()
            .iter()
            .find(|r| r.channel.config.name == name)
            .map(|r| r.channel.clone())
    }

    /// Every channel's state, in the settings' order.
    pub fn infos(&self) -> Vec<ChannelInfo> {
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        settings
            .iter()
            .filter_map(|config| {
                if config.runs_on(&self.node) {
                    return self.get(&config.name).map(|c| c.info());
                }
                // Another node's: what the settings say, for the page to ask that node.
                let source = config.check().ok()?;
                Some(ChannelInfo {
                    name: config.name.clone(),
                    kind: source.kind().to_string(),
                    state: ChannelState::Connecting,
                    since_ms: 0,
                    why: None,
                    why_label: None,
                    refused_ms: None,
                    privacy: config.privacy,
                    fps: 0.0,
                    viewers: 0,
                    run: None,
                    thumbnail: false,
                    width: config.width,
                    height: config.height,
                    node: config.node.clone(),
                    elsewhere: true,
                })
            })
            .collect()
    }
}

/// One channel: its settings and where it stands.
pub struct Channel {
    pub config: ChannelConfig,
    pub source: ChannelSource,
    status: Mutex<Status>,
    viewers: Mutex<HashMap<IpAddr, Instant>>,
}

/// The mutable part of a channel.
#[derive(Debug, Clone)]
struct Status {
    state: ChannelState,
    since: SystemTime,
    fault: Option<Fault>,
    /// The last SRT publisher refused for a wrong passphrase.
    refused_at: Option<SystemTime>,
    /// The running pipeline's session (its stream is served under this id).
    run: Option<SessionId>,
    thumbnail: Option<Latest>,
    fps: f32,
    /// Since when a live run has had no frame (a source that went quiet mid-stream).
    quiet_since: Option<SystemTime>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Channel {
    fn new(config: ChannelConfig, source: ChannelSource) -> Self {
        Channel {
            config,
            source,
            status: Mutex::new(Status {
                state: ChannelState::Connecting,
                since: SystemTime::now(),
                fault: None,
                refused_at: None,
                run: None,
                thumbnail: None,
                fps: 0.0,
                quiet_since: None,
            }),
            viewers: Mutex::default(),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves to `state` (noting when, if it changed), with the fault that caused it.
    fn set_state(&self, state: ChannelState, fault: Option<Fault>) {
        let mut status = self.status();
        if status.state != state || status.fault != fault {
            status.since = SystemTime::now();
            let name = &self.config.name;
            match fault {
                Some(f) => {
                    tracing::warn!(channel = %name, "channel {}: {}", state.as_str(), f.sentence())
                }
                None => tracing::info!(channel = %name, "channel {}", state.as_str()),
            }
        }
        status.state = state;
        status.fault = fault;
        for other in [
            ChannelState::Connecting,
            ChannelState::Waiting,
            ChannelState::Live,
            ChannelState::Down,
            ChannelState::Stopped,
        ] {
            ::metrics::gauge!(
                crate::metrics::CHANNEL_STATE,
                "channel" => self.config.name.clone(),
                "state" => other.as_str()
            )
            .set(if other == state { 1.0 } else { 0.0 });
        }
        if state != ChannelState::Live {
            status.fps = 0.0;
        }
        status.quiet_since = None;
    }

    fn set_run(&self, run: Option<SessionId>, thumbnail: Option<Latest>) {
        let mut status = self.status();
        status.run = run;
        if thumbnail.is_some() {
            status.thumbnail = thumbnail;
        }
    }

    fn set_fps(&self, fps: f32) {
        let mut status = self.status();
        status.fps = fps;
        if fps > 0.0 {
            status.quiet_since = None;
        } else if status.quiet_since.is_none() {
            status.quiet_since = Some(SystemTime::now());
        }
    }

    fn note_refusal(&self) {
        let mut status = self.status();
        if status
            .refused_at
            .is_none_or(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(1))
        {
            tracing::warn!(channel = %self.config.name, "an SRT publisher was refused: wrong passphrase");
            ::metrics::counter!(crate::metrics::CHANNEL_FAULTS, "channel" => self.config.name.clone(), "why" => Fault::KeyRefused.label()).increment(1);
        }
        status.refused_at = Some(SystemTime::now());
    }

    /// The state it is in.
    pub fn state(&self) -> ChannelState {
        self.status().state
    }

    /// The running pipeline's session id, while there is one.
    pub fn run(&self) -> Option<SessionId> {
        self.status().run.clone()
    }

    /// The newest thumbnail (kept from the last run while the source is down).
    pub fn thumbnail(&self) -> Option<bytes::Bytes> {
        self.status().thumbnail.as_ref().and_then(Latest::get)
    }

    /// Notes a request from `address` (a viewer, or the cache in front of them).
    pub fn saw_viewer(&self, address: IpAddr) {
        let now = Instant::now();
        let mut viewers = self.viewers.lock().unwrap_or_else(|p| p.into_inner());
        viewers.retain(|_, at| now.duration_since(*at) < VIEWER_WINDOW);
        viewers.insert(address, now);
    }

    /// What the Channels page shows.
    pub fn info(&self) -> ChannelInfo {
        let viewers = {
            let now = Instant::now();
            let viewers = self.viewers.lock().unwrap_or_else(|p| p.into_inner());
            viewers
                .values()
                .filter(|at| now.duration_since(**at) < VIEWER_WINDOW)
                .count() as u32
        };
        let status = self.status().clone();
        let refused = status.refused_at.filter(|t| {
            status.state != ChannelState::Live
                && t.elapsed().unwrap_or_default() < Duration::from_secs(60)
        });
        // Live, but no frame for 2 s: the page must not just say "Live".
        let quiet = status.state == ChannelState::Live
            && status
                .quiet_since
                .is_some_and(|t| t.elapsed().unwrap_or_default() >= QUIET_AFTER);
        let why = match (status.fault, refused) {
            (Some(fault), _) => Some(fault.sentence().to_string()),
            _ if quiet => Some(QUIET.to_string()),
            (None, Some(_)) => Some(Fault::KeyRefused.sentence().to_string()),
            (None, None) => None,
        };
        ChannelInfo {
            name: self.config.name.clone(),
            kind: self.source.kind().to_string(),
            state: status.state,
            since_ms: unix_ms(status.since),
            why,
            why_label: match status.fault {
                Some(f) => Some(f.label().to_string()),
                None if quiet => Some("no-video".to_string()),
                None => refused.map(|_| Fault::KeyRefused.label().to_string()),
            },
            refused_ms: refused.map(unix_ms),
            privacy: self.config.privacy,
            fps: status.fps,
            viewers,
            run: status.run.map(|id| id.to_string()),
            thumbnail: status.thumbnail.as_ref().is_some_and(|t| t.get().is_some()),
            width: self.config.width,
            height: self.config.height,
            node: self.config.node.clone(),
            elsewhere: false,
        }
    }
}
