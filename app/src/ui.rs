//! The studio page's state — the signals the media code writes and the view reads, and the
//! session [`Phase`] — and the page's words: media code reports what happened as a
//! [`LiveEvent`], and [`Ui::event`] alone decides the phase and the sentence shown.

use crate::figures::{History, Point, Summary, Tally};
use crate::link_health::LinkState;
use crate::protocol::{AuthStatus, DetectorSettings, KeptRecordings, Setting, Stats};
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
    /// Seconds the frame on screen is behind the server's clock when it was packaged (its
    /// PROGRAM-DATE-TIME): how far behind live the player is, without `?measure`.
    pub behind_live: Option<f64>,
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

    /// "0.21 s" behind live, or a dash before the player plays (or with a clock so far off
    /// the server's that the figure would mislead: over a minute).
    pub fn describe_behind(&self) -> String {
        match self.behind_live {
            Some(s) if (0.0..60.0).contains(&s) => format!("{s:.2} s"),
            _ => "—".to_string(),
        }
    }
}

/// The page's reactive state; `Copy`, so every callback can hold it. Everyone reads it;
/// only [`Ui::event`] writes it (the writers are private to this module).
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Session phase.
    pub phase: ReadSignal<Phase>,
    /// The sentence in the status element.
    pub message: ReadSignal<String>,
    /// Whether the camera preview is running.
    pub camera_ready: ReadSignal<bool>,
    /// Latest figures pushed by the server.
    pub stats: ReadSignal<Stats>,
    /// URL of the processed stream's playlist, once ready.
    pub playlist: ReadSignal<Option<String>>,
    /// Set once the page has hydrated (a hook for tests).
    pub hydrated: ReadSignal<bool>,
    /// Median recent glass-to-glass latency in ms, when the camera shows frame codes.
    pub latency_ms: ReadSignal<Option<f64>>,
    /// Output player figures, when the camera shows frame codes.
    pub player: ReadSignal<PlayerFigures>,
    /// The output player's dropped frames, by its own count.
    pub playback: ReadSignal<Playback>,
    /// Privacy mode: faces pixelated instead of boxed.
    pub privacy: ReadSignal<bool>,
    /// Absolute viewer link of the running session.
    pub viewer_url: ReadSignal<Option<String>>,
    /// Download URL of the stopped session's recording, once remuxed, and until when
    /// (the minutes it stays, as told by the server).
    pub recording: ReadSignal<Option<(String, u64)>>,
    /// Detector settings shown (and sent) by the page.
    pub detector: ReadSignal<DetectorSettings>,
    /// Whether the user changed the detector settings (they then win over the server's).
    pub detector_touched: ReadSignal<bool>,
    /// A passing note that does not change the session (settings refused, link copied).
    pub notice: ReadSignal<String>,
    /// The camera stopped during the session (its end is then an error, not a Stop).
    pub camera_lost: ReadSignal<bool>,
    /// The viewer link was just copied (the Copy button says so for a moment).
    pub copied: ReadSignal<bool>,
    /// The live connection's health (stalled, catching up).
    pub link: ReadSignal<LinkState>,
    /// This session's connection stalled at least once (its dropped frames are the
    /// network's doing, not the encoder's).
    pub stalled_once: ReadSignal<bool>,
    /// Why the camera cannot be used, while it cannot.
    pub camera_problem: ReadSignal<Option<CameraProblem>>,
    /// Recordings the server keeps for this browser from earlier sessions (or from before a
    /// reload or restart).
    pub kept: ReadSignal<KeptRecordings>,
    /// The ended session's summary (shown instead of frozen live figures).
    pub summary: ReadSignal<Option<Summary>>,
    /// The last minute of figures, for the live chart.
    pub history: ReadSignal<History>,
    /// Whether the server asks who streams, and whether this browser has signed in.
    pub auth: ReadSignal<AuthStatus>,
    /// Why the last sign-in failed (empty: it did not).
    pub sign_in_error: ReadSignal<String>,
    w: Writers,
}

/// Why the camera cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraProblem {
    /// The user (or the browser's settings) denied it; `watched`: the page listens for the
    /// permission to change, so Start waits for that instead of asking again in vain.
    Denied { watched: bool },
    /// No camera is connected (Start looks again).
    Missing,
    /// Not a secure page: browsers give the camera only to HTTPS pages (Start cannot help).
    Insecure,
    /// In use elsewhere, or another failure (Start tries again).
    Other,
}

impl CameraProblem {
    /// Whether pressing Start can help (it asks for the camera again).
    pub fn start_retries(self) -> bool {
        !matches!(
            self,
            CameraProblem::Insecure | CameraProblem::Denied { watched: true }
        )
    }

    /// Why Start is disabled, shown beside it (`None` when Start retries).
    pub fn start_reason(self) -> Option<&'static str> {
        match self {
            CameraProblem::Denied { watched: true } => Some(
                "Start needs the camera: allow it for this site (the camera icon in the address \
                 bar, or the site settings). This page notices and opens it by itself.",
            ),
            CameraProblem::Insecure => Some(
                "Start needs the camera, which browsers give only to HTTPS pages (or to \
                 http://localhost).",
            ),
            _ => None,
        }
    }
}

/// The write halves of [`Ui`]'s signals.
#[derive(Debug, Clone, Copy)]
struct Writers {
    phase: WriteSignal<Phase>,
    message: WriteSignal<String>,
    camera_ready: WriteSignal<bool>,
    stats: WriteSignal<Stats>,
    playlist: WriteSignal<Option<String>>,
    hydrated: WriteSignal<bool>,
    latency_ms: WriteSignal<Option<f64>>,
    player: WriteSignal<PlayerFigures>,
    playback: WriteSignal<Playback>,
    privacy: WriteSignal<bool>,
    viewer_url: WriteSignal<Option<String>>,
    recording: WriteSignal<Option<(String, u64)>>,
    detector: WriteSignal<DetectorSettings>,
    detector_touched: WriteSignal<bool>,
    notice: WriteSignal<String>,
    camera_lost: WriteSignal<bool>,
    copied: WriteSignal<bool>,
    link: WriteSignal<LinkState>,
    stalled_once: WriteSignal<bool>,
    camera_problem: WriteSignal<Option<CameraProblem>>,
    kept: WriteSignal<KeptRecordings>,
    summary: WriteSignal<Option<Summary>>,
    history: WriteSignal<History>,
    auth: WriteSignal<AuthStatus>,
    sign_in_error: WriteSignal<String>,
    /// Running aggregates for the summary (written and read by `event` only).
    tally: RwSignal<Tally>,
}

impl Ui {
    pub(crate) fn new() -> Self {
        let (phase, w_phase) = signal(Phase::Idle);
        let (message, w_message) = signal("Loading…".to_string());
        let (camera_ready, w_camera_ready) = signal(false);
        let (stats, w_stats) = signal(Stats::default());
        let (playlist, w_playlist) = signal(None);
        let (hydrated, w_hydrated) = signal(false);
        let (latency_ms, w_latency_ms) = signal(None);
        let (player, w_player) = signal(PlayerFigures::default());
        let (playback, w_playback) = signal(Playback::default());
        let (privacy, w_blur) = signal(false);
        let (viewer_url, w_viewer_url) = signal(None);
        let (recording, w_recording) = signal(None);
        let (detector, w_detector) = signal(DetectorSettings::default());
        let (detector_touched, w_detector_touched) = signal(false);
        let (notice, w_notice) = signal(String::new());
        let (camera_lost, w_camera_lost) = signal(false);
        let (copied, w_copied) = signal(false);
        let (link, w_link) = signal(LinkState::Healthy);
        let (stalled_once, w_stalled_once) = signal(false);
        let (camera_problem, w_camera_problem) = signal(None);
        let (kept, w_kept) = signal(KeptRecordings::default());
        let (summary, w_summary) = signal(None);
        let (history, w_history) = signal(History::default());
        let (auth, w_auth) = signal(AuthStatus {
            asks: None,
            signed_in: true,
        });
        let (sign_in_error, w_sign_in_error) = signal(String::new());
        Ui {
            auth,
            sign_in_error,
            link,
            stalled_once,
            camera_problem,
            kept,
            summary,
            history,
            phase,
            message,
            camera_ready,
            stats,
            playlist,
            hydrated,
            latency_ms,
            player,
            playback,
            privacy,
            viewer_url,
            recording,
            detector,
            detector_touched,
            notice,
            camera_lost,
            copied,
            w: Writers {
                phase: w_phase,
                message: w_message,
                camera_ready: w_camera_ready,
                stats: w_stats,
                playlist: w_playlist,
                hydrated: w_hydrated,
                latency_ms: w_latency_ms,
                player: w_player,
                playback: w_playback,
                privacy: w_blur,
                viewer_url: w_viewer_url,
                recording: w_recording,
                detector: w_detector,
                detector_touched: w_detector_touched,
                notice: w_notice,
                camera_lost: w_camera_lost,
                copied: w_copied,
                link: w_link,
                stalled_once: w_stalled_once,
                camera_problem: w_camera_problem,
                kept: w_kept,
                summary: w_summary,
                history: w_history,
                auth: w_auth,
                sign_in_error: w_sign_in_error,
                tally: RwSignal::new(Tally::default()),
            },
        }
    }

    /// Moves to `phase` with a status sentence.
    fn set(&self, phase: Phase, message: impl Into<String>) {
        self.w.phase.set(phase);
        self.w.message.set(message.into());
    }

    /// Moves to the error phase with a user-facing reason; the session is over, so its
    /// viewer link goes.
    fn fail(&self, message: impl Into<String>) {
        self.set(Phase::Error, message);
        self.w.viewer_url.set(None);
    }
}

/// The status sentence while live: [`live_message`], unless faces were found that the
/// minimum face size keeps from being boxed while none is boxed.
pub fn live_status(privacy: bool, faces: u32, faces_small: u32, min_face: f64) -> String {
    if privacy || faces > 0 || faces_small == 0 {
        return live_message(privacy).to_string();
    }
    let found = if faces_small == 1 {
        "1 face is".to_string()
    } else {
        format!("{faces_small} faces are")
    };
    format!(
        "Live: {found} in view but not boxed: smaller than the minimum face size \
         ({min_face:.0} px) set below."
    )
}

/// The status sentence while live, for privacy mode on or off.
pub fn live_message(privacy: bool) -> &'static str {
    if privacy {
        "Live: faces are pixelated (privacy mode)."
    } else {
        "Live: faces are boxed in green."
    }
}

/// What happened to the camera or the live session, as the media code reports it. The
/// sentences the page shows for them are in [`Ui::event`] and nowhere else.
#[derive(Debug, Clone, PartialEq)]
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
    /// A failure whose sentence its typed error carries (`user_message()`, or the
    /// server's message for a fatal error kind).
    Failed(String),
    /// The page has hydrated.
    Hydrated,
    /// The camera shows (the preview runs).
    CameraOn,
    /// The camera's track ended (unplugged, taken by another app): mid-session, the
    /// session's end is then an error.
    CameraOff,
    /// A new session starts: what the last one showed is cleared.
    NewSession,
    /// The user switched privacy mode.
    PrivacyChanged(bool),
    /// The user moved a detector setting.
    DetectorChanged(Setting, f64),
    /// The server started the session: its viewer link and its detector's settings (shown
    /// unless the user already chose their own).
    SessionStarted {
        viewer_url: String,
        detector: DetectorSettings,
    },
    /// The processed stream's playlist is ready.
    PlaylistReady(String),
    /// New figures from the server.
    Stats(Stats),
    /// The output player's own count of its frames.
    Playback(Playback),
    /// The page's own measurements (with `?measure`).
    Measured {
        latency_ms: Option<f64>,
        player: PlayerFigures,
    },
    /// The recording can be downloaded from `url` for `secs` seconds.
    RecordingReady { url: String, secs: u64 },
    /// The offer of `url` ran out (the server removes the file then).
    RecordingExpired(String),
    /// A passing note (settings refused, link copied).
    Notice(String),
    /// The viewer link was copied (`true`), or that moment has passed (`false`).
    Copied(bool),
    /// The connection's health changed (see [`crate::link_health`]).
    Link(LinkState),
    /// The camera cannot be used; `message` says why (the media error's sentence).
    CameraBlocked {
        problem: CameraProblem,
        message: String,
    },
    /// After a denial the browser will ask again (the permission went back to "prompt").
    CameraAskable,
    /// The server's list of this browser's kept recordings.
    Kept(KeptRecordings),
    /// The session that ran `seconds` has ended: its summary replaces the live figures.
    Summarize { seconds: f64 },
    /// What the server asks before anyone streams, and whether this browser signed in.
    Auth(AuthStatus),
    /// The sign-in was accepted.
    SignedIn,
    /// The sign-in was refused, for the reason given.
    SignInFailed(String),
    /// The server refused a Start: this browser is not (or no longer) signed in.
    SignInNeeded(String),
}

impl Ui {
    /// Applies `event`: the phase it leads to and the sentence for it.
    pub fn event(&self, event: LiveEvent) {
        let phase = self.phase.get_untracked();
        match event {
            LiveEvent::AskingForCamera => self.say("Asking for the camera…"),
            LiveEvent::ReopeningCamera => self.say("Opening the camera again…"),
            LiveEvent::CameraReady => {
                self.w.camera_problem.set(None);
                let must_sign_in = self
                    .auth
                    .with_untracked(|a| a.asks.is_some() && !a.signed_in);
                self.set(
                    Phase::Idle,
                    if must_sign_in {
                        "Camera ready. This server asks who streams: sign in below, then press Start."
                    } else {
                        "Camera ready. Press Start to stream it."
                    },
                )
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
                Phase::Live => self.say(&self.live_now()),
                Phase::Buffering => self.say(STREAMING),
                _ => {}
            },
            LiveEvent::ConnectionLost => {
                if phase.is_active() {
                    self.fail("The connection to the server was lost.");
                }
            }
            LiveEvent::Garbled => {
                self.fail("The server sent something this page does not understand.")
            }
            LiveEvent::Streaming => self.set(Phase::Buffering, STREAMING),
            LiveEvent::Playing => {
                if phase == Phase::Buffering {
                    self.set(Phase::Live, self.live_now());
                }
            }
            LiveEvent::PlayerFailed => self.fail("The processed stream could not be played."),
            LiveEvent::Stopping => self.say("Stopping… finishing the recording."),
            LiveEvent::StoppedEarly => {
                if phase.is_active() {
                    self.set(Phase::Stopped, "Stopped.");
                }
            }
            LiveEvent::Ended => {
                self.set(
                    Phase::Stopped,
                    "Stopped. The recording stays playable in the processed-stream player; preparing the download…",
                );
                self.w.viewer_url.set(None);
            }
            LiveEvent::EndedWithoutDownload => {
                if phase == Phase::Stopped && self.recording.get_untracked().is_none() {
                    self.say(
                        "Stopped. The recording stays playable in the processed-stream player.",
                    );
                }
            }
            // After a failure (the camera lost, the session too long) its sentence stays:
            // it already says the recording is kept, and the download link shows beside it.
            LiveEvent::RecordingReady { url, secs } => {
                self.w.recording.set(Some((url, secs)));
                if phase != Phase::Error {
                    self.say("Stopped. The recording stays playable in the processed-stream player; Download recording saves it.")
                }
            }
            LiveEvent::RecordingExpired(url) => {
                if self
                    .recording
                    .with_untracked(|r| r.as_ref().map(|r| &r.0) == Some(&url))
                {
                    self.w.recording.set(None);
                }
            }
            LiveEvent::Failed(message) => self.fail(message),
            LiveEvent::Hydrated => self.w.hydrated.set(true),
            LiveEvent::CameraOn => self.w.camera_ready.set(true),
            LiveEvent::CameraOff => {
                self.w.camera_ready.set(false);
                if phase.is_active() {
                    self.w.camera_lost.set(true);
                }
            }
            LiveEvent::NewSession => {
                self.w.camera_lost.set(false);
                self.w.link.set(LinkState::Healthy);
                self.w.stalled_once.set(false);
                self.w.summary.set(None);
                self.w.history.set(History::default());
                self.w.playback.set(Playback::default());
                self.w.tally.set(Tally::default());
                self.w.playlist.set(None);
                self.w.stats.set(Stats::default());
                self.w.recording.set(None);
                self.w.viewer_url.set(None);
                self.w.notice.set(String::new());
            }
            LiveEvent::PrivacyChanged(privacy) => {
                self.w.privacy.set(privacy);
                if phase == Phase::Live && self.link.get_untracked() == LinkState::Healthy {
                    self.say(&self.live_now());
                }
            }
            LiveEvent::DetectorChanged(setting, value) => {
                self.w.detector.update(|d| {
                    d.set(setting, value);
                });
                self.w.detector_touched.set(true);
                self.w.notice.set(String::new());
            }
            LiveEvent::SessionStarted {
                viewer_url,
                detector,
            } => {
                self.w.viewer_url.set(Some(viewer_url));
                // The user's own choice for another detector cannot apply: the server's
                // detector and its settings are shown instead.
                let ours = self.detector_touched.get_untracked()
                    && self.detector.with_untracked(|d| d.same_detector(&detector));
                if !ours {
                    self.w.detector.set(detector);
                    self.w.detector_touched.set(false);
                }
            }
            LiveEvent::PlaylistReady(url) => self.w.playlist.set(Some(url)),
            LiveEvent::Stats(stats) => {
                let behind = self.playback.with_untracked(|p| p.behind_live);
                self.w.history.update(|h| {
                    h.push(Point {
                        fps: stats.fps_out,
                        behind,
                    })
                });
                self.w.tally.update(|t| t.add(stats.faces, behind));
                let before = self.live_now();
                self.w.stats.set(stats);
                let after = self.live_now();
                let healthy = self.link.get_untracked() == LinkState::Healthy;
                if phase == Phase::Live && healthy && before != after {
                    self.say(&after);
                }
            }
            LiveEvent::Playback(playback) => self.w.playback.set(playback),
            LiveEvent::Measured { latency_ms, player } => {
                self.w.latency_ms.set(latency_ms);
                self.w.player.set(player);
            }
            LiveEvent::Notice(text) => self.w.notice.set(text),
            LiveEvent::Copied(now) => {
                if now {
                    self.w.notice.set("Viewer link copied.".into());
                }
                self.w.copied.set(now);
            }
            LiveEvent::Link(state) => self.link_changed(state, phase),
            LiveEvent::CameraBlocked { problem, message } => {
                self.w.camera_problem.set(Some(problem));
                self.fail(message);
            }
            LiveEvent::CameraAskable => {
                self.w.camera_problem.set(Some(CameraProblem::Other));
                if phase == Phase::Error {
                    self.say("The browser will ask for the camera again: press Start.");
                }
            }
            LiveEvent::Kept(kept) => self.w.kept.set(kept),
            LiveEvent::Auth(status) => {
                let asks = status.asks.is_some() && !status.signed_in;
                self.w.auth.set(status);
                if asks && phase == Phase::Idle && self.camera_ready.get_untracked() {
                    self.say("Camera ready. This server asks who streams: sign in below, then press Start.");
                }
            }
            LiveEvent::SignedIn => {
                self.w.auth.update(|a| a.signed_in = true);
                self.w.sign_in_error.set(String::new());
                if !phase.is_active() {
                    self.say("Signed in. Press Start to stream.");
                }
            }
            LiveEvent::SignInFailed(why) => self.w.sign_in_error.set(why),
            LiveEvent::SignInNeeded(message) => {
                self.w.auth.update(|a| a.signed_in = false);
                self.fail(message);
            }
            LiveEvent::Summarize { seconds } => {
                let tally = self.w.tally.get_untracked();
                let summary = self.stats.with_untracked(|s| {
                    Summary::new(seconds, s, tally.most_faces, tally.mean_behind())
                });
                self.w.summary.set(Some(summary));
                self.w.link.set(LinkState::Healthy);
            }
        }
    }

    /// The connection's health changed: the status says so while a session is active.
    fn link_changed(&self, state: LinkState, phase: Phase) {
        self.w.link.set(state);
        if !phase.is_active() {
            return;
        }
        match state {
            LinkState::Stalled => {
                self.w.stalled_once.set(true);
                self.say(
                    "Connection stalled: nothing has come back from the server for over a \
                     second. The recording goes on; the picture catches up when the \
                     connection returns.",
                );
            }
            LinkState::CatchingUp { behind_secs } => self.say(&format!(
                "Connection back: {behind_secs:.1} s behind live, catching up…"
            )),
            LinkState::Healthy => match phase {
                Phase::Live => self.say(&self.live_now()),
                Phase::Buffering => self.say(STREAMING),
                _ => {}
            },
        }
    }

    /// The live status sentence for the current privacy mode and figures.
    fn live_now(&self) -> String {
        let privacy = self.privacy.get_untracked();
        let min_face = self
            .detector
            .with_untracked(|d| d.get(Setting::MinFace))
            .unwrap_or(0.0);
        self.stats
            .with_untracked(|s| live_status(privacy, s.faces, s.faces_small, min_face))
    }

    /// A new sentence in the same phase.
    fn say(&self, message: &str) {
        self.w.message.set(message.into());
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
            ui.event(LiveEvent::RecordingReady {
                url: "/r".into(),
                secs: 600,
            });
            assert_eq!(ui.phase.get_untracked(), Phase::Error);
            assert_eq!(
                ui.message.get_untracked(),
                "The camera stopped. The recording so far is kept."
            );

            let ui = Ui::new();
            ui.event(LiveEvent::Streaming);
            ui.event(LiveEvent::Ended);
            ui.event(LiveEvent::RecordingReady {
                url: "/r".into(),
                secs: 600,
            });
            assert_eq!(ui.phase.get_untracked(), Phase::Stopped);
            assert!(ui
                .message
                .get_untracked()
                .contains("Download recording saves it"));
        });
    }

    #[test]
    fn the_page_keeps_its_own_detector_settings_only_for_the_same_detector() {
        use crate::protocol::{DetectorSettings, Setting};
        leptos::prelude::Owner::new().with(|| {
            let started = |detector| LiveEvent::SessionStarted {
                viewer_url: "https://x/watch/t".into(),
                detector,
            };
            // Untouched: the server's settings are shown.
            let ui = Ui::new();
            ui.event(started(DetectorSettings::haar()));
            assert_eq!(ui.detector.get_untracked(), DetectorSettings::haar());
            assert_eq!(
                ui.viewer_url.get_untracked().as_deref(),
                Some("https://x/watch/t")
            );
            // Moved before Start, same detector: the user's value stays (and is sent).
            let ui = Ui::new();
            ui.event(LiveEvent::DetectorChanged(Setting::Threshold, 0.7));
            ui.event(started(DetectorSettings::center_face()));
            assert_eq!(
                ui.detector.get_untracked().get(Setting::Threshold),
                Some(0.7f32 as f64)
            );
            assert!(ui.detector_touched.get_untracked());
            // Moved for another detector than the server runs: the server's are shown.
            let ui = Ui::new();
            ui.event(LiveEvent::DetectorChanged(Setting::MinFace, 200.0));
            ui.event(started(DetectorSettings::haar()));
            assert_eq!(ui.detector.get_untracked(), DetectorSettings::haar());
            assert!(!ui.detector_touched.get_untracked());
        });
    }

    #[test]
    fn a_camera_that_stops_mid_session_is_lost_and_a_new_session_forgets_it() {
        leptos::prelude::Owner::new().with(|| {
            let ui = Ui::new();
            ui.event(LiveEvent::CameraOn);
            ui.event(LiveEvent::CameraOff);
            assert!(!ui.camera_lost.get_untracked(), "no session: not lost");
            ui.event(LiveEvent::Streaming);
            ui.event(LiveEvent::CameraOff);
            assert!(ui.camera_lost.get_untracked());
            assert!(!ui.camera_ready.get_untracked());
            ui.event(LiveEvent::NewSession);
            assert!(!ui.camera_lost.get_untracked());
        });
    }

    #[test]
    fn playback_reads_as_a_share_of_the_decoded_frames() {
        assert_eq!(Playback::default().describe(), "—");
        let p = Playback {
            frames: 1500,
            dropped: 12,
            behind_live: None,
        };
        assert_eq!(p.describe(), "12 of 1500 (0.8 %)");
        let none = Playback {
            frames: 30,
            dropped: 0,
            behind_live: None,
        };
        assert_eq!(none.describe(), "0 of 30 (0.0 %)");
    }

    #[test]
    fn behind_live_reads_in_seconds_and_a_clock_far_off_reads_as_unknown() {
        let at = |s| Playback {
            behind_live: s,
            ..Playback::default()
        };
        assert_eq!(at(None).describe_behind(), "—");
        assert_eq!(at(Some(0.214)).describe_behind(), "0.21 s");
        assert_eq!(
            at(Some(-3.0)).describe_behind(),
            "—",
            "a clock ahead of the server's"
        );
        assert_eq!(at(Some(3600.0)).describe_behind(), "—");
    }
}
