//! Every session's id and folder, the session limit, and folder retention and cleanup.

use super::kept::{Note, Owner};
use super::quota::{self, lock, Held, Quota};
use crate::config::LimitsConfig;
use crate::error::ServerError;
use crate::hls::stream::{Stream, Timing};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use super::ids::{ClientId, SessionId, ViewerToken};

/// A session's folder and its published LL-HLS stream, as the HLS routes see them.
#[derive(Debug, Clone)]
pub struct Folder {
    pub dir: PathBuf,
    /// The newest snapshot; blocking playlist requests wait on its changes.
    pub stream: watch::Receiver<Arc<Stream>>,
    /// The browser whose session it is (none for a camera channel's run).
    pub owner: Option<Owner>,
}

/// A stopped session's kept folder.
#[derive(Debug, Clone)]
struct Kept {
    id: SessionId,
    note: Note,
    /// A recording is (being) made for it: until its MP4 is there, it is "finishing".
    offered: bool,
}

/// A browser's recordings, as its page is told after a reload.
#[derive(Debug, Default, PartialEq)]
pub struct Recordings {
    /// Ready to download: the session and how long it stays.
    pub ready: Vec<(SessionId, Duration)>,
    /// Sessions still running (another tab, or a page that left moments ago) or whose MP4
    /// is being made.
    pub finishing: usize,
}

/// A place in the session limit plus the session's new folder. Dropping it frees the place
/// and marks the playlist ended for anyone waiting on it.
pub struct Admission {
    pub id: SessionId,
    pub dir: PathBuf,
    /// Where the session publishes its stream.
    pub stream: watch::Sender<Arc<Stream>>,
    viewer: ViewerToken,
    viewers: Arc<Mutex<HashMap<ViewerToken, SessionId>>>,
    /// The network it was admitted from: its recording counts against it.
    pub network: IpAddr,
    /// The client's and network's places (a camera channel has neither).
    _client: Option<Held<ClientId>>,
    _network: Option<Held<IpAddr>>,
    _slot: Held<()>,
}

impl Admission {
    /// The session's viewer token: a second unguessable id, valid while the session runs.
    pub fn viewer_token(&self) -> &ViewerToken {
        &self.viewer
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Anyone waiting on the stream learns it ended (with ENDLIST) even if the session
        // never got to end it itself.
        self.stream.send_if_modified(|s| {
            if s.ended {
                return false;
            }
            *s = Arc::new(s.ended_copy());
            true
        });
        // The session has ended: its viewer link stops working.
        lock(&self.viewers).remove(&self.viewer);
    }
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server is at its session limit.
    Full,
    /// This client already runs as many sessions as one client may.
    Client,
    /// Its network address already runs as many sessions as one address may (a fresh
    /// cookie does not reset this one).
    Network,
    /// The session's folder could not be made (the error is logged where it happened).
    Storage,
    /// As many recordings are kept (and coming from running sessions) as the server keeps.
    Recordings,
}

/// The server's sessions.
pub struct Registry {
    root: PathBuf,
    /// Held for the registry's life: one server per runtime folder.
    _lock: RuntimeLock,
    /// Stopped sessions whose folders are kept, oldest first.
    retained: Mutex<VecDeque<Kept>>,
    max_retained: AtomicUsize,
    max_retained_per_address: AtomicUsize,
    folders: Mutex<HashMap<SessionId, Folder>>,
    /// Live viewer tokens → their sessions.
    viewers: Arc<Mutex<HashMap<ViewerToken, SessionId>>>,
    /// Running sessions per client (browser session cookie).
    clients: Quota<ClientId>,
    /// Running sessions per network address (see [`quota::network_of`]).
    networks: Quota<IpAddr>,
    /// Running sessions (and channel runs), at most the session limit.
    slots: Quota<()>,
    cleanup: TaskTracker,
    shutdown: CancellationToken,
    /// This server's name in a cluster (empty on a single server): ids start with it.
    node: String,
}

impl Registry {
    /// Takes `root` for this server (creating it): locks it against a second server and
    /// removes the session folders a previous run left (only folders named like a session
    /// id; nothing else in `root` is touched).
    pub fn new(
        root: &Path,
        limits: &LimitsConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        std::fs::create_dir_all(root)
            .map_err(|e| ServerError::io("cannot create runtime dir", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| ServerError::io("cannot resolve runtime dir", root, e))?;
        let lock_file = RuntimeLock::take(&root)?;
        let entries = std::fs::read_dir(&root)
            .map_err(|e| ServerError::io("cannot read runtime dir", &root, e))?;
        let mut folders = HashMap::new();
        let mut retained = VecDeque::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let id = entry
                .file_name()
                .to_str()
                .and_then(SessionId::parse)
                .filter(|_| entry.file_type().is_ok_and(|t| t.is_dir()));
            let Some(id) = id else { continue };
            // A recording a previous run promised to keep, and finished, stays its time.
            let note = Note::read(&path).filter(|n| {
                !n.remaining().is_zero() && path.join(crate::hls::recording::RECORDING).is_file()
            });
            if let Some(note) = note {
                let (_, stream) = watch::channel(Arc::new(Stream {
                    ended: true,
                    ..Stream::new(Timing::default())
                }));
                let owner = note.owner.clone();
                folders.insert(
                    id.clone(),
                    Folder {
                        dir: path,
                        stream,
                        owner,
                    },
                );
                retained.push_back(Kept {
                    id,
                    note,
                    offered: true,
                });
                continue;
            }
            std::fs::remove_dir_all(&path)
                .map_err(|e| ServerError::io("cannot remove a stale session folder", &path, e))?;
        }
        if !retained.is_empty() {
            tracing::info!("{} recordings kept from the previous run", retained.len());
        }
        Ok(Registry {
            root,
            _lock: lock_file,
            folders: Mutex::new(folders),
            viewers: Arc::default(),
            clients: Quota::new(limits.max_sessions_per_client),
            networks: Quota::new(limits.max_sessions_per_address),
            slots: Quota::new(limits.effective_max_sessions()),
            retained: Mutex::new(retained),
            max_retained: AtomicUsize::new(limits.max_retained),
            max_retained_per_address: AtomicUsize::new(limits.max_retained_per_address),
            cleanup: TaskTracker::new(),
            shutdown,
            node: String::new(),
        })
    }

    /// The registry of cluster node `node`: its session ids and viewer tokens name it.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = node.to_string();
        self
    }

    /// Whether a new session would find a place now (the session limit only; the CPU
    /// check is [`crate::session::capacity::Capacity::has_room`]).
    pub fn has_room(&self) -> bool {
        self.slots.held(&()) < self.slots.limit()
    }

    /// Applies reloaded limits to new sessions (running ones keep their places).
    pub fn set_limits(&self, limits: &LimitsConfig) {
        self.slots.set_limit(limits.effective_max_sessions());
        self.clients.set_limit(limits.max_sessions_per_client);
        self.networks.set_limit(limits.max_sessions_per_address);
        self.max_retained
            .store(limits.max_retained, Ordering::Relaxed);
        self.max_retained_per_address
            .store(limits.max_retained_per_address, Ordering::Relaxed);
    }

    /// A place for a new session of `client`, connected from `address`, and its folder, or
    /// why not.
    pub fn admit(&self, client_id: &ClientId, address: IpAddr) -> Result<Admission, Refusal> {
        let Some(permit) = self.slots.take(&()) else {
            return Err(Refusal::Full);
        };
        let client = self.clients.take(client_id).ok_or(Refusal::Client)?;
        let network_key = quota::network_of(address);
        let network = self.networks.take(&network_key).ok_or(Refusal::Network)?;
        // Running sessions (this one included) each leave a recording.
        let running = self.slots.held(&());
        let kept = self
            .retained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if kept + running > self.max_retained.load(Ordering::Relaxed) {
            return Err(Refusal::Recordings);
        }
        let owner = Owner::of(client_id);
        self.open(
            permit,
            Some(client),
            Some(network),
            network_key,
            Some(owner),
        )
    }

    /// A place for one run of the operator's camera channel: it counts against the session
    /// limit like a browser session, but against no client's or address's quota, and it
    /// keeps no recording.
    pub fn admit_channel(&self) -> Result<Admission, Refusal> {
        let Some(permit) = self.slots.take(&()) else {
            return Err(Refusal::Full);
        };
        self.open(permit, None, None, IpAddr::from([127, 0, 0, 1]), None)
    }

    /// Makes the folder, stream and viewer token of an admitted session.
    fn open(
        &self,
        permit: Held<()>,
        client: Option<Held<ClientId>>,
        network: Option<Held<IpAddr>>,
        network_key: IpAddr,
        owner: Option<Owner>,
    ) -> Result<Admission, Refusal> {
        let id = SessionId::random_on(&self.node);
        let dir = self.root.join(id.as_str());
        if let Err(e) = std::fs::create_dir(&dir) {
            tracing::error!("{}", ServerError::io("cannot create session dir", &dir, e));
            return Err(Refusal::Storage);
        }
        let (stream, receiver) = watch::channel(Arc::new(Stream::new(Timing::default())));
        lock(&self.folders).insert(
            id.clone(),
            Folder {
                dir: dir.clone(),
                stream: receiver,
                owner,
            },
        );
        let viewer = ViewerToken::random_on(&self.node);
        lock(&self.viewers).insert(viewer.clone(), id.clone());
        Ok(Admission {
            id,
            dir,
            stream,
            viewer,
            viewers: self.viewers.clone(),
            network: network_key,
            _client: client,
            _network: network,
            _slot: permit,
        })
    }

    /// The session a live viewer token belongs to (`None` once the session has ended).
    pub fn viewer_session(&self, token: &ViewerToken) -> Option<SessionId> {
        lock(&self.viewers).get(token).cloned()
    }

    /// The folder of a known session (live or retained).
    pub fn folder(&self, id: &SessionId) -> Option<Folder> {
        lock(&self.folders).get(id).cloned()
    }

    /// Forgets `id` and removes its folder after `retention`. A kept folder gets a note
    /// on disk (its owner and until when), so a restart keeps it for the rest of that time
    /// once its recording is made; `offered`: a recording is being made for it. One network
    /// keeps at most `max-retained-per-address` folders: one more replaces that network's
    /// own oldest, never another's (admission keeps the total bounded).
    pub fn retire(
        self: &Arc<Self>,
        id: SessionId,
        retention: Duration,
        network: IpAddr,
        offered: bool,
    ) {
        if !retention.is_zero() {
            let folder = self.folder(&id);
            let note = Note::new(
                folder.as_ref().and_then(|f| f.owner.clone()),
                network,
                retention,
            );
            if let Some(folder) = &folder {
                if let Err(e) = note.write(&folder.dir) {
                    tracing::warn!(session = %id, "the kept folder's note was not written ({e}): a restart removes it");
                }
            }
            let evicted = {
                let mut retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
                retained.push_back(Kept {
                    id: id.clone(),
                    note,
                    offered,
                });
                let own = retained
                    .iter()
                    .filter(|k| k.note.network == network)
                    .count();
                let excess =
                    own.saturating_sub(self.max_retained_per_address.load(Ordering::Relaxed));
                let oldest: Vec<SessionId> = retained
                    .iter()
                    .filter(|k| k.note.network == network)
                    .take(excess)
                    .map(|k| k.id.clone())
                    .collect();
                retained.retain(|k| !oldest.contains(&k.id));
                oldest
            };
            for old in evicted {
                tracing::info!(session = %old, "one more recording from its network than max-retained-per-address; removing its oldest");
                self.clone().remove_later(old, Duration::ZERO);
            }
        }
        self.clone().remove_later(id, retention);
    }

    /// Schedules the removal of the folders a previous run kept (call once, after
    /// [`Registry::new`]).
    pub fn expire_adopted(self: &Arc<Self>) {
        let adopted: Vec<(SessionId, Duration)> = self
            .retained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| (k.id.clone(), k.note.remaining()))
            .collect();
        for (id, left) in adopted {
            self.clone().remove_later(id, left);
        }
    }

    /// The recording of `id` will not come (its remux failed or was cut short).
    pub fn recording_failed(&self, id: &SessionId) {
        let mut retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = retained.iter_mut().find(|k| &k.id == id) {
            kept.offered = false;
        }
    }

    /// The recordings of the browser with cookie id `client`: ready ones with the time
    /// they stay, and how many of its sessions are still running or being finished.
    pub fn recordings_of(&self, client: &ClientId) -> Recordings {
        let owner = Some(Owner::of(client));
        let folders = lock(&self.folders);
        let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = Recordings::default();
        for kept in retained.iter().filter(|k| k.note.owner == owner) {
            let Some(folder) = folders.get(&kept.id) else {
                continue;
            };
            if folder.dir.join(crate::hls::recording::RECORDING).is_file() {
                list.ready.push((kept.id.clone(), kept.note.remaining()));
            } else if kept.offered {
                list.finishing += 1;
            }
        }
        list.finishing += folders
            .iter()
            .filter(|(id, f)| f.owner == owner && !retained.iter().any(|k| &k.id == *id))
            .count();
        list
    }

    fn remove_later(self: Arc<Self>, id: SessionId, after: Duration) {
        let this = self.clone();
        self.cleanup.spawn(async move {
            let shutting_down = tokio::select! {
                _ = tokio::time::sleep(after) => false,
                _ = this.shutdown.cancelled() => true,
            };
            let Some(Folder { dir, .. }) = lock(&this.folders).remove(&id) else {
                return; // removed already (evicted, then its own timer)
            };
            let kept = {
                let mut retained = this.retained.lock().unwrap_or_else(|p| p.into_inner());
                let kept = retained.iter().any(|k| k.id == id && k.offered);
                retained.retain(|k| k.id != id);
                kept
            };
            if shutting_down && kept {
                // The next run keeps it for the rest of its time, if its MP4 was made.
                return;
            }
            // Thousands of segments: keep the unlinking off the async workers.
            let removed = tokio::task::spawn_blocking(move || {
                std::fs::remove_dir_all(&dir).map_err(|e| (dir, e))
            })
            .await;
            if let Ok(Err((dir, e))) = removed {
                tracing::warn!(session = %id, "cannot remove {}: {e}", dir.display());
            }
        });
    }

    /// Waits for pending removals (call after cancelling the shutdown token).
    pub async fn drain(&self) {
        self.cleanup.close();
        self.cleanup.wait().await;
    }
}

/// An exclusive lock on a runtime folder (`flock` on its `.lock` file, which holds the
/// owner's pid), released when the process ends however it ends.
struct RuntimeLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl Drop for RuntimeLock {
    fn drop(&mut self) {
        // A clean shutdown leaves the folder as it found it; the lock itself is released
        // when the file closes (right after), or by the kernel if the process dies.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Name of the lock file inside the runtime folder.
const LOCK_FILE: &str = ".lock";

impl RuntimeLock {
    fn take(root: &Path) -> Result<Self, ServerError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = root.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ServerError::io("cannot open the runtime folder's lock", &path, e))?;
        // SAFETY: flock only locks the open file description we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            return Err(ServerError::RuntimeInUse {
                dir: root.to_owned(),
                owner: owner.trim().to_string(),
            });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(RuntimeLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same browser for the same name.
    fn client(name: &str) -> ClientId {
        ClientId::parse(&format!("{:0>32}", hex::encode(name))).expect("a hex id")
    }

    fn temp_root(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hls-face-reg-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_and_cleans_up() {
        let root = temp_root("limit");
        let stale = root.join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(root.join("notes.txt"), b"not ours").unwrap();
        let shutdown = CancellationToken::new();
        let limits = LimitsConfig {
            max_sessions: 2,
            ..LimitsConfig::default()
        };
        let reg = Arc::new(Registry::new(&root, &limits, shutdown.clone()).unwrap());
        assert!(
            !stale.exists(),
            "a previous run's session folder is removed"
        );
        assert!(
            root.join("notes.txt").exists(),
            "other files are not touched"
        );
        let err = Registry::new(&root, &limits, CancellationToken::new())
            .err()
            .expect("a second server on the same folder is refused");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        let a = reg.admit(&client("x"), home()).unwrap();
        let b = reg.admit(&client("y"), home()).unwrap();
        assert_eq!(
            reg.admit(&client("z"), home()).err(),
            Some(Refusal::Full),
            "third session is refused"
        );
        assert!(a.dir.is_dir() && b.dir.is_dir());
        let (id, dir) = (a.id.clone(), a.dir.clone());
        let viewer = a.viewer_token().clone();
        assert_ne!(
            viewer.as_str(),
            id.as_str(),
            "the viewer token is not the session id"
        );
        assert_eq!(reg.viewer_session(&viewer), Some(id.clone()));
        drop(a);
        assert_eq!(
            reg.viewer_session(&viewer),
            None,
            "revoked when the session ends"
        );
        assert!(
            reg.admit(&client("z"), home()).is_ok(),
            "a freed place can be reused"
        );
        reg.retire(id.clone(), Duration::from_secs(3600), home(), false);
        let folder = reg.folder(&id).expect("kept during retention");
        assert_eq!(folder.dir, dir);
        assert!(
            folder.stream.borrow().ended,
            "a dropped admission ends the playlist"
        );
        shutdown.cancel();
        reg.drain().await;
        assert!(reg.folder(&id).is_none());
        assert!(!dir.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Where the tests' clients connect from.
    fn home() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[tokio::test]
    async fn one_address_runs_a_limited_number_of_sessions_whatever_its_cookies() {
        let root = temp_root("per-address");
        let limits = LimitsConfig {
            max_sessions: 8,
            max_sessions_per_address: 3,
            ..LimitsConfig::default()
        };
        let reg = Registry::new(&root, &limits, CancellationToken::new()).unwrap();
        let held: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|c| reg.admit(&client(c), home()).unwrap())
            .collect();
        assert_eq!(
            reg.admit(&client("fresh"), home()).err(),
            Some(Refusal::Network),
            "a fresh cookie does not reset the address's count"
        );
        let elsewhere = IpAddr::from([192, 0, 2, 9]);
        assert!(reg.admit(&client("fresh"), elsewhere).is_ok());
        drop(held);
        assert!(reg.admit(&client("fresh"), home()).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn one_client_runs_a_limited_number_of_sessions() {
        let root = temp_root("per-client");
        let limits = LimitsConfig {
            max_sessions: 8,
            max_sessions_per_client: 2,
            ..LimitsConfig::default()
        };
        let reg = Arc::new(Registry::new(&root, &limits, CancellationToken::new()).unwrap());
        let a = reg.admit(&client("me"), home()).unwrap();
        let _b = reg.admit(&client("me"), home()).unwrap();
        assert_eq!(
            reg.admit(&client("me"), home()).err(),
            Some(Refusal::Client)
        );
        assert!(
            reg.admit(&client("you"), home()).is_ok(),
            "others are not affected"
        );
        drop(a);
        assert!(
            reg.admit(&client("me"), home()).is_ok(),
            "a place freed is the client's again"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_network_replaces_only_its_own_recordings_and_a_full_server_refuses() {
        let root = temp_root("retained");
        let limits = LimitsConfig {
            max_sessions: 4,
            max_retained: 4,
            max_retained_per_address: 2,
            ..LimitsConfig::default()
        };
        let reg = Arc::new(Registry::new(&root, &limits, CancellationToken::new()).unwrap());
        let victim = IpAddr::from([192, 0, 2, 1]);
        let admit_and_stop = |from: IpAddr, name: &str| {
            let a = reg.admit(&client(name), from).unwrap();
            let id = a.id.clone();
            drop(a);
            reg.retire(
                id.clone(),
                Duration::from_secs(3600),
                a_network(from),
                false,
            );
            id
        };
        let kept = admit_and_stop(victim, "v");
        let mut mine = Vec::new();
        for i in 0..2 {
            mine.push(admit_and_stop(home(), &format!("a{i}")));
        }
        // One more from the same network replaces that network's own oldest.
        mine.push(admit_and_stop(home(), "a2"));
        let gone = |id: &SessionId| reg.folder(id).is_none();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !gone(&mine[0]) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(&mine[0]), "the network's oldest recording is removed");
        assert!(!gone(&kept), "another network's recording stays");
        assert!(!gone(&mine[1]) && !gone(&mine[2]));
        assert!(!root.join(mine[0].as_str()).exists());
        // 3 kept + 1 running = max-retained: the next session is refused, nothing deleted.
        let _running = reg
            .admit(&client("r"), IpAddr::from([192, 0, 2, 3]))
            .unwrap();
        assert_eq!(
            reg.admit(&client("s"), IpAddr::from([192, 0, 2, 4])).err(),
            Some(Refusal::Recordings)
        );
        assert!(!gone(&kept));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The key a network's sessions count against.
    fn a_network(address: IpAddr) -> IpAddr {
        quota::network_of(address)
    }
}
