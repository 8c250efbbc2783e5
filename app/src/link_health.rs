//! Whether a live session's connection is healthy, stalled, or back and catching up, from
//! what the page itself sees: when the server last spoke (it sends figures twice a
//! second), and which recorder chunks it has acknowledged (its figures count the chunks it
//! received). Pure: tested natively; `media::live` feeds it and reports its changes.

use std::collections::VecDeque;

/// The server is silent this long (it speaks every 0.5 s): the connection stalled.
pub const SILENT_AFTER_MS: f64 = 1200.0;
/// Chunks wait for an acknowledgement, and none came, for this long: the upload stalled.
pub const UNACKED_AFTER_MS: f64 = 1800.0;
/// After a stall, "catching up" until the page is at most this far behind.
pub const CAUGHT_UP_SECS: f64 = 0.8;

/// The connection as the status line tells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkState {
    /// Figures arrive and chunks are acknowledged in time.
    Healthy,
    /// Nothing came back for a while: the socket is open but nothing moves.
    Stalled,
    /// Moving again after a stall, this many seconds behind live.
    CatchingUp { behind_secs: f64 },
}

impl LinkState {
    /// The `data-link` value on the status element.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Healthy => "healthy",
            LinkState::Stalled => "stalled",
            LinkState::CatchingUp { .. } => "catching-up",
        }
    }
}

/// What the page knows of its connection's health (times on the page's clock, in ms).
#[derive(Debug, Clone)]
pub struct LinkHealth {
    last_heard_ms: f64,
    /// Chunks sent and not yet acknowledged: (number, when sent), oldest first.
    unacked: VecDeque<(u64, f64)>,
    /// When an acknowledgement last covered a new chunk.
    last_progress_ms: f64,
    state: LinkState,
}

impl LinkHealth {
    /// A connection that has just been heard from at `now_ms`.
    pub fn new(now_ms: f64) -> Self {
        LinkHealth {
            last_heard_ms: now_ms,
            unacked: VecDeque::new(),
            last_progress_ms: now_ms,
            state: LinkState::Healthy,
        }
    }

    /// The server spoke.
    pub fn heard(&mut self, now_ms: f64) {
        self.last_heard_ms = now_ms;
    }

    /// Chunk `number` left the page.
    pub fn sent(&mut self, number: u64, now_ms: f64) {
        self.unacked.push_back((number, now_ms));
    }

    /// The server has received chunks `0..received` (told at `now_ms`).
    pub fn acknowledged(&mut self, received: u64, now_ms: f64) {
        while self.unacked.front().is_some_and(|&(n, _)| n < received) {
            self.unacked.pop_front();
            self.last_progress_ms = now_ms;
        }
    }

    /// Whether chunks have waited for an acknowledgement, with none coming, too long.
    fn upload_stuck(&self, now_ms: f64) -> bool {
        self.unacked
            .front()
            .is_some_and(|&(_, sent)| now_ms - sent.max(self.last_progress_ms) > UNACKED_AFTER_MS)
    }

    /// A new socket took the session over: whatever was unacknowledged is sent again, and
    /// the next check tells how far behind the session is (or that it is healthy).
    pub fn reconnected(&mut self, now_ms: f64) {
        self.last_heard_ms = now_ms;
        self.last_progress_ms = now_ms;
        // What was missed is sent again now: the next check says how far behind that is.
        self.state = LinkState::Stalled;
    }

    /// How far the upload is behind at `now_ms`: the age of the oldest chunk the server
    /// has not acknowledged (seconds; 0 with none).
    pub fn upload_behind_secs(&self, now_ms: f64) -> f64 {
        self.unacked
            .front()
            .map_or(0.0, |&(_, at)| ((now_ms - at) / 1000.0).max(0.0))
    }

    /// The state at `now_ms`, given how far the player is behind live (if it knows):
    /// `Some` when it changed (or, while catching up, moved by a tenth of a second or
    /// more).
    pub fn check(&mut self, now_ms: f64, player_behind_secs: Option<f64>) -> Option<LinkState> {
        let silent = now_ms - self.last_heard_ms > SILENT_AFTER_MS;
        let upload = self.upload_behind_secs(now_ms);
        let next = if silent || self.upload_stuck(now_ms) {
            LinkState::Stalled
        } else {
            match self.state {
                LinkState::Healthy => LinkState::Healthy,
                LinkState::Stalled | LinkState::CatchingUp { .. } => {
                    let behind = upload.max(player_behind_secs.unwrap_or(0.0));
                    if behind > CAUGHT_UP_SECS {
                        LinkState::CatchingUp {
                            behind_secs: (behind * 10.0).round() / 10.0,
                        }
                    } else {
                        LinkState::Healthy
                    }
                }
            }
        };
        let changed = match (self.state, next) {
            (
                LinkState::CatchingUp { behind_secs: a },
                LinkState::CatchingUp { behind_secs: b },
            ) => (a - b).abs() >= 0.1,
            (a, b) => a != b,
        };
        self.state = next;
        changed.then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session sending a 20 ms chunk and hearing figures every 500 ms up to `until`.
    fn healthy_until(link: &mut LinkHealth, from: f64, until: f64, chunk: &mut u64) {
        let mut t = from;
        while t < until {
            link.sent(*chunk, t);
            *chunk += 1;
            if (t as u64).is_multiple_of(500) {
                link.heard(t);
                // The server has what was sent up to 100 ms ago.
                link.acknowledged(chunk.saturating_sub(5), t);
            }
            assert_eq!(link.check(t, Some(0.3)), None, "healthy at {t}");
            t += 20.0;
        }
    }

    #[test]
    fn a_stall_is_noticed_within_a_second_and_a_half_and_the_catch_up_is_told() {
        let mut link = LinkHealth::new(0.0);
        let mut chunk = 0;
        healthy_until(&mut link, 0.0, 10_000.0, &mut chunk);
        // From 10 s the network holds everything: chunks go out, nothing comes back.
        let mut t = 10_000.0;
        let noticed = loop {
            link.sent(chunk, t);
            chunk += 1;
            if link.check(t, Some(0.3)) == Some(LinkState::Stalled) {
                break t;
            }
            t += 20.0;
            assert!(t < 20_000.0);
        };
        // Last heard at 9.5 s: silent for 1.2 s by 10.7 s.
        assert!(noticed - 9_500.0 <= 1_300.0, "noticed at {noticed}");
        while t < 13_000.0 {
            link.sent(chunk, t);
            chunk += 1;
            assert_eq!(link.check(t, Some(0.3)), None, "still stalled");
            t += 20.0;
        }
        // At 13 s the backlog bursts in; the server's figures say it has chunks up to 11 s.
        link.heard(t);
        link.acknowledged(550, t);
        let back = link.check(t, Some(0.3));
        match back {
            Some(LinkState::CatchingUp { behind_secs }) => {
                assert!((1.9..=2.1).contains(&behind_secs), "{behind_secs}")
            }
            other => panic!("{other:?}"),
        }
        // Everything acknowledged, and the player near live: healthy again.
        link.acknowledged(chunk, t + 100.0);
        assert_eq!(link.check(t + 100.0, Some(0.4)), Some(LinkState::Healthy));
        // A player far behind keeps "catching up" too, only after a stall.
        assert_eq!(link.check(t + 200.0, Some(3.0)), None);
    }

    #[test]
    fn a_slow_upload_without_silence_is_a_stall_too() {
        let mut link = LinkHealth::new(0.0);
        let mut t = 0.0;
        let mut chunk = 0;
        let mut states = Vec::new();
        while t < 4_000.0 {
            link.sent(chunk, t);
            chunk += 1;
            link.heard(t); // figures arrive, but acknowledge nothing new
            if let Some(s) = link.check(t, None) {
                states.push((t, s));
            }
            t += 20.0;
        }
        assert_eq!(states.len(), 1, "{states:?}");
        assert_eq!(states[0].1, LinkState::Stalled);
        assert!(states[0].0 > UNACKED_AFTER_MS && states[0].0 < UNACKED_AFTER_MS + 100.0);
        assert_eq!(LinkState::Stalled.as_str(), "stalled");
    }
}
