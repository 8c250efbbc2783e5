//! The studio page's state — the signals the media code writes and the view reads, and the
//! session [`Phase`] — and the page's words: media code reports what happened as a
//! [`LiveEvent`], and [`Ui::event`] alone decides the phase and the sentence shown.

use crate::protocol::{DetectorSettings, Stats};
use leptos::prelude::*;

/// Where a session stands, as shown in `data-state` on the status element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No session yet (the camera may or may not be ready).
    Idle,
    /// The WebSocket is opening and the server is starting the pipeline.
    Connecting,
    /// Video flows to the server; the processed stream is not playing yet.
    Buffering,
    /// The processed stream is playing.
    Live,
    /// The session ended; the recording stays playable.
    Stopped,
    /// Something failed; the status text says what.
    Error,
}

impl Phase {
    /// The `data-state` value of this phase.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Buffering => "buffering",
            Phase::Live => "live",
            Phase::Stopped => "stopped",
            Phase::Error => "error",
        }
    }

    /// Whether a session is under way (Stop applies).
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Connecting | Phase::Buffering | Phase::Live)
    }
}

/// What the output player shows, measured in the page from the test clip's frame codes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlayerFigures {
    /// Frames presented in the last second.
    pub fps: f32,
    /// Frames the player presented (by its own timeline).
    pub frames: u64,
    /// Frames the player skipped: due by its media time, never presented.
    pub skipped: u64,
}

/// The output player's own count of the frames it decoded (any camera, any browser that
/// has `getVideoPlaybackQuality`), since its stream started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Playback {
    /// Frames the player decoded.
    pub frames: u32,
    /// Of those, frames it did not show in time.
    pub dropped: u32,
}

impl Playback {
    /// "12 of 1,500 (0.8 %)", or a dash before any frame.
    pub fn describe(&self) -> String {
        if self.frames == 0 {
            return "—".to_string();
        }
        let pct = 100.0 * f64::from(self.dropped) / f64::from(self.frames);
        format!("{} of {} ({pct:.1} %)", self.dropped, self.frames)
    }
}

/// The page's reactive state; `Copy`, so every callback can hold it.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Session phase.
    pub phase: RwSignal<Phase>,
    /// The sentence in the status element.
    pub message: RwSignal<String>,
    /// Whether the camera preview is running.
    pub camera_ready: RwSignal<bool>,
    /// Latest figures pushed by the server.
    pub stats: RwSignal<Stats>,
    /// URL of the processed stream's playlist, once ready.
    pub playlist: RwSignal<Option<String>>,
    /// Set once the page has hydrated (a hook for tests).
    pub hydrated: RwSignal<bool>,
    /// Median recent glass-to-glass latency in ms, when the camera shows frame codes.
    pub latency_ms: RwSignal<Option<f64>>,
    /// Output player figures, when the camera shows frame codes.
    pub player: RwSignal<PlayerFigures>,
    /// The output player's dropped frames, by its own count.
    pub playback: RwSignal<Playback>,
    /// Privacy mode: faces pixelated instead of boxed.
    pub blur: RwSignal<bool>,
    /// Absolute viewer link of the running session.
    pub viewer_url: RwSignal<Option<String>>,
    /// Download URL of the stopped session's recording, once remuxed, and until when
    /// (the minutes it stays, as told by the server).
    pub recording: RwSignal<Option<(String, u64)>>,
    /// Detector settings shown (and sent) by the page.
    pub detector: RwSignal<DetectorSettings>,
    /// Whether the user changed the detector settings (they then win over the server's).
    pub detector_touched: RwSignal<bool>,
    /// A passing note that does not change the session (settings refused, link copied).
    pub notice: RwSignal<String>,
    /// The camera stopped during the session (its end is then an error, not a Stop).
    pub camera_lost: RwSignal<bool>,
}

impl Ui {
    pub(crate) fn new() -> Self {
        Ui {
            phase: RwSignal::new(Phase::Idle),
            message: RwSignal::new("Loading…".to_string()),
            camera_ready: RwSignal::new(false),
            stats: RwSignal::new(Stats::default()),
            playlist: RwSignal::new(None),
            hydrated: RwSignal::new(false),
            latency_ms: RwSignal::new(None),
            player: RwSignal::new(PlayerFigures::default()),
            playback: RwSignal::new(Playback::default()),
            blur: RwSignal::new(false),
            viewer_url: RwSignal::new(None),
            recording: RwSignal::new(None),
            detector: RwSignal::new(DetectorSettings::default()),
            detector_touched: RwSignal::new(false),
            notice: RwSignal::new(String::new()),
            camera_lost: RwSignal::new(false),
        }
    }

    /// Moves to `phase` with a status sentence.
    pub fn set(&self, phase: Phase, message: impl Into<String>) {
        self.phase.set(phase);
        self.message.set(message.into());
    }

    /// Moves to the error phase with a user-facing reason.
    pub fn fail(&self, message: impl Into<String>) {
        self.set(Phase::Error, message);
    }
}

/// The status sentence while live, for privacy mode on or off.
pub fn live_message(blur: bool) -> &'static str {
    if blur {
        "Live: faces are pixelated (privacy mode)."
    } else {
        "Live: faces are boxed in green."
    }
}

/// What happened to the camera or the live session, as the media code reports it. The
/// sentences the page shows for them are in [`Ui::event`] and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// The browser is asked for the camera.
    AskingForCamera,
    /// Start was pressed after the camera stopped: it is asked for again.
    ReopeningCamera,
    /// The camera shows in the preview.
    CameraReady,
    /// The socket is opening.
    Connecting,
    /// The server refused the socket twice (a stale page, or a proxy rewriting Host).
    Refused,
    /// A fresh token was fetched but no socket could be made.
    CannotConnect,
    /// Not even a fresh token could be fetched.
    Unreachable,
    /// The socket dropped mid-session; the page tries to resume.
    Reconnecting,
    /// The session was resumed on a new socket.
    Resumed,
    /// The socket is gone for good.
    ConnectionLost,
    /// The server sent a message this page does not understand.
    Garbled,
    /// The session started; video flows, the processed stream is not playing yet.
    Streaming,
    /// The processed stream plays.
    Playing,
    /// The player gave up on the processed stream.
    PlayerFailed,
    /// Stop was pressed; the recording is being finished.
    Stopping,
    /// Stopped before anything was recorded (or with the socket already closed).
    StoppedEarly,
    /// The server ended the session after Stop; the download is being prepared.
    Ended,
    /// The server closed the socket after the end without offering a download.
    EndedWithoutDownload,
    /// The recording can be downloaded.
    RecordingReady,
    /// A failure whose sentence its typed error carries (`user_message()`, or the
    /// server's message for a fatal error kind).
    Failed(String),
}

impl Ui {
    /// Applies `event`: the phase it leads to and the sentence for it.
    pub fn event(&self, event: LiveEvent) {
        let live = live_message(self.blur.get_untracked());
        let phase = self.phase.get_untracked();
        match event {
            LiveEvent::AskingForCamera => self.say("Asking for the camera…"),
            LiveEvent::ReopeningCamera => self.say("Opening the camera again…"),
            LiveEvent::CameraReady => {
                self.set(Phase::Idle, "Camera ready. Press Start to stream it.")
            }
            LiveEvent::Connecting => self.set(Phase::Connecting, "Connecting to the server…"),
            LiveEvent::Refused => self.fail(
                "The server refused the connection. If it was restarted, reload this page; if \
                 it sits behind a proxy, the proxy must keep the Host header (see the README).",
            ),
            LiveEvent::CannotConnect => {
                self.fail("The connection to the server could not be opened.")
            }
            LiveEvent::Unreachable => self
                .fail("The server cannot be reached. Check the connection, then reload the page."),
            LiveEvent::Reconnecting => {
                self.say("The connection dropped; reconnecting… (recording goes on)")
            }
            LiveEvent::Resumed => match phase {
                Phase::Live => self.say(live),
                Phase::Buffering => self.say(STREAMING),
                _ => {}
            },
            LiveEvent::ConnectionLost => {
                if phase.is_active() {
                    self.fail("The connection to the server was lost.");
                    self.viewer_url.set(None);
                }
            }
            LiveEvent::Garbled => {
                self.fail("The server sent something this page does not understand.")
            }
            LiveEvent::Streaming => self.set(Phase::Buffering, STREAMING),
            LiveEvent::Playing => {
                if phase == Phase::Buffering {
                    self.set(Phase::Live, live);
                }
            }
            LiveEvent::PlayerFailed => self.fail("The processed stream could not be played."),
            LiveEvent::Stopping => self.say("Stopping… finishing the recording."),
            LiveEvent::StoppedEarly => {
                if phase.is_active() {
                    self.set(Phase::Stopped, "Stopped.");
                }
            }
            LiveEvent::Ended => self.set(
                Phase::Stopped,
                "Stopped. The recording stays playable below; preparing the download…",
            ),
            LiveEvent::EndedWithoutDownload => {
                if phase == Phase::Stopped && self.recording.get_untracked().is_none() {
                    self.say("Stopped. The recording stays playable below.");
                }
            }
            // After a failure (the camera lost, the session too long) its sentence stays:
            // it already says the recording is kept, and the download link shows beside it.
            LiveEvent::RecordingReady => {
                if phase != Phase::Error {
                    self.say("Stopped. The recording stays playable below and can be downloaded.")
                }
            }
            LiveEvent::Failed(message) => self.fail(message),
        }
    }

    /// A new sentence in the same phase.
    fn say(&self, message: &str) {
        self.message.set(message.into());
    }
}

/// The status sentence while video flows and the processed stream is not playing yet.
const STREAMING: &str = "Streaming… waiting for the first processed segment.";

#[cfg(test)]
mod tests {
    use super::{LiveEvent, Phase, Playback, Ui};
    use leptos::prelude::GetUntracked;

    #[test]
    fn a_failure_keeps_its_sentence_when_the_recording_is_offered() {
        // Signals need a reactive owner (server builds keep them in per-owner arenas).
        leptos::prelude::Owner::new().with(|| {
            let ui = Ui::new();
            ui.event(LiveEvent::Streaming);
            ui.event(LiveEvent::Failed(
                "The camera stopped. The recording so far is kept.".into(),
            ));
            ui.event(LiveEvent::RecordingReady);
            assert_eq!(ui.phase.get_untracked(), Phase::Error);
            assert_eq!(
                ui.message.get_untracked(),
                "The camera stopped. The recording so far is kept."
            );

            let ui = Ui::new();
            ui.event(LiveEvent::Streaming);
            ui.event(LiveEvent::Ended);
            ui.event(LiveEvent::RecordingReady);
            assert_eq!(ui.phase.get_untracked(), Phase::Stopped);
            assert!(ui.message.get_untracked().contains("can be downloaded"));
        });
    }

    #[test]
    fn playback_reads_as_a_share_of_the_decoded_frames() {
        assert_eq!(Playback::default().describe(), "—");
        let p = Playback {
            frames: 1500,
            dropped: 12,
        };
        assert_eq!(p.describe(), "12 of 1500 (0.8 %)");
        let none = Playback {
            frames: 30,
            dropped: 0,
        };
        assert_eq!(none.describe(), "0 of 30 (0.0 %)");
    }
}
