//! One session's time policy as data: idle (no new decoded frame), its maximum length,
//! media that runs far ahead of real time, and the drain after Stop that may overrun. Pure: the clock and the frame count come in as
//! arguments, so every rule is tested without waiting.

use std::time::Duration;
use tokio::time::Instant;

/// After Stop, the pipeline has this long to turn the frames already received into the
/// last segments; a stream that would take longer (a client that sent far more than real
/// time) is cut there and the recording ends with what was encoded.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The limits a session lives by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// A session without a new decoded frame this long is idle.
    pub idle: Duration,
    /// The longest a session may run.
    pub max_length: Duration,
    /// A browser's camera makes `fps` frames a second: a session whose decoded frames run
    /// further ahead of the time since its start than `ahead` was sent faster than real
    /// time (a file pushed as fast as the link allows) and is ended. `None`: not checked
    /// (an operator's channel).
    pub real_time: Option<RealTime>,
}

/// How far ahead of real time a session's media may run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealTime {
    /// Frames a second the decoder makes of real-time input.
    pub fps: f64,
    /// Media seconds the input may be ahead: a stalled connection's backlog, or a resumed
    /// session's resent chunks, arrive at once and stay well within it.
    pub ahead: Duration,
}

/// How often a running session's frame count is compared with real time.
const AHEAD_CHECK: Duration = Duration::from_secs(1);

/// Where a session's life stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Media flows; idle from `idle_at` unless a new frame is decoded, over at `ends_at`.
    Running {
        idle_at: Instant,
        ends_at: Instant,
        frames_seen: u64,
    },
    /// The input is closed (Stop, or the maximum length): the pipeline drains until `until`.
    Draining { until: Instant },
    /// The drain overran and was cut; the pipeline ends with what was encoded.
    Cut,
}

/// A deadline that passed, and what the session must do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// No new frame for the idle time: end the session. `bad_media` when bytes came but
    /// never made a frame (it was not the announced video).
    Idle { bad_media: bool },
    /// The maximum length was reached: close the input (the session drains).
    TooLong,
    /// The drain overran: cut the pipeline.
    DrainOverran,
    /// The media ran further ahead of real time than allowed: end the session.
    AheadOfRealTime,
}

/// The policy of one session.
#[derive(Debug, Clone)]
pub struct Life {
    rules: Rules,
    state: State,
    /// When the session started (real time counts from here).
    started: Instant,
}

impl Life {
    /// A session that starts running at `now`.
    pub fn new(rules: Rules, now: Instant) -> Self {
        Life {
            rules,
            state: State::Running {
                idle_at: now + rules.idle,
                ends_at: now + rules.max_length,
                frames_seen: 0,
            },
            started: now,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Notes the decoded-frame count: a new frame puts idleness off.
    pub fn observe(&mut self, frames: u64, now: Instant) {
        if let State::Running {
            idle_at,
            frames_seen,
            ..
        } = &mut self.state
        {
            if frames > *frames_seen {
                *frames_seen = frames;
                *idle_at = now + self.rules.idle;
            }
        }
    }

    /// The input was closed at `now`: the drain starts (once).
    pub fn input_closed(&mut self, now: Instant) {
        if let State::Running { .. } = self.state {
            self.state = State::Draining {
                until: now + DRAIN_LIMIT,
            };
        }
    }

    /// The next moment something may be due.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running {
                idle_at, ends_at, ..
            } => {
                let soonest = idle_at.min(ends_at);
                // While the media is checked against real time, look at least every second.
                Some(match self.rules.real_time {
                    Some(_) => soonest.min(Instant::now() + AHEAD_CHECK),
                    None => soonest,
                })
            }
            State::Draining { until } => Some(until),
            State::Cut => None,
        }
    }

    /// What is due at `now`, given the decoded `frames` and whether any `bytes_came`; the
    /// state moves on with it (a session too long drains, an overrun drain is cut).
    pub fn due(&mut self, frames: u64, bytes_came: bool, now: Instant) -> Option<Due> {
        self.observe(frames, now);
        match self.state {
            State::Running {
                idle_at,
                ends_at,
                frames_seen,
            } => {
                let ahead = self.rules.real_time.is_some_and(|rt| {
                    let media = frames_seen as f64 / rt.fps.max(1.0);
                    let real = now.duration_since(self.started).as_secs_f64();
                    media - real > rt.ahead.as_secs_f64()
                });
                if now >= ends_at {
                    self.input_closed(now);
                    Some(Due::TooLong)
                } else if ahead {
                    Some(Due::AheadOfRealTime)
                } else if now >= idle_at {
                    // Said once per idle period, so a caller that waits on (a resume)
                    // is not told again at once.
                    self.state = State::Running {
                        idle_at: now + self.rules.idle,
                        ends_at,
                        frames_seen,
                    };
                    Some(Due::Idle {
                        bad_media: bytes_came && frames_seen == 0,
                    })
                } else {
                    None
                }
            }
            State::Draining { until } if now >= until => {
                self.state = State::Cut;
                Some(Due::DrainOverran)
            }
            State::Draining { .. } | State::Cut => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        idle: Duration::from_secs(20),
        max_length: Duration::from_secs(3600),
        real_time: None,
    };

    #[test]
    fn media_far_ahead_of_real_time_is_due_and_a_backlog_is_not() {
        let t0 = Instant::now();
        let rules = Rules {
            real_time: Some(RealTime {
                fps: 30.0,
                ahead: secs(10),
            }),
            ..RULES
        };
        let mut life = Life::new(rules, t0);
        // Real time, then a 3 s stall's backlog at once: 5 s ahead at most, fine.
        assert_eq!(life.due(150, true, t0 + secs(5)), None);
        assert_eq!(life.due(150, true, t0 + secs(8)), None);
        assert_eq!(life.due(240 + 90, true, t0 + secs(8)), None);
        // A file pushed at 25 times real time: 20 s of media in 0.8 s.
        let mut pushed = Life::new(rules, t0);
        assert_eq!(
            pushed.due(300, true, t0 + secs(1)),
            None,
            "10 s ahead is allowed"
        );
        assert_eq!(
            pushed.due(600, true, t0 + secs(1)),
            Some(Due::AheadOfRealTime)
        );
        // Channels are not checked.
        let mut channel = Life::new(RULES, t0);
        assert_eq!(channel.due(6000, true, t0 + secs(1)), None);
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn only_a_new_decoded_frame_puts_idleness_off() {
        let t0 = Instant::now();
        let mut life = Life::new(RULES, t0);
        assert_eq!(life.deadline(), Some(t0 + secs(20)));
        life.observe(1, t0 + secs(5));
        assert_eq!(life.deadline(), Some(t0 + secs(25)));
        // The same count later (bytes that decode to nothing) changes nothing.
        life.observe(1, t0 + secs(15));
        assert_eq!(life.due(1, true, t0 + secs(24)), None);
        assert_eq!(
            life.due(1, true, t0 + secs(25)),
            Some(Due::Idle { bad_media: false })
        );
        // Said once per idle period.
        assert_eq!(life.due(1, true, t0 + secs(26)), None);
        assert_eq!(life.deadline(), Some(t0 + secs(45)));
    }

    #[test]
    fn bytes_that_never_made_a_frame_are_bad_media() {
        let t0 = Instant::now();
        let mut life = Life::new(RULES, t0);
        assert_eq!(
            life.due(0, true, t0 + secs(20)),
            Some(Due::Idle { bad_media: true })
        );
        let mut quiet = Life::new(RULES, t0);
        assert_eq!(
            quiet.due(0, false, t0 + secs(20)),
            Some(Due::Idle { bad_media: false })
        );
    }

    #[test]
    fn the_maximum_length_drains_then_an_overrun_drain_is_cut() {
        let t0 = Instant::now();
        let mut life = Life::new(RULES, t0);
        // Frames keep coming: never idle, but the length runs out.
        for s in (10..3600).step_by(10) {
            assert_eq!(life.due(s, true, t0 + secs(s)), None);
        }
        assert_eq!(life.due(3600, true, t0 + secs(3600)), Some(Due::TooLong));
        assert_eq!(
            life.state(),
            State::Draining {
                until: t0 + secs(3600) + DRAIN_LIMIT
            }
        );
        assert_eq!(life.due(3601, true, t0 + secs(3605)), None);
        assert_eq!(
            life.due(3601, true, t0 + secs(3610)),
            Some(Due::DrainOverran)
        );
        assert_eq!((life.state(), life.deadline()), (State::Cut, None));
        assert_eq!(life.due(3601, true, t0 + secs(9999)), None);
    }

    #[test]
    fn a_stop_drains_once_and_is_never_idle() {
        let t0 = Instant::now();
        let mut life = Life::new(RULES, t0);
        life.input_closed(t0 + secs(3));
        life.input_closed(t0 + secs(9)); // a second close does not move the drain
        assert_eq!(life.deadline(), Some(t0 + secs(3) + DRAIN_LIMIT));
        assert_eq!(life.due(0, false, t0 + secs(12)), None);
        assert_eq!(life.due(0, false, t0 + secs(13)), Some(Due::DrainOverran));
    }
}
