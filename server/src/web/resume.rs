//! Sockets that dropped mid-session, parked for a grace period: a new socket of the same
//! browser that presents the session's resume token takes the session over.

use super::transport::Socket;
use crate::session::ids::{ClientId, ResumeToken};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

struct Parked {
    /// The browser session (cookie) the session belongs to.
    client: ClientId,
    handover: oneshot::Sender<Socket>,
}

/// Parked sessions by resume token.
#[derive(Default)]
pub struct Resumes {
    parked: Mutex<HashMap<ResumeToken, Parked>>,
}

impl Resumes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ResumeToken, Parked>> {
        // A poisoned map is still consistent: entries go in and out whole.
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks the session of `token` (owned by `client`); the receiver gets the socket that
    /// claims it.
    pub fn park(&self, token: &ResumeToken, client: &ClientId) -> oneshot::Receiver<Socket> {
        let (handover, socket) = oneshot::channel();
        let parked = Parked {
            client: client.clone(),
            handover,
        };
        self.lock().insert(token.clone(), parked);
        socket
    }

    /// Takes the parked session of `token` if `client` owns it; `None` for an unknown or
    /// expired token or another browser's session.
    pub fn claim(&self, token: &ResumeToken, client: &ClientId) -> Option<oneshot::Sender<Socket>> {
        let mut parked = self.lock();
        if parked.get(token)?.client != *client {
            return None;
        }
        parked.remove(token).map(|p| p.handover)
    }

    /// Whether `client` has a session waiting for its page to come back.
    pub fn waits_for(&self, client: &ClientId) -> bool {
        self.lock().values().any(|p| p.client == *client)
    }

    /// Forgets `token` (its grace period ended, or its session did).
    pub fn forget(&self, token: &ResumeToken) {
        self.lock().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_claims_a_parked_session_and_only_once() {
        let id = |n: u8| format!("{n:032x}");
        let (t1, t2, t3) = (
            ResumeToken::parse(&id(1)).unwrap(),
            ResumeToken::parse(&id(2)).unwrap(),
            ResumeToken::parse(&id(3)).unwrap(),
        );
        let (alice, mallory) = (
            ClientId::parse(&id(10)).unwrap(),
            ClientId::parse(&id(11)).unwrap(),
        );
        let resumes = Resumes::default();
        let _socket = resumes.park(&t1, &alice);
        assert!(resumes.claim(&t1, &mallory).is_none(), "another browser");
        assert!(resumes.claim(&t2, &alice).is_none(), "unknown token");
        assert!(resumes.claim(&t1, &alice).is_some());
        assert!(resumes.claim(&t1, &alice).is_none(), "claimed once");
        let _again = resumes.park(&t3, &alice);
        resumes.forget(&t3);
        assert!(resumes.claim(&t3, &alice).is_none(), "forgotten");
    }
}
