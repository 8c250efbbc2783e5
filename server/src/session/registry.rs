//! Every session's id and folder, the session limit, and folder retention and cleanup.

use crate::error::ServerError;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A session id: 128 random bits as 32 lowercase hex digits; unguessable, path-safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The OS RNG failing is not recoverable for a server handing out secrets.
        getrandom::fill(&mut bytes).expect("operating system random source failed");
        SessionId(hex::encode(bytes))
    }

    /// Accepts only the exact shape [`SessionId::random`] produces.
    pub fn parse(text: &str) -> Option<Self> {
        app::hls_path::is_hex_id(text).then(|| SessionId(text.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far a session's playlist has got: what blocking playlist requests wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaylistProgress {
    /// Segments produced so far (the next media sequence number).
    pub segments: u64,
    /// The recording has ended (ENDLIST, or the session is gone).
    pub ended: bool,
}

/// A session's folder and its playlist progress, as the HLS route sees them.
#[derive(Debug, Clone)]
pub struct Folder {
    pub dir: PathBuf,
    pub progress: watch::Receiver<PlaylistProgress>,
}

/// A place in the session limit plus the session's new folder. Dropping it frees the place
/// and marks the playlist ended for anyone waiting on it.
pub struct Admission {
    pub id: SessionId,
    pub dir: PathBuf,
    /// Where the session publishes its playlist progress.
    pub progress: watch::Sender<PlaylistProgress>,
    viewer: SessionId,
    viewers: Arc<Mutex<HashMap<SessionId, SessionId>>>,
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// The session's viewer token: a second unguessable id, valid while the session runs.
    pub fn viewer_token(&self) -> &str {
        self.viewer.as_str()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.progress.send_modify(|p| p.ended = true);
        // The session has ended: its viewer link stops working.
        lock(&self.viewers).remove(&self.viewer);
    }
}

/// A poisoned map is still a consistent map: entries are inserted and removed whole.
fn lock<K, V>(map: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server's sessions.
pub struct Registry {
    root: PathBuf,
    folders: Mutex<HashMap<SessionId, Folder>>,
    /// Live viewer tokens → their sessions.
    viewers: Arc<Mutex<HashMap<SessionId, SessionId>>>,
    slots: Arc<Semaphore>,
    cleanup: TaskTracker,
    shutdown: CancellationToken,
}

impl Registry {
    /// Empties (or creates) `root`, so nothing from a previous run survives.
    pub fn new(
        root: &Path,
        max_sessions: usize,
        shutdown: CancellationToken,
    ) -> Result<Self, ServerError> {
        match std::fs::remove_dir_all(root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io("cannot empty runtime dir", root, e)),
        }
        std::fs::create_dir_all(root)
            .map_err(|e| ServerError::io("cannot create runtime dir", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| ServerError::io("cannot resolve runtime dir", root, e))?;
        Ok(Registry {
            root,
            folders: Mutex::new(HashMap::new()),
            viewers: Arc::default(),
            slots: Arc::new(Semaphore::new(max_sessions)),
            cleanup: TaskTracker::new(),
            shutdown,
        })
    }

    /// A place for a new session and its folder, or `None` when the server is full.
    pub fn admit(&self) -> Result<Option<Admission>, ServerError> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let id = SessionId::random();
        let dir = self.root.join(id.as_str());
        std::fs::create_dir(&dir)
            .map_err(|e| ServerError::io("cannot create session dir", &dir, e))?;
        let (progress, receiver) = watch::channel(PlaylistProgress::default());
        lock(&self.folders).insert(
            id.clone(),
            Folder {
                dir: dir.clone(),
                progress: receiver,
            },
        );
        let viewer = SessionId::random();
        lock(&self.viewers).insert(viewer.clone(), id.clone());
        Ok(Some(Admission {
            id,
            dir,
            progress,
            viewer,
            viewers: self.viewers.clone(),
            _permit: permit,
        }))
    }

    /// The session a live viewer token belongs to (`None` once the session has ended).
    pub fn viewer_session(&self, token: &SessionId) -> Option<SessionId> {
        lock(&self.viewers).get(token).cloned()
    }

    /// The folder of a known session (live or retained).
    pub fn folder(&self, id: &SessionId) -> Option<Folder> {
        lock(&self.folders).get(id).cloned()
    }

    /// Sessions with a folder right now.
    pub fn len(&self) -> usize {
        lock(&self.folders).len()
    }

    /// Whether no session has a folder.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets `id` and removes its folder after `retention` (at once on shutdown).
    pub fn retire(self: &Arc<Self>, id: SessionId, retention: Duration) {
        let this = self.clone();
        self.cleanup.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(retention) => {}
                _ = this.shutdown.cancelled() => {}
            }
            this.remove(&id);
        });
    }

    fn remove(&self, id: &SessionId) {
        if let Some(Folder { dir, .. }) = lock(&self.folders).remove(id) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(session = %id, "cannot remove {}: {e}", dir.display());
            }
        }
    }

    /// Waits for pending removals (call after cancelling the shutdown token).
    pub async fn drain(&self) {
        self.cleanup.close();
        self.cleanup.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hls-face-reg-{name}-{}", std::process::id()))
    }

    #[test]
    fn ids_are_random_and_strictly_parsed() {
        let a = SessionId::random();
        assert_ne!(a, SessionId::random());
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
        // The accepted shape is app::hls_path::is_hex_id, tested there.
        assert_eq!(SessionId::parse("../etc"), None);
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_and_cleans_up() {
        let root = temp_root("limit");
        std::fs::create_dir_all(root.join("stale-from-last-run")).unwrap();
        let shutdown = CancellationToken::new();
        let reg = Arc::new(Registry::new(&root, 2, shutdown.clone()).unwrap());
        assert!(
            !root.join("stale-from-last-run").exists(),
            "stale folders are removed"
        );
        let a = reg.admit().unwrap().unwrap();
        let b = reg.admit().unwrap().unwrap();
        assert!(reg.admit().unwrap().is_none(), "third session is refused");
        assert!(a.dir.is_dir() && b.dir.is_dir());
        let (id, dir) = (a.id.clone(), a.dir.clone());
        let viewer = SessionId::parse(a.viewer_token()).expect("tokens are ids");
        assert_ne!(viewer, id, "the viewer token is not the session id");
        assert_eq!(reg.viewer_session(&viewer), Some(id.clone()));
        drop(a);
        assert_eq!(
            reg.viewer_session(&viewer),
            None,
            "revoked when the session ends"
        );
        assert!(
            reg.admit().unwrap().is_some(),
            "a freed place can be reused"
        );
        reg.retire(id.clone(), Duration::from_secs(3600));
        let folder = reg.folder(&id).expect("kept during retention");
        assert_eq!(folder.dir, dir);
        assert!(
            folder.progress.borrow().ended,
            "a dropped admission ends the playlist"
        );
        shutdown.cancel();
        reg.drain().await;
        assert!(reg.folder(&id).is_none());
        assert!(!dir.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
