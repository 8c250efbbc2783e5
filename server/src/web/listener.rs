//! The accept loop: plain HTTP or HTTPS (rustls) on one listener, with the limits a
//! public server needs that `axum::serve` does not set — a cap on open connections, a
//! deadline for the request headers and the TLS handshake, and a connection that has been
//! silent (no byte either way) for too long is closed — and a graceful shutdown.

use crate::error::ServerError;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A connection with no byte in either direction for this long is closed (one that never
/// sends a byte, after the header deadline). Live sockets carry stats twice a second and
/// players poll playlists several times a second, so only abandoned or hostile connections
/// stay silent this long.
pub const SILENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for open connections to finish their current request.
const DRAIN: Duration = Duration::from_secs(3);

/// Limits of the accept loop.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub silent_timeout: Duration,
}

/// Loads a PEM certificate chain and private key for rustls.
pub fn tls_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &'static str, path: &Path, e: String| ServerError::Tls {
        what,
        path: path.to_owned(),
        reason: e,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cannot read the certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cannot read the certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in", cert, "empty PEM".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("cannot read the private key", key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS setup failed for", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("the certificate and key do not fit", cert, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the client's first byte is a TLS handshake record (0x16); a plain-HTTP request
/// on the HTTPS port starts with a method name instead.
async fn starts_like_tls(stream: &Quiet<tokio::net::TcpStream>, wait: Duration) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.inner.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        // Nothing came, or the peer left: the handshake will fail the usual way.
        _ => true,
    }
}

/// Answers a plain-HTTP request on the HTTPS port with a plain message instead of bytes a
/// browser shows as a broken page.
async fn answer_plain_http<S: tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = "This port speaks HTTPS: open the same address with https://\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The TLS settings new connections are served with: replaced whole when the certificate
/// files change (`crate::reload`); a connection keeps the settings it was accepted with.
pub type TlsSettings = Arc<std::sync::RwLock<Arc<tokio_rustls::rustls::ServerConfig>>>;

/// Connections over the cap answered "busy" at the same time; beyond, they are closed.
const OVERFLOW_ANSWERS: usize = 64;

/// Tells a connection over the cap that the server is busy (503, try again in a second),
/// without reading its request, then closes it.
async fn answer_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 41\r\n\
Connection: close\r\n\r\nThe server is busy: try again in a moment";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(BUSY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A full server asks an idle keep-alive connection silent at least this long to close
/// for a new one; with none, the new one is told "busy".
const YIELD_AFTER: Duration = Duration::from_secs(1);
/// How long a new connection waits for the place an idle one gives up.
const YIELD_WAIT: Duration = Duration::from_millis(500);

/// What serving one connection needs from the accept loop.
#[derive(Clone)]
struct ConnContext {
    router: Router,
    tls: Option<TlsSettings>,
    limits: Limits,
    board: Arc<super::idle::Board>,
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish (at most
/// [`DRAIN`]). `tls` makes it HTTPS. At `max-connections`, an idle keep-alive connection
/// gives way to a new one; with none, the new one is told the server is busy.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsSettings>,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Connections over the cap waiting for a place or told "busy", at most this many.
    let overflow = Arc::new(Semaphore::new(OVERFLOW_ANSWERS));
    let graceful = GracefulShutdown::new();
    let context = ConnContext {
        router,
        tls,
        limits,
        board: Arc::new(super::idle::Board::default()),
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset while queued: keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let watcher = graceful.watcher();
        let context = context.clone();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_connection(stream, peer, permit, watcher, context));
            }
            Err(_) => {
                let Ok(waiting) = overflow.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let slots = slots.clone();
                tokio::spawn(async move {
                    let _waiting = waiting;
                    // An idle keep-alive connection gives way, if there is one.
                    let place = if context.board.evict_idlest(YIELD_AFTER) {
                        tokio::time::timeout(YIELD_WAIT, slots.acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok)
                    } else {
                        None
                    };
                    match place {
                        Some(permit) => {
                            serve_connection(stream, peer, permit, watcher, context).await
                        }
                        // A proxy must not read a dropped connection as "the node is gone"
                        // (nginx turns that into the session's end): over plain HTTP the
                        // answer is a quick 503. A TLS connection would need a handshake
                        // first: it is closed.
                        None if context.tls.is_none() => {
                            tracing::debug!(%peer, "connection limit reached; answering busy");
                            answer_busy(stream).await;
                        }
                        None => drop(stream),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("some connections were still open after {DRAIN:?}");
    }
    Ok(())
}

/// Serves one accepted connection holding `permit` (its place under the cap), listed on the
/// board for as long as it is open.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    watcher: hyper_util::server::graceful::Watcher,
    context: ConnContext,
) {
    let _permit = permit;
    let listed = context.board.list();
    let entry = listed.entry.clone();
    let _ = stream.set_nodelay(true);
    let router = context
        .router
        .clone()
        .layer(axum::Extension(ConnectInfo(peer)));
    // Each request is marked in flight until it is answered: a connection answering one is
    // never asked to give way.
    let service = TowerToHyperService::new(tower::service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = entry.request();
            let router = router.clone();
            async move {
                let response = tower::ServiceExt::oneshot(router, req).await;
                drop(busy);
                response
            }
        },
    ));
    // The protocol is known up front (plain: HTTP/1.1, as browsers never use h2c; TLS:
    // what ALPN chose), so no read happens outside the header deadline.
    let limits = context.limits;
    let header_deadline = limits.header_timeout;
    let builder = move |h2: bool| {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_deadline);
        if h2 {
            b.http2_only()
        } else {
            b.http1_only()
        }
    };
    let acceptor = context.tls.as_ref().map(|settings| {
        let current = settings.read().unwrap_or_else(|p| p.into_inner()).clone();
        tokio_rustls::TlsAcceptor::from(current)
    });
    let header_timeout = limits.header_timeout;
    let stream = Quiet::new(
        stream,
        header_timeout,
        limits.silent_timeout,
        listed.entry.clone(),
    );
    match acceptor {
        None => {
            let builder = builder(false);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
        Some(acceptor) => {
            if !starts_like_tls(&stream, header_timeout).await {
                answer_plain_http(stream).await;
                return;
            }
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = builder(h2);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
    }
}

/// A stream that fails once nothing has moved either way for `limit`, or when its first
/// byte has not arrived within `first` (a connection that never says anything).
struct Quiet<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The connection on the board: its last activity, and whether it must give way.
    entry: Arc<super::idle::Entry>,
    evicted: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl<S> Quiet<S> {
    fn new(inner: S, first: Duration, limit: Duration, entry: Arc<super::idle::Entry>) -> Self {
        let evicted = Box::pin(entry.evict.clone().cancelled_owned());
        Quiet {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(first)),
            entry,
            evicted,
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(at);
        self.entry.touch();
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if self.evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "idle connection gave way to a new one",
            ));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection silent for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for Quiet<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Quiet<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
