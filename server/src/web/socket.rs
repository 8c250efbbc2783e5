//! `GET /socket`: the CSRF/Origin-checked upgrade and the per-connection loop that relays:
//! protocol messages into a [`Session`], its events back into messages. The session keeps
//! its own deadlines (`session::life`); how it ends is in `session::ending`.

use super::csrf;
use super::transport::Socket;
use super::AppState;
use crate::error::ServerError;
use crate::metrics;
use crate::session::ending::{Ending, Retirement};
use crate::session::ids::{ClientId, ResumeToken};
use crate::session::life::{Due, RealTime, Rules};
use crate::session::live::{Session, SessionEvent};
use crate::session::registry::Refusal;
use crate::session::stats::StatsSampler;
use app::protocol::{self, ClientMsg, ErrorKind, ServerMsg, Stats};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

/// A send to the browser that takes longer than this means the client stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a chunk may wait for room in the decoder queue before the pipeline is
/// considered stuck.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ending session may take to write its last segment and ENDLIST.
const FINISH_TIMEOUT: Duration = Duration::from_secs(15);

/// How far a browser session's media may run ahead of real time (a stalled connection's
/// backlog arriving at once stays well within it; a file pushed as fast as the link allows
/// does not, and would take a core to decode).
const AHEAD_OF_REAL_TIME: Duration = Duration::from_secs(10);
/// During shutdown, sessions get this long to end their playlists (exit within 5 s).
const SHUTDOWN_FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Set by the cluster's nginx (`deploy/cluster`) on a new page's socket while other nodes
/// are left to try: a node without room answers 503 before the upgrade and nginx passes the
/// socket on. nginx's last try comes without it, so that node upgrades and a session it has
/// no room for gets the typed `busy` the page explains. A browser cannot set this header on
/// a WebSocket; a client that does only gets a 503 instead of `busy`.
pub const PASS_ON_HEADER: &str = "x-hls-face-pass-on";

/// Whether a new session would be admitted now (the session limit and the CPU check for
/// the cheapest input; the Start message names the real one, checked again then).
fn room_for_one_more(shared: &super::Shared) -> bool {
    let share = crate::session::capacity::session_share(crate::source::Codec::H264, 640, 480);
    shared.registry.has_room() && shared.capacity.has_room(share).is_ok()
}

/// The socket URL's query: the page token the page was rendered with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageToken {
    #[serde(default)]
    csrf_token: String,
    /// Present on a socket the page opens to resume its session.
    #[serde(default)]
    resume: Option<String>,
}

/// The upgrade handler: 403 unless the CSRF token matches the session cookie and the
/// Origin is this server's; 503 when a cluster node has no room (see [`PASS_ON_HEADER`]).
pub async fn upgrade(
    State(state): State<AppState>,
    token: Result<Query<PageToken>, QueryRejection>,
    headers: HeaderMap,
    connected: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let address = csrf::requester(&state, &headers, connected);
    let (token, resuming) = token
        .map(|q| (q.0.csrf_token, q.0.resume.is_some()))
        .unwrap_or_default();
    let client = csrf::session_cookie(&headers, &state.shared.csrf)
        .filter(|sid| state.shared.csrf.verify(sid, &token))
        .and_then(|sid| ClientId::parse(&sid));
    let origin_ok = if state.shared.config.site.trust_forwarded {
        csrf::same_forwarded_origin(&headers, state.shared.scheme)
    } else {
        csrf::same_origin(&headers, state.shared.scheme)
    };
    let Some(client) = client else {
        return (
            StatusCode::FORBIDDEN,
            "forbidden: stale or missing page token",
        )
            .into_response();
    };
    if !origin_ok {
        tracing::info!(
            origin = ?headers.get(axum::http::header::ORIGIN),
            host = ?headers.get(axum::http::header::HOST),
            "socket refused: the Origin is not this server as seen in Host (behind a proxy: \
             keep the Host header, or set site.trust-forwarded)"
        );
        return (StatusCode::FORBIDDEN, "forbidden: origin").into_response();
    }
    if headers.contains_key(PASS_ON_HEADER) && !room_for_one_more(&state.shared) {
        ::metrics::counter!(metrics::PASSED_ON).increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "5")],
            "no room on this node",
        )
            .into_response();
    }
    let limits = state.shared.limits();
    // A page coming back for its parked session is never refused for want of room: it holds
    // a session place already (at most one such socket per parked session).
    let resume = resuming && state.shared.resumes.waits_for(&client);
    let too_many = || {
        ::metrics::counter!(metrics::REFUSED, "why" => "sockets").increment(1);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "5")],
            "too many connections",
        )
            .into_response()
    };
    if !resume && state.shared.sockets.len() >= limits.max_sockets {
        return too_many();
    }
    let address_place = state
        .shared
        .sockets_per_address
        .take(&crate::session::quota::network_of(address));
    if address_place.is_none() && !resume {
        tracing::info!(%address, "socket refused: max-sockets-per-address");
        return too_many();
    }
    let Ok(ws) = ws else {
        return (StatusCode::BAD_REQUEST, "WebSocket upgrade expected").into_response();
    };
    // Checked now (a bearer token or the sign-in cookie), told on Start.
    let signed_in = super::sign_in::check(&state, &headers, address).await;
    // Frames up to twice the chunk limit are read so an oversized chunk gets a typed
    // error; beyond that the WebSocket layer drops the connection itself. With the socket
    // cap this bounds what unfinished frames can hold: max-sockets × 2 × max-chunk-bytes.
    let limit = limits.max_chunk_bytes.saturating_mul(2);
    let ws = ws.max_message_size(limit).max_frame_size(limit);
    let sockets = state.shared.sockets.clone();
    ws.on_upgrade(move |socket| async move {
        sockets.spawn(
            async move {
                // The address's socket place is held for the connection's life.
                let _place = address_place;
                Connection::new(Box::new(socket), state, client, address)
                    .signed_in(signed_in)
                    .run()
                    .await
            }
            .instrument(tracing::info_span!("session", id = tracing::field::Empty)),
        );
    })
}

/// How long a new socket may wait before it starts or resumes a session: an idle socket
/// gives its place back quickly.
const START_WITHIN: Duration = Duration::from_secs(5);

/// Why the loop ended.
enum Exit {
    /// The session (if any) ended this way.
    Ended(Ending),
    /// This socket resumed another connection's session: it goes to that connection.
    HandedOver(tokio::sync::oneshot::Sender<Socket>),
}

const ABANDONED: Exit = Exit::Ended(Ending::Abandoned);

/// Counts messages per one-second window.
struct RateLimit {
    window_start: Instant,
    count: u32,
    max: u32,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.max
    }
}

struct Connection {
    state: AppState,
    /// The browser session (cookie) this connection belongs to.
    client: ClientId,
    /// Where it connected from (sessions are counted per network too).
    address: IpAddr,
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    session: Option<Session>,
    playlist_ready: bool,
    chunks: u64,
    /// The first bytes of the media, kept until the container's magic can be checked.
    prefix: Vec<u8>,
    /// The container the Start message announced.
    container: protocol::Container,
    /// The box walk of a live MP4 (what a recorder never sends is refused).
    mp4: Option<super::live_mp4::LiveMp4>,
    /// Privacy mode asked for by the page.
    privacy: bool,
    stats: StatsSampler,
    /// Lets a new socket continue this session after a drop (sent in `started`).
    resume_token: Option<ResumeToken>,
    /// Set when a `resume` message claimed a parked session for this socket.
    handover: Option<tokio::sync::oneshot::Sender<Socket>>,
    /// Whether the client may start sessions (`[auth]`), as checked when the socket opened.
    signed_in: Result<(), crate::auth::Refusal>,
}

impl Connection {
    fn new(socket: Socket, state: AppState, client: ClientId, address: IpAddr) -> Self {
        let (sink, stream) = socket.split();
        Connection {
            state,
            client,
            address,
            sink,
            stream,
            session: None,
            playlist_ready: false,
            chunks: 0,
            prefix: Vec::new(),
            container: protocol::Container::Matroska,
            mp4: None,
            privacy: false,
            stats: StatsSampler::new(),
            resume_token: None,
            handover: None,
            signed_in: Ok(()),
        }
    }

    /// Whether this connection's client may start sessions (`[auth]`), as checked when
    /// its socket opened.
    fn signed_in(mut self, result: Result<(), crate::auth::Refusal>) -> Self {
        self.signed_in = result;
        self
    }

    async fn run(mut self) {
        let shared = self.state.shared.clone();
        let limits = shared.limits();
        let idle = Duration::from_secs(limits.idle_timeout_secs);
        // A socket must start (or resume) a session soon (the page opens it with the camera
        // already open and sends Start at once); once it has, the session keeps its own
        // deadlines (idle, length, drain).
        let start_deadline = Instant::now() + idle.min(START_WITHIN);
        let mut rate = RateLimit {
            window_start: Instant::now(),
            count: 0,
            max: limits.max_messages_per_second,
        };
        let mut stats_tick = tokio::time::interval(Duration::from_millis(
            shared.config.pipeline.stats_interval_ms,
        ));
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        let exit = loop {
            let stopping = self.session.as_ref().is_some_and(|s| s.input_finished());
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => {
                    self.end_session(SHUTDOWN_FINISH_TIMEOUT).await;
                    self.send(ServerMsg::error(ErrorKind::ShuttingDown)).await;
                    break Exit::Ended(Ending::ShutDown);
                }
                event = next_event(&mut self.session) => match event {
                    Some(SessionEvent::PlaylistReady) => {
                        self.playlist_ready = true;
                        self.send_playlist_ready().await;
                    }
                    Some(SessionEvent::Ended(result)) => {
                        let frames = self.session.as_ref().map_or(0, |s| {
                            s.counters().frames_in.load(Ordering::Relaxed)
                        });
                        let (ending, error) = Ending::of_pipeline(&result, stopping, frames);
                        if let Some(kind) = error {
                            self.send(ServerMsg::error(kind)).await;
                        } else {
                            self.send_stats().await;
                            let url = self.playlist_url();
                            self.send(ServerMsg::Ended { url }).await;
                        }
                        break Exit::Ended(ending);
                    }
                    Some(SessionEvent::Due(Due::Idle { bad_media })) => {
                        // Data that never made a frame is not video; data that stopped
                        // making frames is an idle session.
                        let kind = if bad_media { ErrorKind::BadMedia } else { ErrorKind::Idle };
                        tracing::info!("no decoded frame for {idle:?}; ending ({})", kind.code());
                        self.fail(kind).await;
                        break ABANDONED;
                    }
                    Some(SessionEvent::Due(Due::AheadOfRealTime)) => {
                        tracing::info!(
                            "media ran more than {AHEAD_OF_REAL_TIME:?} ahead of real time; ending (rateLimited)"
                        );
                        self.fail(ErrorKind::RateLimited).await;
                        break ABANDONED;
                    }
                    // The session closed its input: it drains and ends with its recording.
                    Some(SessionEvent::Due(_)) => self.fail(ErrorKind::TooLong).await,
                    None => break ABANDONED,
                },
                _ = stats_tick.tick(), if self.session.is_some() => self.send_stats().await,
                _ = sleep_until(start_deadline), if self.session.is_none() => {
                    tracing::info!("no session started within {idle:?}; closing the socket");
                    self.fail(ErrorKind::Idle).await;
                    break ABANDONED;
                }
                msg = self.stream.next() => {
                    let msg = match msg {
                        Some(Ok(msg)) => msg,
                        // The connection broke without a close frame (a network blip, not
                        // a closed page): a running session waits for its page to return.
                        _ if self.session.is_some() && !stopping => {
                            if self.await_resume().await {
                                continue;
                            }
                            // The grace period was the page's chance (its recording is
                            // kept for its browser).
                            break Exit::Ended(Ending::Expired);
                        }
                        // Stopped, and the page did not wait for the end: it drains and
                        // keeps its recording all the same.
                        _ if stopping && self.playlist_ready => break Exit::Ended(Ending::Stopped),
                        _ => break ABANDONED,
                    };
                    if matches!(msg, Message::Close(_)) {
                        // The page left on purpose (a reload, a closed tab): what it streamed
                        // is finished and kept for its browser, as after Stop.
                        break if self.session.is_some() && self.playlist_ready {
                            Exit::Ended(Ending::Stopped)
                        } else {
                            ABANDONED
                        };
                    }
                    if !rate.allow() {
                        self.fail(ErrorKind::RateLimited).await;
                        break ABANDONED;
                    }
                    let outcome = match msg {
                        Message::Text(text) => self.on_text(text.as_str()).await,
                        Message::Binary(data) => self.on_chunk(data).await,
                        _ => Ok(()),
                    };
                    if let Err(kind) = outcome {
                        self.fail(kind).await;
                        break ABANDONED;
                    }
                    if let Some(handover) = self.handover.take() {
                        break Exit::HandedOver(handover);
                    }
                }
            }
        };
        if let Exit::HandedOver(handover) = exit {
            // This socket never had a session: give it to the one that has.
            let Connection { sink, stream, .. } = self;
            if let Ok(socket) = sink.reunite(stream) {
                let _ = handover.send(socket);
            }
            return;
        }
        self.end_session(FINISH_TIMEOUT).await;
        if let (Some(session), Exit::Ended(ending)) = (self.session.take(), exit) {
            let retirement = Retirement {
                registry: &shared.registry,
                pipeline: &shared.pipeline,
                limits: &limits,
                shutdown: &shared.shutdown,
            };
            if let Some(offer) = retirement
                .retire(session, ending, self.playlist_ready)
                .await
            {
                self.send(offer).await;
            }
        }
        let _ = self.sink.close().await;
    }

    /// After a dropped connection: waits up to `limits.resume-grace-secs` for a new socket of this
    /// browser to claim the session with its resume token, while the pipeline goes on with
    /// what it has. True when one did (it is now this connection's socket, and was told how
    /// many chunks arrived); false when the grace period, the session or the server ended.
    async fn await_resume(&mut self) -> bool {
        let shared = self.state.shared.clone();
        let grace = Duration::from_secs(shared.limits().resume_grace_secs);
        let Some(token) = self.resume_token.clone().filter(|_| !grace.is_zero()) else {
            return false;
        };
        let mut handover = shared.resumes.park(&token, &self.client);
        tracing::info!("socket dropped; the session waits {grace:?} for its page");
        let deadline = Instant::now() + grace;
        let mut ready_meanwhile = false;
        let socket = loop {
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => break None,
                socket = &mut handover => break socket.ok(),
                event = next_event(&mut self.session) => match event {
                    Some(SessionEvent::PlaylistReady) => {
                        self.playlist_ready = true;
                        ready_meanwhile = true;
                    }
                    // No frames come while the page is away; the grace period decides.
                    // A session too long has closed its input and ends on its own.
                    Some(SessionEvent::Due(_)) => {}
                    // The pipeline ended meanwhile: nothing is left to resume.
                    _ => break None,
                },
                _ = sleep_until(deadline) => break None,
            }
        };
        shared.resumes.forget(&token);
        let Some(socket) = socket else {
            tracing::info!("session not resumed; ending it");
            return false;
        };
        let (sink, stream) = socket.split();
        self.sink = sink;
        self.stream = stream;
        ::metrics::counter!(metrics::RESUMED).increment(1);
        tracing::info!(chunks = self.chunks, "session resumed on a new socket");
        self.send(ServerMsg::Resumed {
            chunks: self.chunks,
        })
        .await;
        if ready_meanwhile {
            self.send_playlist_ready().await;
        }
        true
    }

    async fn on_text(&mut self, text: &str) -> Result<(), ErrorKind> {
        match ClientMsg::decode(text) {
            Err(e) => {
                tracing::info!("bad message: {e}");
                Err(e.kind())
            }
            Ok(ClientMsg::Start {
                mime_type,
                width,
                height,
            }) => self.start(&mime_type, width, height).await,
            Ok(ClientMsg::SetPrivacy { on: privacy }) => {
                self.privacy = privacy;
                if let Some(session) = &self.session {
                    session.set_privacy(privacy);
                }
                Ok(())
            }
            Ok(ClientMsg::SetDetector(settings)) => {
                let Some(session) = &self.session else {
                    return Err(ErrorKind::Protocol);
                };
                let kind = session.detector_kind();
                match super::wire::from_page(kind, session.detector_settings(), settings) {
                    Ok(tuning) => {
                        // Debug: a page may send several a second while a slider moves.
                        tracing::debug!(?tuning, "detector settings changed");
                        session.set_detector(tuning);
                    }
                    Err(why) => {
                        // Not fatal: the session goes on with its current settings. Debug,
                        // like a change: a page (or a script) may send hundreds a second.
                        tracing::debug!("detector settings refused: {why}");
                        self.send(ServerMsg::Error {
                            kind: ErrorKind::InvalidSettings,
                            message: why,
                        })
                        .await;
                    }
                }
                Ok(())
            }
            Ok(ClientMsg::Resume { token }) => {
                if self.session.is_some() {
                    return Err(ErrorKind::Protocol);
                }
                let claimed = ResumeToken::parse(&token)
                    .and_then(|token| self.state.shared.resumes.claim(&token, &self.client));
                match claimed {
                    Some(handover) => {
                        self.handover = Some(handover);
                        Ok(())
                    }
                    None => {
                        tracing::info!("resume refused: unknown, expired or not this browser's");
                        Err(ErrorKind::ResumeFailed)
                    }
                }
            }
            Ok(ClientMsg::Stop) => {
                match &mut self.session {
                    // Nothing was recorded: end at once, there is no recording to finish.
                    Some(s) if self.chunks == 0 => {
                        s.finish_input();
                        s.abort();
                    }
                    // Second stop while ending: the Ended message is already coming.
                    Some(s) => s.finish_input(),
                    None => return Err(ErrorKind::Protocol),
                }
                Ok(())
            }
        }
    }

    async fn start(&mut self, mime: &str, width: u32, height: u32) -> Result<(), ErrorKind> {
        if self.session.is_some() {
            return Err(ErrorKind::Protocol);
        }
        if let Err(refusal) = self.signed_in {
            super::sign_in::refused(refusal);
            return Err(ErrorKind::AuthRequired);
        }
        let format = protocol::media_format(mime);
        let Some((container, codec)) = format.filter(|_| protocol::valid_frame_size(width, height))
        else {
            return Err(ErrorKind::UnsupportedMedia);
        };
        self.container = container;
        self.mp4 = (container == protocol::Container::Mp4).then(Default::default);
        let shared = self.state.shared.clone();
        let codec = super::wire::codec(codec);
        // Planned at the announced picture size: the decoder refuses larger pictures.
        let share = crate::session::capacity::session_share(codec, width, height);
        // Privacy asked for before Start is planned at its cost (it detects every frame).
        let reservation = match shared.capacity.reserve(share, self.privacy) {
            Ok(r) => r,
            Err(why) => {
                tracing::info!("session refused: no room ({})", why.label());
                ::metrics::counter!(metrics::REFUSED, "why" => why.label()).increment(1);
                return Err(why.error_kind());
            }
        };
        let admission = match shared.registry.admit(&self.client, self.address) {
            Ok(a) => a,
            Err(Refusal::Full) => {
                ::metrics::counter!(metrics::REFUSED, "why" => "sessions").increment(1);
                return Err(ErrorKind::Busy);
            }
            Err(Refusal::Client) => {
                ::metrics::counter!(metrics::REFUSED, "why" => "client").increment(1);
                return Err(ErrorKind::ClientLimit);
            }
            Err(Refusal::Network) => {
                tracing::info!(address = %self.address, "session refused: address limit");
                ::metrics::counter!(metrics::REFUSED, "why" => "address").increment(1);
                return Err(ErrorKind::ClientLimit);
            }
            Err(Refusal::Storage) => return Err(ErrorKind::Pipeline),
            Err(Refusal::Recordings) => {
                tracing::info!("session refused: max-retained recordings kept or coming");
                ::metrics::counter!(metrics::REFUSED, "why" => "recordings").increment(1);
                return Err(ErrorKind::Storage);
            }
        };
        let id = admission.id.clone();
        tracing::Span::current().record("id", id.as_str());
        tracing::info!(session = %id, mime, width, height, "session starting");
        let media = crate::session::live::Media {
            feed: crate::session::live::Feed::Recorder(codec),
            width,
            height,
        };
        // Starting awaits the detector's model loading on its own thread (~0.1 s).
        let limits = shared.limits();
        let rules = Rules {
            idle: Duration::from_secs(limits.idle_timeout_secs),
            max_length: Duration::from_secs(limits.max_session_secs),
            real_time: Some(RealTime {
                fps: f64::from(shared.config.pipeline.hls.frame_rate),
                ahead: AHEAD_OF_REAL_TIME,
            }),
        };
        let started = Session::start(
            admission,
            reservation,
            media,
            &shared.pipeline_env(),
            self.privacy,
            rules,
        )
        .await;
        let session = match started {
            Ok(s) => s,
            Err(e @ ServerError::DiskFull { .. }) => {
                tracing::warn!(session = %id, "not started: {e}");
                shared
                    .registry
                    .retire(id, Duration::ZERO, self.address, false);
                return Err(ErrorKind::Storage);
            }
            Err(e) => {
                tracing::error!(session = %id, "cannot start pipeline: {e}");
                shared
                    .registry
                    .retire(id, Duration::ZERO, self.address, false);
                return Err(ErrorKind::Pipeline);
            }
        };
        let resume_token = ResumeToken::random();
        self.resume_token = Some(resume_token.clone());
        let started = ServerMsg::Started {
            session_id: id.to_string(),
            viewer_url: app::hls_path::viewer_page(session.viewer_token().as_str()),
            detector: super::wire::to_page(session.detector_kind(), session.detector_settings()),
            resume_token: resume_token.to_string(),
            resume_grace_secs: self.state.shared.limits().resume_grace_secs,
        };
        self.session = Some(session);
        self.send(started).await;
        Ok(())
    }

    async fn on_chunk(&mut self, data: Bytes) -> Result<(), ErrorKind> {
        let limit = self.state.shared.limits().max_chunk_bytes;
        let Some(session) = &self.session else {
            return Err(ErrorKind::Protocol); // media before start
        };
        if data.len() > limit {
            return Err(ErrorKind::TooLarge);
        }
        if session.input_finished() {
            tracing::debug!("chunk after stop ignored");
            return Ok(());
        }
        if self.prefix.len() < protocol::Container::PREFIX {
            let need = protocol::Container::PREFIX - self.prefix.len();
            self.prefix.extend_from_slice(&data[..data.len().min(need)]);
            if !self.container.accepts(&self.prefix) {
                tracing::info!(
                    "media does not start like {:?}: {:02x?}",
                    self.container,
                    self.prefix
                );
                return Err(ErrorKind::BadMedia);
            }
        }
        if let Some(mp4) = &mut self.mp4 {
            if let Err(refusal) = mp4.push(&data) {
                tracing::info!("live MP4 refused: {refusal}");
                return Err(ErrorKind::BadMedia);
            }
        }
        self.chunks += 1;
        ::metrics::counter!(metrics::BYTES_IN).increment(data.len() as u64);
        match tokio::time::timeout(PUSH_TIMEOUT, session.push(data)).await {
            Ok(true) => Ok(()),
            // The decoder is gone; its Ended event carries the reason.
            Ok(false) => Ok(()),
            Err(_) => Err(ErrorKind::Pipeline),
        }
    }

    /// Tells the client `kind`; the caller then ends the loop.
    async fn fail(&mut self, kind: ErrorKind) {
        self.send(ServerMsg::error(kind)).await;
    }

    /// Ends a still-running session's recording (ENDLIST) within `limit`, else kills it.
    async fn end_session(&mut self, limit: Duration) {
        if let Some(session) = &mut self.session {
            session.finish_within(limit).await;
        }
    }

    /// Tells the page where the processed stream plays from (once it is ready).
    async fn send_playlist_ready(&mut self) {
        if let Some(url) = self.playlist_url() {
            let live_sync_seconds = self.state.shared.config.pipeline.live_sync_seconds();
            self.send(ServerMsg::PlaylistReady {
                url,
                live_sync_seconds,
            })
            .await;
        }
    }

    fn playlist_url(&self) -> Option<String> {
        let session = self.session.as_ref()?;
        self.playlist_ready
            .then(|| app::hls_path::playlist_url(session.id.as_str()))
    }

    async fn send_stats(&mut self) {
        if let Some(session) = &self.session {
            let stats = Stats {
                chunks: self.chunks,
                ..self.stats.sample(session.counters())
            };
            self.send(ServerMsg::Stats(stats)).await;
        }
    }

    async fn send(&mut self, msg: ServerMsg) {
        if let ServerMsg::Error { kind, .. } = &msg {
            ::metrics::counter!(metrics::ERRORS, "kind" => kind.code()).increment(1);
        }
        let text = msg.encode();
        if tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Text(text.into())))
            .await
            .is_err()
        {
            tracing::info!("client is not reading; message dropped");
        }
    }
}

/// The session's next event, or never if there is no session.
async fn next_event(session: &mut Option<Session>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.event().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
