//! The page's connection to its session, as a pure state machine: what the socket's open
//! and close mean at each point of a session's life (start, refused, dropped mid-session,
//! resumed, lost), and what the page must do about it. No browser types: tested natively;
//! `media::live` performs the [`Action`]s.

/// The session's resume rights, from `started`.
#[derive(Debug, Clone, PartialEq)]
struct Resume {
    token: String,
    /// How long the server keeps a dropped session (ms).
    grace_ms: f64,
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq)]
enum Link {
    /// The first socket is opening; `retried` once it was refused and reopened with a fresh
    /// page token.
    Opening { retried: bool },
    /// A socket has opened: the session runs on it.
    Open,
    /// The socket dropped mid-session; the page tries to take the session back until
    /// `until_ms` (page clock).
    Reconnecting { until_ms: f64 },
}

/// What the page does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing.
    None,
    /// Send `start` (and the privacy switch, if on) on the new socket.
    Start,
    /// Send `resume` with this token on the new socket.
    Resume(String),
    /// Fetch a fresh page token and open a socket with it.
    RetryWithFreshToken,
    /// The server refused the socket twice: tell the user.
    Refused,
    /// Say the connection dropped, then try again in a moment.
    BeginReconnecting,
    /// Try again in a moment (a reconnection attempt failed).
    RetryLater,
    /// Open a new socket now.
    Reconnect,
    /// The session is gone for good (the grace period ran out).
    GiveUp,
    /// The socket closed for good outside a running session.
    Lost,
}

/// The connection of one live session.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    link: Link,
    resume: Option<Resume>,
    /// The cluster node holding the session, which a reconnection must reach.
    node: Option<String>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            link: Link::Opening { retried: false },
            resume: None,
            node: None,
        }
    }
}

impl Connection {
    /// The server started the session: it may be resumed with `token` for `grace_ms` on
    /// `node`.
    pub fn started(&mut self, token: String, grace_secs: u64, node: Option<String>) {
        self.resume = Some(Resume {
            token,
            grace_ms: grace_secs as f64 * 1000.0,
        });
        self.node = node;
    }

    /// The node a new socket must reach.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Whether a socket opened now is to resume a session (it says so in its URL, so a server
    /// at its socket limits still lets it in).
    pub fn resuming(&self) -> bool {
        matches!(self.link, Link::Reconnecting { .. }) && self.resume.is_some()
    }

    /// Whether recorder chunks go out now (while reconnecting they wait in the log).
    pub fn sends_chunks(&self) -> bool {
        !matches!(self.link, Link::Reconnecting { .. })
    }

    /// A socket opened.
    pub fn opened(&mut self) -> Action {
        match (&self.link, &self.resume) {
            (Link::Reconnecting { .. }, Some(resume)) => Action::Resume(resume.token.clone()),
            (Link::Reconnecting { .. }, None) => Action::None,
            _ => {
                self.link = Link::Open;
                Action::Start
            }
        }
    }

    /// The socket closed at `now_ms`; `active` while a session is under way, `recording`
    /// while the recorder runs.
    pub fn closed(&mut self, active: bool, recording: bool, now_ms: f64) -> Action {
        match self.link {
            Link::Reconnecting { .. } => Action::RetryLater,
            Link::Opening { retried: true } if active => Action::Refused,
            Link::Opening { retried: false } if active => {
                self.link = Link::Opening { retried: true };
                Action::RetryWithFreshToken
            }
            // A drop mid-session (not one the server chose: that comes after an error or
            // the end, which leave the active phases).
            Link::Open if active && recording => match &self.resume {
                Some(resume) if resume.grace_ms > 0.0 => {
                    self.link = Link::Reconnecting {
                        until_ms: now_ms + resume.grace_ms,
                    };
                    Action::BeginReconnecting
                }
                _ => Action::Lost,
            },
            _ => Action::Lost,
        }
    }

    /// The reconnection timer fired at `now_ms`.
    pub fn reconnect_due(&mut self, active: bool, now_ms: f64) -> Action {
        match self.link {
            Link::Reconnecting { until_ms } if now_ms > until_ms || !active => {
                self.link = Link::Open;
                Action::GiveUp
            }
            Link::Reconnecting { .. } => Action::Reconnect,
            _ => Action::None,
        }
    }

    /// The server took the session back on the new socket.
    pub fn resumed(&mut self) {
        self.link = Link::Open;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Connection {
        let mut c = Connection::default();
        assert_eq!(c.opened(), Action::Start);
        c.started("tok".into(), 6, Some("n2".into()));
        c
    }

    #[test]
    fn a_refused_first_socket_is_retried_once_with_a_fresh_token() {
        let mut c = Connection::default();
        assert_eq!(c.closed(true, false, 0.0), Action::RetryWithFreshToken);
        assert_eq!(c.closed(true, false, 0.0), Action::Refused);
        // Closed after the page left the session (Stop before the socket opened).
        let mut idle = Connection::default();
        assert_eq!(idle.closed(false, false, 0.0), Action::Lost);
    }

    #[test]
    fn a_drop_mid_session_reconnects_and_resumes_within_the_grace_period() {
        let mut c = running();
        assert_eq!(c.node(), Some("n2"));
        assert!(c.sends_chunks());
        assert_eq!(c.closed(true, true, 1000.0), Action::BeginReconnecting);
        assert!(!c.sends_chunks(), "chunks wait in the log");
        assert_eq!(c.reconnect_due(true, 2000.0), Action::Reconnect);
        // The attempt's socket closes at once: try again later.
        assert_eq!(c.closed(true, true, 2100.0), Action::RetryLater);
        assert_eq!(c.reconnect_due(true, 3000.0), Action::Reconnect);
        assert_eq!(c.opened(), Action::Resume("tok".into()));
        c.resumed();
        assert!(c.sends_chunks());
        assert_eq!(c.reconnect_due(true, 4000.0), Action::None);
    }

    #[test]
    fn the_page_gives_up_after_the_grace_period_or_when_the_session_ended() {
        let mut c = running();
        assert_eq!(c.closed(true, true, 0.0), Action::BeginReconnecting);
        assert_eq!(c.reconnect_due(true, 6001.0), Action::GiveUp);
        let mut stopped = running();
        assert_eq!(stopped.closed(true, true, 0.0), Action::BeginReconnecting);
        assert_eq!(stopped.reconnect_due(false, 10.0), Action::GiveUp);
    }

    #[test]
    fn without_resume_rights_or_a_recorder_a_drop_is_the_end() {
        let mut c = Connection::default();
        c.opened();
        assert_eq!(c.closed(true, true, 0.0), Action::Lost, "not started yet");
        let mut no_grace = Connection::default();
        no_grace.opened();
        no_grace.started("tok".into(), 0, None);
        assert_eq!(no_grace.closed(true, true, 0.0), Action::Lost);
        let mut not_recording = running();
        assert_eq!(not_recording.closed(true, false, 0.0), Action::Lost);
        let mut server_closed = running();
        assert_eq!(server_closed.closed(false, false, 0.0), Action::Lost);
    }
}
