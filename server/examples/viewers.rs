//! Viewer load for the scale-out benchmark: N HLS clients watching one live session the
//! way the viewer page does (a blocking reload for the part the preload hint names, then
//! every new part, like hls.js; and the page's once-a-second "still live?" question), each
//! on its own connections, for a bounded time. Prints what the node
//! holding the session paid for them and how old each part was when it arrived.
//!
//! `cargo run --release -p server --example viewers -- BASE_URL PLAYLIST_PATH VIEWERS SECONDS NODE_ADDR NODE_PID [NGINX_PID]`
//!
//! BASE_URL is nginx (or the node itself, to compare without the cache); NODE_ADDR and
//! NODE_PID name the node (its `/metrics` and its CPU time in `/proc`), NGINX_PID nginx's
//! master (its workers' CPU is counted). The last line, `viewers-json: {...}`, is for scripts.
//!
//! A part's age on arrival is the time from its start on the session's clock
//! (`#EXT-X-PROGRAM-DATE-TIME` of its segment, stamped when the segment's first frame left
//! the encoder, plus the parts before it) to the moment its last byte reached the viewer. The
//! encoder receives a part's frames together (the detector sees the first frame of each
//! part), so a part is complete at the node a few ms after its start on that clock: the age
//! is the distribution delay, what a cache adds or saves, on the same machine's clock.

use anyhow::{bail, Context, Result};
use server::hls::playlist::{ListedPart, LlPlaylist};
use server::hls::stream::Resource;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Viewer {
    requests: u64,
    errors: u64,
    /// Age of each part on arrival, in ms.
    ages: Vec<f64>,
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the server writes it
/// (`2026-11-27T10:00:00.250Z`).
fn epoch_ms(text: &str) -> Option<f64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from civil (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60) as f64 + s) * 1000.0)
}

/// Every listed part with its start on the session's wall clock (ms since the epoch).
fn parts_with_start_times(p: &LlPlaylist) -> Vec<((u64, usize), f64)> {
    let mut out = Vec::new();
    let mut add = |parts: &[ListedPart], start: Option<&String>| {
        let Some(mut at) = start.and_then(|s| epoch_ms(s)) else {
            return;
        };
        for part in parts {
            if let Some(Resource::Part(msn, i)) = Resource::parse(&part.uri) {
                out.push(((msn, i), at));
            }
            at += part.duration * 1000.0;
        }
    };
    for s in &p.segments {
        add(&s.parts, s.date_time.as_ref());
    }
    add(&p.growing, p.growing_date_time.as_ref());
    out
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn watch(base: String, playlist: String, until: Instant) -> Viewer {
    let mut v = Viewer::default();
    // Its own connection pool: a viewer is one browser.
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        v.errors += 1;
        return v;
    };
    let dir = playlist.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    // The viewer page asks whether the session still runs every second.
    let status = {
        let (http, url) = (http.clone(), format!("{base}{dir}/status"));
        tokio::spawn(async move {
            let mut asked = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < until {
                tick.tick().await;
                asked += 1;
                if http.get(&url).send().await.is_err() {
                    break;
                }
            }
            asked
        })
    };
    let mut next: Option<(u64, usize)> = None;
    let mut last: Option<(u64, usize)> = None;
    while Instant::now() < until {
        let url = match next {
            Some((msn, part)) => format!("{base}{playlist}?_HLS_msn={msn}&_HLS_part={part}"),
            None => format!("{base}{playlist}"),
        };
        v.requests += 1;
        let text = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            _ => {
                v.errors += 1;
                next = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(p) = LlPlaylist::parse(&text) else {
            v.errors += 1;
            next = None;
            continue;
        };
        if p.ended {
            break;
        }
        let parts = parts_with_start_times(&p);
        // A player joins PART-HOLD-BACK behind the edge: from the third-newest part on.
        let from = last.or_else(|| {
            let n = parts.len();
            (n >= 3).then(|| parts[n - 3].0).map(|(m, i)| {
                if i == 0 {
                    (m.saturating_sub(1), usize::MAX)
                } else {
                    (m, i - 1)
                }
            })
        });
        for ((msn, i), start) in parts {
            if from.is_some_and(|f| (msn, i) <= f) {
                continue;
            }
            v.requests += 1;
            let got = http
                .get(format!("{base}{dir}/part_{msn:05}_{i}.m4s"))
                .send()
                .await;
            let arrived = match got {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            if arrived {
                v.ages.push(now_ms() - start);
                last = Some((msn, i));
            } else {
                v.errors += 1;
            }
        }
        next = match p.preload_hint.as_deref().and_then(Resource::parse) {
            Some(Resource::Part(msn, part)) => Some((msn, part)),
            _ => None,
        };
    }
    v.requests += status.await.unwrap_or(0);
    v
}

/// CPU seconds (user + system) of `pid` and, with `children`, of the processes whose parent
/// it is (nginx's workers).
fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let stat = |p: &str| -> Option<(u32, f64)> {
        let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest = text.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks / tick))
    };
    let mut total = stat(&pid.to_string()).map_or(0.0, |(_, s)| s);
    if children {
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some((ppid, s)) = stat(&name) {
                    if ppid == pid {
                        total += s;
                    }
                }
            }
        }
    }
    total
}

/// Sum of the node's counter `name` in its `/metrics`.
async fn counter(node: &str, name: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://{node}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// `x` with `digits` decimals, or `missing` when there is no figure (no part arrived).
fn finite_or(x: f64, digits: usize, missing: &str) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        missing.into()
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (base, playlist, n, secs, node, node_pid, nginx_pid) = match args.as_slice() {
        [_, b, p, n, s, node, pid] => (b, p, n, s, node, pid, None),
        [_, b, p, n, s, node, pid, ngx] => (b, p, n, s, node, pid, Some(ngx)),
        _ => bail!(
            "usage: viewers BASE_URL PLAYLIST_PATH VIEWERS SECONDS NODE_ADDR NODE_PID [NGINX_PID]"
        ),
    };
    let base = base.trim_end_matches('/').to_string();
    let (n, secs): (usize, u64) = (n.parse()?, secs.parse()?);
    let node_pid: u32 = node_pid.parse().context("NODE_PID")?;
    let nginx_pid: Option<u32> = nginx_pid.map(|p| p.parse()).transpose()?;
    const REQUESTS: &str = "hls_face_viewer_requests_total";

    // Viewers join over the first second, as a link shared in a chat would bring them.
    let began = Instant::now();
    let until = began + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (base, playlist) = (base.clone(), playlist.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis((i as u64 * 1000) / n.max(1) as u64))
                    .await;
                watch(base, playlist, until).await
            })
        })
        .collect();
    // Measure once everyone has joined and settled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (req0, node0, ngx0, t0) = (
        counter(node, REQUESTS).await?,
        cpu_seconds(node_pid, false),
        nginx_pid.map_or(0.0, |p| cpu_seconds(p, true)),
        Instant::now(),
    );
    tokio::time::sleep_until((until - Duration::from_secs(1)).into()).await;
    let (req1, node1, ngx1, t1) = (
        counter(node, REQUESTS).await?,
        cpu_seconds(node_pid, false),
        nginx_pid.map_or(0.0, |p| cpu_seconds(p, true)),
        Instant::now(),
    );
    let window = (t1 - t0).as_secs_f64().max(1e-3);
    let mut total = Viewer::default();
    for t in tasks {
        let v = t.await?;
        total.requests += v.requests;
        total.errors += v.errors;
        total.ages.extend(v.ages);
    }
    total.ages.sort_by(f64::total_cmp);
    let elapsed = began.elapsed().as_secs_f64();
    let (p50, p95) = (percentile(&total.ages, 0.5), percentile(&total.ages, 0.95));
    let node_rps = (req1 - req0) / window;
    let node_cpu = (node1 - node0) / window * 100.0;
    let nginx_cpu = (ngx1 - ngx0) / window * 100.0;
    let client_rps = total.requests as f64 / elapsed;
    println!(
        "viewers {n} via {base}: node {node_rps:.1} req/s, node CPU {node_cpu:.1} %, nginx CPU {nginx_cpu:.1} %, viewers {client_rps:.0} req/s, part age p50 {p50:.0} ms p95 {p95:.0} ms ({} parts), {} errors",
        total.ages.len(),
        total.errors
    );
    // One row of the benchmark's table (scripts/bench-viewers prints the header).
    println!(
        "viewers-row: | {n} | {} | {node_rps:.1} | {node_cpu:.1} | {} | {client_rps:.0} | {} | {} | {} |",
        if nginx_pid.is_some() { "nginx cache" } else { "node directly" },
        if nginx_pid.is_some() { format!("{nginx_cpu:.1}") } else { "-".into() },
        finite_or(p50, 0, "-"),
        finite_or(p95, 0, "-"),
        total.errors
    );
    println!(
        "viewers-json: {{\"viewers\":{n},\"base\":\"{base}\",\"nodeRps\":{node_rps:.2},\"nodeCpuPct\":{node_cpu:.2},\"nginxCpuPct\":{nginx_cpu:.2},\"clientRps\":{client_rps:.1},\"ageP50Ms\":{},\"ageP95Ms\":{},\"parts\":{},\"errors\":{}}}",
        finite_or(p50, 1, "null"),
        finite_or(p95, 1, "null"),
        total.ages.len(),
        total.errors
    );
    Ok(())
}
