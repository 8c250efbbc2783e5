//! `GET /hls/<session-id>/<file>` and `GET /view/<viewer-token>/<file>`: a session's
//! LL-HLS stream from memory (playlist, init segment, parts, segments of the live window)
//! and, for the owner only, the recording from disk; anything else is 404.
//!
//! Blocking playlist reload (`_HLS_msn`, `_HLS_part`): the request is held until that
//! part or segment is published, then answered with the playlist of that moment. Waiting
//! costs no disk read and no polling: every held request waits on the session's `watch`
//! of stream snapshots and answers with the text rendered once for everyone. A request
//! for the part the preload hint names is held the same way. A viewer token reaches only
//! the live stream, and only while its session runs.

use super::AppState;
use crate::hls::stream::{Resource, Stream};
use crate::metrics;
use crate::session::registry::{Folder, SessionId, ViewerToken};
use app::hls_path::{content_type, RECORDING};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

/// The viewer link's liveness probe (`app::hls_path::viewer_status`): 200 while the
/// session runs, 404 after.
pub const VIEWER_STATUS: &str = "status";

/// The session owner's route: the stream, and the recording once there is one.
pub async fn serve(
    State(state): State<AppState>,
    Path((session, file)): Path<(String, String)>,
    reload: Result<Query<Reload>, QueryRejection>,
) -> Response {
    let folder = SessionId::parse(&session).and_then(|id| state.shared.registry.folder(&id));
    match folder {
        Some(folder) if file == RECORDING => serve_recording(&folder).await,
        Some(folder) => serve_stream(folder.stream, &file, reload.map(|q| q.0)).await,
        None => not_found(),
    }
}

/// The viewer link's route: the live stream, while the session runs.
pub async fn serve_viewer(
    State(state): State<AppState>,
    Path((token, file)): Path<(String, String)>,
    reload: Result<Query<Reload>, QueryRejection>,
) -> Response {
    let registry = &state.shared.registry;
    let folder = ViewerToken::parse(&token)
        .and_then(|t| registry.viewer_session(&t))
        .and_then(|id| registry.folder(&id));
    ::metrics::counter!(metrics::VIEWER_REQUESTS).increment(1);
    if file == VIEWER_STATUS {
        // Every viewer page asks this each second, to say "ended" as soon as it is. A shared
        // cache may answer "live" for a second (100 viewers behind nginx then cost the node
        // one request a second, not 100); "gone" is never kept.
        return match folder {
            Some(_) => ([(header::CACHE_CONTROL, "public, max-age=1")], "live").into_response(),
            None => not_found(),
        };
    }
    match folder {
        Some(folder) => serve_stream(folder.stream, &file, reload.map(|q| q.0)).await,
        None => not_found(),
    }
}

/// A playlist request's blocking-reload parameters (RFC 8216bis §6.2.5.2: "deliver the
/// playlist once it holds part `part` of segment `msn`"); other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Reload {
    #[serde(rename = "_HLS_msn")]
    msn: Option<u64>,
    #[serde(rename = "_HLS_part")]
    part: Option<usize>,
}

fn not_found() -> Response {
    no_store(StatusCode::NOT_FOUND, "")
}

/// An error answer no cache keeps: the next request asks the node again.
fn no_store(status: StatusCode, why: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], why).into_response()
}

/// Counts a request held in [`hold`] for as long as it is held.
struct Held;

impl Held {
    fn new() -> Self {
        ::metrics::gauge!(metrics::HELD_REQUESTS).increment(1.0);
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::HELD_REQUESTS).decrement(1.0);
    }
}

/// Waits until `done` holds for the published stream (or it ended), at most three target
/// durations (the spec's bound); returns the snapshot then, or `None` on timeout.
async fn hold(
    mut stream: watch::Receiver<Arc<Stream>>,
    done: impl Fn(&Stream) -> bool,
) -> Option<Arc<Stream>> {
    let limit = {
        let now = stream.borrow();
        Duration::from_secs(3 * u64::from(now.timing.target_duration.max(1)))
    };
    let _held = Held::new();
    let waited = tokio::time::timeout(limit, async {
        let found = stream
            .wait_for(|s| done(s) || s.ended)
            .await
            .map(|snapshot| snapshot.clone());
        // The session is gone: answer with what was published last.
        found.unwrap_or_else(|_| stream.borrow().clone())
    })
    .await;
    waited.ok()
}

/// Why a blocking reload is answered at once with 400: the spec's limits on how far ahead
/// a client may ask (`_HLS_msn` more than two segments past the last one, or `_HLS_part`
/// more than the Advance Part Limit past the last part), or `_HLS_part` without `_HLS_msn`.
fn too_far(stream: &Stream, msn: Option<u64>, part: Option<usize>) -> bool {
    let Some(msn) = msn else {
        return part.is_some();
    };
    let (last, parts) = stream.last_position().unwrap_or((0, 0));
    if msn > last + 2 {
        return true;
    }
    let Some(part) = part else { return false };
    let part_target = stream.timing.part_target.max(0.01);
    let per_segment = (f64::from(stream.timing.target_duration) / part_target).ceil() as u64;
    let advance_limit = if part_target < 1.0 {
        (3.0 / part_target).ceil() as u64
    } else {
        3
    };
    let asked = msn.saturating_mul(per_segment).saturating_add(part as u64);
    let published = last * per_segment + parts as u64;
    asked > published + advance_limit
}

fn unavailable(why: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::RETRY_AFTER, "1"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        why,
    )
        .into_response()
}

pub(super) async fn serve_stream(
    stream: watch::Receiver<Arc<Stream>>,
    file: &str,
    reload: Result<Reload, QueryRejection>,
) -> Response {
    let (Some(resource), Some(mime)) = (Resource::parse(file), content_type(file)) else {
        return not_found();
    };
    let now = stream.borrow().clone();
    let snapshot = match resource {
        Resource::Playlist => {
            let Ok(Reload { msn, part }) = reload else {
                return no_store(StatusCode::BAD_REQUEST, "bad _HLS_msn or _HLS_part");
            };
            if too_far(&now, msn, part) {
                return no_store(StatusCode::BAD_REQUEST, "_HLS_msn/_HLS_part too far ahead");
            }
            match msn {
                Some(msn) if !now.has(msn, part) && !now.ended => {
                    match hold(stream, |s| s.has(msn, part)).await {
                        Some(s) => s,
                        None => return unavailable("the requested part did not appear in time"),
                    }
                }
                _ => now,
            }
        }
        other if now.get(other).is_none() && now.is_upcoming(other) => {
            match hold(stream, |s| s.get(other).is_some() || !s.is_upcoming(other)).await {
                Some(s) => s,
                None => return unavailable("the requested part did not appear in time"),
            }
        }
        _ => now,
    };
    let Some(bytes) = snapshot.get(resource) else {
        return match resource {
            // Never an empty playlist: players retry.
            Resource::Playlist => unavailable("playlist not ready"),
            _ => not_found(),
        };
    };
    let blocking = matches!(resource, Resource::Playlist) && reload.is_ok_and(|r| r.msn.is_some());
    let cache = cache_control(
        resource,
        blocking,
        snapshot.timing.target_duration,
        snapshot.segments.len(),
    );
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, cache.as_str()),
        ],
        bytes,
    )
        .into_response()
}

/// How long a shared cache (the cluster's nginx) may keep a stream response, chosen so
/// that 100 viewers of a session cost its node about what one costs and no one is served
/// a stale live edge:
/// - the plain playlist changes with every part: never stored (`no-cache`);
/// - a blocking reload's answer (`_HLS_msn`/`_HLS_part`) is by definition the playlist
///   once that part existed, a correct answer to that exact URL for as long as the part
///   stays in the playlist (three target durations): everyone asking the same URL can
///   share it, which is what lets nginx collapse the viewers' held requests into one;
/// - init segment, parts and segments never change under their names (`immutable`); they
///   are kept for as long as the live window lasts (its segments, at least three, times the
///   target duration) and no longer: behind a cache, a viewer link's media is gone that
///   long after its session ended, as the playlist (never stored) is at once.
///
/// The URLs hold the session's secret id or viewer token, so `public` shares them only
/// with those who hold the same secret URL. Errors are `no-store` (see [`no_store`]).
fn cache_control(
    resource: Resource,
    blocking: bool,
    target_duration: u32,
    window: usize,
) -> String {
    let target = target_duration.max(1);
    match resource {
        Resource::Playlist if blocking => format!("public, max-age={}", 3 * target),
        Resource::Playlist => "no-cache".into(),
        _ => format!(
            "public, max-age={}, immutable",
            window.max(3) as u32 * target
        ),
    }
}

/// The recording download: streamed from disk (it may be hundreds of MB).
async fn serve_recording(folder: &Folder) -> Response {
    let path = folder.dir.join(RECORDING);
    // Only a regular file, never a symlink (symlink_metadata does not follow them).
    let len = match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.file_type().is_file() => meta.len(),
        _ => return not_found(),
    };
    let Ok(handle) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::CACHE_CONTROL, "private, max-age=60"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hls-face-recording.mp4\"",
            ),
        ],
        Body::from_stream(ReaderStream::new(handle)),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, len.into());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fmp4::{Fragment, Init};
    use crate::hls::packager::{Packager, PackagerSettings};
    use bytes::Bytes;
    use std::time::UNIX_EPOCH;

    fn packager() -> Packager {
        let mut p = Packager::new(PackagerSettings {
            segment_seconds: 1.0,
            part_seconds: 0.1,
            hold_back_parts: 3,
            window: 6,
            clock_origin: None,
        });
        p.init(Init {
            bytes: Bytes::from_static(b"init"),
            timescale: 15360,
        });
        p
    }

    fn push(p: &mut Packager, frames: std::ops::Range<u64>) {
        for n in frames {
            let f = Fragment {
                bytes: Bytes::from(vec![0u8; 10]),
                decode_time: n * 512,
                duration: 512,
                independent: n.is_multiple_of(30),
            };
            p.push(f, UNIX_EPOCH + Duration::from_secs(n)).unwrap();
        }
    }

    /// The body of a 200 response, as text.
    async fn ok_text(response: Response) -> String {
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    async fn get(rx: &watch::Receiver<Arc<Stream>>, file: &str, query: Option<&str>) -> Response {
        let uri: axum::http::Uri = format!("/{file}?{}", query.unwrap_or_default())
            .parse()
            .unwrap();
        let reload = Query::<Reload>::try_from_uri(&uri).map(|q| q.0);
        serve_stream(rx.clone(), file, reload).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_reload_answers_when_the_part_appears_and_not_before() {
        let mut p = packager();
        push(&mut p, 0..30);
        let (tx, rx) = watch::channel(Arc::new(p.stream().clone()));
        // Part 1 of segment 1 does not exist yet: held.
        let held = tokio::spawn({
            let rx = rx.clone();
            async move { get(&rx, "playlist.m3u8", Some("_HLS_msn=1&_HLS_part=1")).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!held.is_finished(), "answered before the part existed");
        push(&mut p, 30..33);
        tx.send_replace(Arc::new(p.stream().clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!held.is_finished(), "part 0 is not part 1");
        push(&mut p, 33..36);
        tx.send_replace(Arc::new(p.stream().clone()));
        let text = ok_text(held.await.unwrap()).await;
        assert!(text.contains("part_00001_1.m4s\"\n#EXT-X-PRELOAD-HINT"));
        // An existing part answers at once; its segment too once complete.
        assert_eq!(
            get(&rx, "part_00001_0.m4s", None).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get(&rx, "seg_00000.m4s", None).await.status(),
            StatusCode::OK
        );
        assert_eq!(get(&rx, "init.mp4", None).await.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn shared_caches_keep_what_never_changes_and_not_the_live_edge() {
        let mut p = packager();
        push(&mut p, 0..36);
        let (_tx, rx) = watch::channel(Arc::new(p.stream().clone()));
        let cache = |r: Response| {
            r.headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string()
        };
        assert_eq!(cache(get(&rx, "playlist.m3u8", None).await), "no-cache");
        assert_eq!(
            cache(get(&rx, "playlist.m3u8", Some("_HLS_msn=1&_HLS_part=0")).await),
            "public, max-age=3"
        );
        // The live window: as long as its segments last (a viewer's media behind a cache
        // is gone that long after the end).
        let window = rx.borrow().segments.len().max(3) as u32 * rx.borrow().timing.target_duration;
        assert!(window < 60, "{window}");
        for file in ["init.mp4", "part_00001_0.m4s", "seg_00000.m4s"] {
            assert_eq!(
                cache(get(&rx, file, None).await),
                format!("public, max-age={window}, immutable"),
                "{file}"
            );
        }
        for (file, query) in [
            ("part_00009_0.m4s", None),
            ("playlist.m3u8", Some("_HLS_msn=9")),
            ("playlist.m3u8", Some("_HLS_msn=2")),
        ] {
            let r = get(&rx, file, query).await;
            assert_ne!(r.status(), StatusCode::OK, "{file} {query:?}");
            assert_eq!(cache(r), "no-store", "{file} {query:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn too_far_ahead_is_400_and_a_part_that_never_comes_is_503() {
        let mut p = packager();
        push(&mut p, 0..30);
        let (_tx, rx) = watch::channel(Arc::new(p.stream().clone()));
        for query in [
            "_HLS_msn=4",
            "_HLS_msn=1&_HLS_part=40",
            "_HLS_part=1",
            "_HLS_msn=x",
            "_HLS_msn=1&_HLS_part=-1",
        ] {
            let status = get(&rx, "playlist.m3u8", Some(query)).await.status();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        }
        // Within the limits, but nothing is published: 503 after 3 target durations.
        let started = tokio::time::Instant::now();
        let status = get(&rx, "playlist.m3u8", Some("_HLS_msn=2")).await.status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= Duration::from_secs(3));
        // The hinted part is held, then 503 the same way; a part far away is 404 at once.
        let status = get(&rx, "part_00001_0.m4s", None).await.status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let status = get(&rx, "part_00009_0.m4s", None).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        for file in [
            "recording.mp4",
            "seg_00000.ts",
            "../x.m4s",
            "part_00000_10.m4s",
        ] {
            assert_eq!(
                get(&rx, file, None).await.status(),
                StatusCode::NOT_FOUND,
                "{file}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_readers_are_released_when_the_stream_ends() {
        let mut p = packager();
        push(&mut p, 0..30);
        let (tx, rx) = watch::channel(Arc::new(p.stream().clone()));
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move { get(&rx, "playlist.m3u8", Some("_HLS_msn=1")).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.finish();
        tx.send_replace(Arc::new(p.stream().clone()));
        for waiter in waiters {
            let text = ok_text(waiter.await.unwrap()).await;
            assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        }
    }
}
