//! One live session in the page: socket, recorder and player, wired to the [`Ui`]. What
//! the socket's events mean is decided by the pure [`Connection`]; this file performs its
//! [`Action`]s and relays the server's messages as [`LiveEvent`]s (the words are in `ui.rs`).

use super::player::Player;
use super::recorder::{self, Recorder};
use super::socket::{Socket, SocketEvent};
use super::MediaError;
use crate::chunk_log::ChunkLog;
use crate::connection::{Action, Connection};
use crate::link_health::LinkHealth;
use crate::protocol::{ClientMsg, DetectorSettings, ServerMsg};
use crate::ui::{LiveEvent, Ui};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use web_sys::{HtmlVideoElement, MediaStream};

/// A live session; dropping it closes the socket, stops the recorder, destroys the player.
pub struct Live(Rc<Inner>);

struct Inner {
    ui: Ui,
    stream: MediaStream,
    output: HtmlVideoElement,
    mime: &'static str,
    socket: RefCell<Option<Socket>>,
    recorder: RefCell<Option<Recorder>>,
    player: RefCell<Option<Player>>,
    /// What the socket's events mean now (opening, open, reconnecting).
    connection: RefCell<Connection>,
    /// Chunks sent lately, to send again what the server missed while the socket was down.
    chunks: RefCell<ChunkLog<web_sys::Blob>>,
    /// Asks before the page is left while the session is active, and stops the session
    /// when it is left anyway (its recording is then kept for this browser).
    _leave_guard: Option<super::leave_guard::LeaveGuard>,
    /// Whether the connection moves: the server's figures and chunk acknowledgements.
    health: RefCell<LinkHealth>,
    /// Checks `health` a few times a second while the session runs.
    watchdog: RefCell<Option<leptos::prelude::IntervalHandle>>,
    /// When the recorder started (page clock, ms): the session's length at its end.
    started_ms: std::cell::Cell<Option<f64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.watchdog.borrow_mut().take() {
            handle.clear();
        }
    }
}

/// Recorder chunks kept for a resume: ~30 s of 640×480 video, more than the grace period.
const CHUNK_LOG_BYTES: usize = 8 << 20;
/// How often the connection's health is checked.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Pause between reconnection attempts.
const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_millis(1000);

impl Live {
    /// Opens the socket; the recorder starts once the server says the session started.
    pub fn start(
        ui: Ui,
        stream: MediaStream,
        output: HtmlVideoElement,
    ) -> Result<Self, MediaError> {
        let mime = recorder::pick_mime().ok_or(MediaError::NoRecorderFormat)?;
        let csrf = csrf_token();
        // The leave guard is made before the session it stops: it finds it through here.
        let weak_slot: Rc<RefCell<Weak<Inner>>> = Rc::new(RefCell::new(Weak::new()));
        let inner = Rc::new(Inner {
            ui,
            stream,
            output,
            mime,
            socket: RefCell::new(None),
            recorder: RefCell::new(None),
            player: RefCell::new(None),
            connection: RefCell::new(Connection::default()),
            chunks: RefCell::new(ChunkLog::new(CHUNK_LOG_BYTES)),
            _leave_guard: super::leave_guard::LeaveGuard::new(ui, {
                let slot = weak_slot.clone();
                move || {
                    if let Some(inner) = slot.borrow().upgrade() {
                        // The page is going: stop, so the server keeps the recording for
                        // this browser at once instead of waiting for a resume.
                        inner.send(&ClientMsg::Stop);
                    }
                }
            }),
            health: RefCell::new(LinkHealth::new(super::now_ms())),
            watchdog: RefCell::new(None),
            started_ms: std::cell::Cell::new(None),
        });
        *weak_slot.borrow_mut() = Rc::downgrade(&inner);
        ui.event(LiveEvent::Connecting);
        Inner::connect(&inner, &csrf)?;
        Inner::watch(&inner);
        Ok(Live(inner))
    }

    /// Asks the server to pixelate (or box) faces from the next frame.
    pub fn set_privacy(&self, privacy: bool) {
        self.0.send(&ClientMsg::SetPrivacy { on: privacy });
    }

    /// Asks the server to use `settings` from its next detection.
    pub fn set_detector(&self, settings: DetectorSettings) {
        self.0.send(&ClientMsg::SetDetector(settings));
    }

    /// Stops recording; the stop message follows the last chunk.
    pub fn stop(&self) {
        let inner = &self.0;
        inner.ui.event(LiveEvent::Stopping);
        let stopping = inner.recorder.borrow().as_ref().is_some_and(|r| r.stop());
        if !stopping {
            // Nothing recorded yet (or already stopped): tell the server directly.
            inner.send(&ClientMsg::Stop);
            if !inner.socket.borrow().as_ref().is_some_and(|s| s.is_open()) {
                inner.ui.event(LiveEvent::StoppedEarly);
            }
        }
    }
}

impl Inner {
    /// Checks the connection's health every [`WATCH_EVERY`] while the session streams
    /// over an open socket, and tells the page when it changes.
    fn watch(this: &Rc<Self>) {
        let weak = Rc::downgrade(this);
        let handle = leptos::prelude::set_interval_with_handle(
            move || {
                let Some(inner) = weak.upgrade() else { return };
                let phase = inner.ui.phase.get_untracked();
                let streaming =
                    matches!(phase, crate::ui::Phase::Buffering | crate::ui::Phase::Live);
                if !streaming || !inner.connection.borrow().sends_chunks() {
                    return;
                }
                let behind = inner.player.borrow().as_ref().and_then(Player::behind_live);
                let change = inner.health.borrow_mut().check(super::now_ms(), behind);
                if let Some(state) = change {
                    inner.ui.event(LiveEvent::Link(state));
                }
            },
            WATCH_EVERY,
        );
        if let Ok(handle) = handle {
            *this.watchdog.borrow_mut() = Some(handle);
        }
    }

    /// The session has ended: its summary replaces the live figures.
    fn summarize(&self) {
        if let Some(started) = self.started_ms.take() {
            self.ui.event(LiveEvent::Summarize {
                seconds: (super::now_ms() - started) / 1000.0,
            });
        }
    }

    /// Opens the socket with `csrf`, feeding its events to this session.
    fn connect(this: &Rc<Self>, csrf: &str) -> Result<(), MediaError> {
        let weak = Rc::downgrade(this);
        let (node, resuming) = {
            let connection = this.connection.borrow();
            (connection.node().map(String::from), connection.resuming())
        };
        let socket = Socket::open(csrf, node.as_deref(), resuming, move |event| {
            if let Some(inner) = weak.upgrade() {
                Inner::on_socket(&inner, event);
            }
        })?;
        *this.socket.borrow_mut() = Some(socket);
        Ok(())
    }

    /// The socket was refused before it opened: the page's token may predate a server
    /// restart. Fetch a fresh one and try once more; then tell the user to reload.
    fn retry_with_fresh_token(this: &Rc<Self>) {
        let weak = Rc::downgrade(this);
        wasm_bindgen_futures::spawn_local(async move {
            let token = super::fetch_text("/token").await;
            let Some(inner) = weak.upgrade() else { return };
            match token {
                Some(token) if !token.is_empty() => {
                    super::set_meta_content(crate::CSRF_META, &token);
                    if Inner::connect(&inner, &token).is_err() {
                        inner.ui.event(LiveEvent::CannotConnect);
                    }
                }
                _ => inner.ui.event(LiveEvent::Unreachable),
            }
        });
    }

    fn send(&self, msg: &ClientMsg) -> bool {
        self.socket.borrow().as_ref().is_some_and(|s| s.send(msg))
    }

    /// Tries the connection again in a moment (the socket is down mid-session; recording
    /// goes on, chunks wait in the log).
    fn reconnect_later(this: &Rc<Self>) {
        let weak = Rc::downgrade(this);
        leptos::prelude::set_timeout(
            move || {
                let Some(inner) = weak.upgrade() else { return };
                let active = inner.ui.phase.get_untracked().is_active();
                let action = inner
                    .connection
                    .borrow_mut()
                    .reconnect_due(active, super::now_ms());
                Inner::act(&inner, action);
            },
            RECONNECT_EVERY,
        );
    }

    /// The server has the first `chunks` chunks: send the rest, then go on as before.
    fn resumed(&self, chunks: u64) {
        let ui = self.ui;
        self.connection.borrow_mut().resumed();
        {
            let mut health = self.health.borrow_mut();
            health.acknowledged(chunks, super::now_ms());
            health.reconnected(super::now_ms());
        }
        let log = self.chunks.borrow();
        let Some(missing) = log.since(chunks) else {
            ui.event(LiveEvent::Failed(
                crate::protocol::ErrorKind::ResumeFailed
                    .user_message()
                    .into(),
            ));
            self.shutdown();
            return;
        };
        if let Some(socket) = self.socket.borrow().as_ref() {
            for chunk in missing {
                socket.send_chunk(chunk);
            }
        }
        ui.event(LiveEvent::Resumed);
    }

    fn on_socket(this: &Rc<Self>, event: SocketEvent) {
        let ui = this.ui;
        let action = match event {
            SocketEvent::Open => this.connection.borrow_mut().opened(),
            SocketEvent::Message(msg) => return Self::on_message(this, msg),
            SocketEvent::Garbled => {
                ui.event(LiveEvent::Garbled);
                this.shutdown();
                return;
            }
            SocketEvent::Closed => {
                let active = ui.phase.get_untracked().is_active();
                let recording = this
                    .recorder
                    .borrow()
                    .as_ref()
                    .is_some_and(|r| r.is_recording());
                this.connection
                    .borrow_mut()
                    .closed(active, recording, super::now_ms())
            }
        };
        Self::act(this, action);
    }

    /// Does what the connection decided.
    fn act(this: &Rc<Self>, action: Action) {
        let ui = this.ui;
        match action {
            Action::None => {}
            Action::Start => {
                let (width, height) = frame_size(&this.stream);
                this.send(&ClientMsg::Start {
                    mime_type: recorder::announced(this.mime).to_string(),
                    width,
                    height,
                });
                if ui.privacy.get_untracked() {
                    this.send(&ClientMsg::SetPrivacy { on: true });
                }
            }
            Action::Resume(token) => {
                this.send(&ClientMsg::Resume { token });
            }
            Action::RetryWithFreshToken => Self::retry_with_fresh_token(this),
            Action::Refused => ui.event(LiveEvent::Refused),
            Action::BeginReconnecting => {
                ui.event(LiveEvent::Reconnecting);
                Self::reconnect_later(this);
            }
            Action::RetryLater => Self::reconnect_later(this),
            Action::Reconnect => {
                if Inner::connect(this, &csrf_token()).is_err() {
                    Self::reconnect_later(this);
                }
            }
            Action::GiveUp => {
                ui.event(LiveEvent::ConnectionLost);
                this.recorder.borrow_mut().take();
            }
            Action::Lost => {
                ui.event(LiveEvent::ConnectionLost);
                ui.event(LiveEvent::EndedWithoutDownload);
                this.recorder.borrow_mut().take();
            }
        }
    }

    fn on_message(this: &Rc<Self>, msg: ServerMsg) {
        let ui = this.ui;
        this.health.borrow_mut().heard(super::now_ms());
        match msg {
            ServerMsg::Started {
                session_id,
                viewer_url,
                detector,
                resume_token,
                resume_grace_secs,
            } => {
                let node = crate::hls_path::node_of(&session_id).map(Into::into);
                this.connection
                    .borrow_mut()
                    .started(resume_token, resume_grace_secs, node);
                ui.event(LiveEvent::SessionStarted {
                    viewer_url: absolute_url(&viewer_url),
                    detector,
                });
                if ui.detector_touched.get_untracked() {
                    // Settings chosen before Start apply to this session too.
                    this.send(&ClientMsg::SetDetector(ui.detector.get_untracked()));
                }
                if let Err(err) = Self::start_recorder(this) {
                    ui.event(LiveEvent::Failed(err.user_message()));
                    this.shutdown();
                    return;
                }
                this.started_ms.set(Some(super::now_ms()));
                ui.event(LiveEvent::Streaming);
            }
            ServerMsg::PlaylistReady {
                url,
                live_sync_seconds,
            } => {
                ui.event(LiveEvent::PlaylistReady(url.clone()));
                let on_playing = move || ui.event(LiveEvent::Playing);
                let on_fatal = move || ui.event(LiveEvent::PlayerFailed);
                match Player::attach(
                    this.output.clone(),
                    &url,
                    live_sync_seconds,
                    on_playing,
                    on_fatal,
                ) {
                    Ok(player) => *this.player.borrow_mut() = Some(player),
                    Err(err) => ui.event(LiveEvent::Failed(err.user_message())),
                }
            }
            ServerMsg::Resumed { chunks } => this.resumed(chunks),
            ServerMsg::Stats(stats) => {
                if super::measuring() {
                    publish_stats(&stats);
                }
                this.health
                    .borrow_mut()
                    .acknowledged(stats.chunks, super::now_ms());
                ui.event(LiveEvent::Stats(stats));
                // The player's own count, read with each stats tick (none where the browser
                // does not keep one).
                let output = &this.output;
                let (frames, dropped) = if js_sys::Reflect::has(
                    output,
                    &"getVideoPlaybackQuality".into(),
                ) == Ok(true)
                {
                    let q = output.get_video_playback_quality();
                    (q.total_video_frames(), q.dropped_video_frames())
                } else {
                    (0, 0)
                };
                let behind_live = this.player.borrow().as_ref().and_then(Player::behind_live);
                ui.event(LiveEvent::Playback(crate::ui::Playback {
                    frames,
                    dropped,
                    behind_live,
                }));
            }
            ServerMsg::Ended { .. } => {
                ui.event(if ui.camera_lost.get_untracked() {
                    LiveEvent::Failed(MediaError::CameraLost.user_message())
                } else {
                    LiveEvent::Ended
                });
                this.summarize();
                // The socket stays open for the download offer; the server closes it.
                if let Some(recorder) = this.recorder.borrow().as_ref() {
                    recorder.stop();
                }
            }
            ServerMsg::RecordingReady {
                url,
                available_secs,
            } => {
                // The server removes the file then: stop offering it.
                let expired = url.clone();
                leptos::prelude::set_timeout(
                    move || ui.event(LiveEvent::RecordingExpired(expired)),
                    std::time::Duration::from_secs(available_secs),
                );
                ui.event(LiveEvent::RecordingReady {
                    url,
                    secs: available_secs,
                });
            }
            ServerMsg::Error { kind, message } if !kind.is_fatal() => {
                ui.event(LiveEvent::Notice(message));
            }
            ServerMsg::Error {
                kind: crate::protocol::ErrorKind::AuthRequired,
                message,
            } => {
                ui.event(LiveEvent::SignInNeeded(message));
                this.shutdown();
            }
            ServerMsg::Error { message, .. } => {
                ui.event(LiveEvent::Failed(message));
                this.summarize();
                this.shutdown();
            }
        }
    }

    fn start_recorder(this: &Rc<Self>) -> Result<(), MediaError> {
        let on_chunk = {
            let weak: Weak<Self> = Rc::downgrade(this);
            move |blob: web_sys::Blob| {
                if let Some(inner) = weak.upgrade() {
                    let size = blob.size() as usize;
                    let number = inner.chunks.borrow_mut().push(blob.clone(), size);
                    inner.health.borrow_mut().sent(number, super::now_ms());
                    // While reconnecting, chunks wait in the log for `resumed`.
                    if inner.connection.borrow().sends_chunks() {
                        if let Some(socket) = inner.socket.borrow().as_ref() {
                            socket.send_chunk(&blob);
                        }
                    }
                }
            }
        };
        let on_stop = {
            let weak: Weak<Self> = Rc::downgrade(this);
            move || {
                if let Some(inner) = weak.upgrade() {
                    if !inner.send(&ClientMsg::Stop) {
                        inner.ui.event(LiveEvent::StoppedEarly);
                    }
                }
            }
        };
        let recorder = Recorder::start(&this.stream, this.mime, on_chunk, on_stop)?;
        *this.recorder.borrow_mut() = Some(recorder);
        Ok(())
    }

    /// Ends recording and closes the socket, keeping the player (and its last output).
    fn shutdown(&self) {
        if let Some(recorder) = self.recorder.borrow().as_ref() {
            recorder.stop();
        }
        if let Some(socket) = self.socket.borrow().as_ref() {
            socket.close();
        }
    }
}

/// The camera's frame size, rounded down to even sides (H.264 4:2:0 needs them).
fn frame_size(stream: &MediaStream) -> (u32, u32) {
    let settings = stream
        .get_video_tracks()
        .get(0)
        .dyn_into::<web_sys::MediaStreamTrack>()
        .ok()
        .map(|t| t.get_settings());
    let width = settings.as_ref().and_then(|s| s.get_width()).unwrap_or(640);
    let height = settings
        .as_ref()
        .and_then(|s| s.get_height())
        .unwrap_or(480);
    let even = |v: i32| (v.max(2) as u32) & !1;
    (even(width), even(height))
}

/// Exposes the latest server stats as `window.hlsFaceStats` (JSON text) for the benchmark.
fn publish_stats(stats: &crate::protocol::Stats) {
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Ok(json) = serde_json::to_string(stats) {
        let _ = js_sys::Reflect::set(&window, &"hlsFaceStats".into(), &json.into());
    }
    // Every coded frame's server times, kept for the benchmark's latency budget (a page
    // measures for minutes: 30 a second, four numbers each).
    let key: wasm_bindgen::JsValue = "hlsFaceFrameTimes".into();
    let all = match js_sys::Reflect::get(&window, &key) {
        // The array itself (`Array::from` would copy it).
        Ok(v) if v.is_array() => wasm_bindgen::JsCast::unchecked_into::<js_sys::Array>(v),
        _ => {
            let fresh = js_sys::Array::new();
            let _ = js_sys::Reflect::set(&window, &key, &fresh);
            fresh
        }
    };
    for t in &stats.frame_times {
        if all.length() >= FRAME_TIMES_KEPT {
            break;
        }
        let entry = js_sys::Array::of4(
            &f64::from(t.code).into(),
            &t.decoded.into(),
            &t.sent.into(),
            &t.published.into(),
        );
        all.push(&entry);
    }
}

/// Server frame times a measuring page keeps (an hour at 30 frames a second).
const FRAME_TIMES_KEPT: u32 = 108_000;

/// The token the server rendered into `<meta name="csrf-token">`.
fn csrf_token() -> String {
    super::meta_content(crate::CSRF_META).unwrap_or_default()
}

/// `path` as an absolute URL of this page's origin (a link someone else can open).
fn absolute_url(path: &str) -> String {
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    format!("{origin}{path}")
}

use leptos::prelude::GetUntracked;
use wasm_bindgen::JsCast;
