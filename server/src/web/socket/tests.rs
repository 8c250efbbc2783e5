//! The connection loop driven over an in-memory socket with paused time (deadlines pass
//! at once, nothing sleeps), and the upgrade's refusals through `Router::oneshot`: no
//! network and no ffmpeg. What a real session does is tested in `server/tests/`.

use super::*;
use crate::config::{Config, LimitsConfig};
use crate::web::transport::testing::{pair, text, Peer};
use axum::body::Body;
use axum::http::{header, Request};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use tower::ServiceExt;

const ADDR: &str = "127.0.0.1:3000";
/// The browser session every test connection belongs to.
fn client(id: &str) -> ClientId {
    ClientId::parse(id).expect("a client id")
}

const BROWSER: &str = "0123456789abcdef0123456789abcdef";
/// Resume tokens of this browser's and another browser's parked sessions.
const MINE: &str = "11111111111111111111111111111111";
const THEIRS: &str = "22222222222222222222222222222222";
const ANOTHER_BROWSER: &str = "fedcba9876543210fedcba9876543210";

/// A server's shared state (no listener) over its own runtime folder, removed on drop.
struct Fixture {
    state: AppState,
    dir: PathBuf,
}

impl Fixture {
    fn new(limits: impl FnOnce(&mut LimitsConfig)) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hls-face-socket-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut config = Config::default();
        config.pipeline.runtime_dir = dir.clone();
        limits(&mut config.limits);
        let detector = crate::video::detector::factory_for(&config.pipeline.detector);
        let addr: SocketAddr = ADDR.parse().expect("address");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let state =
            AppState::new(config, detector, addr, "http", None, shutdown).expect("shared state");
        Fixture { state, dir }
    }

    /// A session slot held for `client` as long as the result lives.
    fn occupy(&self, client: &str) -> crate::session::registry::Admission {
        let id = crate::session::ids::ClientId::parse(client).expect("a client id");
        match self
            .state
            .shared
            .registry
            .admit(&id, IpAddr::from([127, 0, 0, 1]))
        {
            Ok(admission) => admission,
            _ => panic!("no room for {client}"),
        }
    }

    /// A connection of [`BROWSER`] over an in-memory socket, running on its own task.
    fn connect(&self) -> (Peer, tokio::task::JoinHandle<()>) {
        let (socket, peer) = pair();
        let run = Connection::new(
            socket,
            self.state.clone(),
            client(BROWSER),
            IpAddr::from([127, 0, 0, 1]),
        )
        .run();
        (peer, tokio::spawn(run))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The kind of the error the server sends next (panics on anything else).
async fn next_error(peer: &mut Peer) -> ErrorKind {
    match peer.next().await {
        Some(ServerMsg::Error { kind, message }) => {
            assert_eq!(message, kind.user_message(), "a sentence for people");
            kind
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The error the server sends last: it then closes the connection and its task ends.
async fn closing_error(mut peer: Peer, task: tokio::task::JoinHandle<()>) -> ErrorKind {
    let kind = next_error(&mut peer).await;
    assert_eq!(peer.next().await, None, "closed after the error");
    task.await.expect("the connection task ends");
    kind
}

/// Sends `msg` on a fresh connection and returns the error it earns (the last message).
async fn refusal_of(fixture: &Fixture, msg: Message) -> ErrorKind {
    let (peer, task) = fixture.connect();
    peer.send_raw(msg);
    closing_error(peer, task).await
}

fn start(mime: &str, width: u32, height: u32) -> Message {
    text(&ClientMsg::Start {
        mime_type: mime.into(),
        width,
        height,
    })
}

#[tokio::test(start_paused = true)]
async fn a_socket_that_sends_nothing_is_told_it_idled_and_closed() {
    let fixture = Fixture::new(|l| l.idle_timeout_secs = 20);
    let (peer, task) = fixture.connect();
    let begun = Instant::now();
    assert_eq!(closing_error(peer, task).await, ErrorKind::Idle);
    // A socket that starts nothing gives its place back within START_WITHIN (5 s), well
    // before the session idle time.
    assert!(
        begun.elapsed() >= START_WITHIN && begun.elapsed() < Duration::from_secs(20),
        "after {:?}",
        begun.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn messages_past_the_rate_limit_end_the_connection() {
    let fixture = Fixture::new(|l| l.max_messages_per_second = 5);
    let (mut peer, task) = fixture.connect();
    let privacy = || text(&ClientMsg::SetPrivacy { on: true });
    for _ in 0..5 {
        peer.send_raw(privacy());
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), peer.next()).await;
    assert!(quiet.is_err(), "five in a second are allowed: {quiet:?}");
    // A new one-second window: five more are fine, the sixth is one too many.
    tokio::time::advance(Duration::from_millis(600)).await;
    for _ in 0..6 {
        peer.send_raw(privacy());
    }
    assert_eq!(closing_error(peer, task).await, ErrorKind::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn messages_out_of_order_or_malformed_get_typed_errors() {
    let fixture = Fixture::new(|_| {});
    let media = Message::Binary(Bytes::from_static(b"\x1a\x45\xdf\xa3 media"));
    assert_eq!(refusal_of(&fixture, media).await, ErrorKind::Protocol);
    let stop = text(&ClientMsg::Stop);
    assert_eq!(refusal_of(&fixture, stop).await, ErrorKind::Protocol);
    let settings = text(&ClientMsg::SetDetector(Default::default()));
    assert_eq!(refusal_of(&fixture, settings).await, ErrorKind::Protocol);
    let junk = Message::Text("{\"type\":\"launch\"}".into());
    assert_eq!(refusal_of(&fixture, junk).await, ErrorKind::BadMessage);
    let huge = Message::Text("x".repeat(1 << 20).into());
    assert_eq!(refusal_of(&fixture, huge).await, ErrorKind::TooLarge);
}

#[tokio::test(start_paused = true)]
async fn a_start_the_server_cannot_decode_is_refused_before_any_session() {
    let fixture = Fixture::new(|l| l.max_sessions = 1);
    for (mime, width, height) in [
        ("video/x-msvideo", 640, 480),
        ("video/webm;codecs=vp8", 641, 480),
        ("video/webm;codecs=vp8", 0, 0),
        ("video/webm;codecs=vp8", 100_000, 480),
    ] {
        let kind = refusal_of(&fixture, start(mime, width, height)).await;
        assert_eq!(kind, ErrorKind::UnsupportedMedia, "{mime} {width}x{height}");
    }
    assert!(
        fixture.state.shared.registry.has_room(),
        "no session was made"
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_past_the_limits_is_refused_with_the_reason() {
    let full = Fixture::new(|l| l.max_sessions = 1);
    let _taken = full.occupy(ANOTHER_BROWSER);
    let start = || start("video/webm;codecs=vp8", 640, 480);
    assert_eq!(refusal_of(&full, start()).await, ErrorKind::Busy);

    let own = Fixture::new(|l| {
        l.max_sessions = 4;
        l.max_sessions_per_client = 1;
    });
    let _mine = own.occupy(BROWSER);
    assert_eq!(refusal_of(&own, start()).await, ErrorKind::ClientLimit);
}

#[tokio::test(start_paused = true)]
async fn a_resume_hands_the_socket_over_only_to_its_own_browser() {
    let fixture = Fixture::new(|_| {});
    let resumes = &fixture.state.shared.resumes;
    let resume = |token: &str| {
        text(&ClientMsg::Resume {
            token: token.into(),
        })
    };
    assert_eq!(
        refusal_of(&fixture, resume("unknown")).await,
        ErrorKind::ResumeFailed
    );
    let _other = resumes.park(
        &ResumeToken::parse(THEIRS).unwrap(),
        &client(ANOTHER_BROWSER),
    );
    assert_eq!(
        refusal_of(&fixture, resume(THEIRS)).await,
        ErrorKind::ResumeFailed
    );

    // The owner's socket goes to the parked session, still open: what the page sends
    // next arrives there.
    let parked = resumes.park(&ResumeToken::parse(MINE).unwrap(), &client(BROWSER));
    let (mut peer, task) = fixture.connect();
    peer.send_raw(resume(MINE));
    let mut socket = parked.await.expect("the socket is handed over");
    task.await.expect("the new connection's loop ends");
    peer.send(&ClientMsg::Stop);
    let received = socket.next().await.expect("open").expect("a message");
    assert_eq!(received, text(&ClientMsg::Stop));
    socket
        .send(Message::Text(
            ServerMsg::Resumed { chunks: 7 }.encode().into(),
        ))
        .await
        .expect("the page's end is open");
    assert_eq!(peer.next().await, Some(ServerMsg::Resumed { chunks: 7 }));
}

#[tokio::test(start_paused = true)]
async fn shutdown_tells_a_connected_page_and_closes() {
    let fixture = Fixture::new(|_| {});
    let (peer, task) = fixture.connect();
    fixture.state.shared.shutdown.cancel();
    assert_eq!(closing_error(peer, task).await, ErrorKind::ShuttingDown);
}

#[tokio::test(start_paused = true)]
async fn a_page_that_closes_or_drops_before_starting_leaves_nothing_behind() {
    let fixture = Fixture::new(|l| l.max_sessions = 1);
    let (mut peer, task) = fixture.connect();
    peer.send_raw(Message::Close(None));
    assert_eq!(peer.next().await, None, "no message, just the close");
    task.await.expect("the connection task ends");

    let (mut peer, task) = fixture.connect();
    peer.drop_connection();
    assert_eq!(peer.next().await, None);
    task.await.expect("the connection task ends");
    assert!(
        fixture.state.shared.registry.has_room(),
        "no session was made"
    );
}

/// `GET /socket` as a browser on this server's page would send it, minus the upgrade.
fn socket_request(token: &str, origin: &str) -> axum::http::request::Builder {
    Request::get(format!("/socket?csrf_token={token}"))
        .header(header::HOST, ADDR)
        .header(header::ORIGIN, origin)
}

impl Fixture {
    /// The status and body of `request` sent through the full router.
    async fn oneshot(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = crate::web::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a short body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A request of [`BROWSER`], with its signed cookie and its page token.
    fn signed(&self, origin: &str) -> axum::http::request::Builder {
        let csrf = &self.state.shared.csrf;
        let cookie = format!("{}={}", csrf::COOKIE, csrf.cookie_value(BROWSER));
        socket_request(&csrf.token_for(BROWSER), origin).header(header::COOKIE, cookie)
    }
}

#[tokio::test]
async fn the_upgrade_refuses_in_order_token_origin_room_then_non_sockets() {
    let fixture = Fixture::new(|l| l.max_sessions = 1);
    let here = "http://127.0.0.1:3000";
    let empty = || Body::empty();

    let no_cookie = socket_request("whatever", here)
        .body(empty())
        .expect("request");
    let (status, body) = fixture.oneshot(no_cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let wrong_token = fixture
        .signed(here)
        .uri("/socket?csrf_token=0000")
        .body(empty())
        .expect("request");
    assert_eq!(fixture.oneshot(wrong_token).await.0, StatusCode::FORBIDDEN);

    let elsewhere = fixture
        .signed("http://evil.example")
        .body(empty())
        .expect("request");
    let (status, body) = fixture.oneshot(elsewhere).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "forbidden: origin")
    );

    let plain_get = fixture.signed(here).body(empty()).expect("request");
    let (status, body) = fixture.oneshot(plain_get).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A cluster node with room lets nginx's marked socket through to the upgrade; once
    // full, it sends it on with 503.
    let marked = || {
        fixture
            .signed(here)
            .header(PASS_ON_HEADER, "1")
            .body(empty())
            .expect("request")
    };
    assert_eq!(fixture.oneshot(marked()).await.0, StatusCode::BAD_REQUEST);
    let _taken = fixture.occupy(ANOTHER_BROWSER);
    let response = crate::web::app(fixture.state.clone())
        .oneshot(marked())
        .await
        .expect("the router answers");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}
