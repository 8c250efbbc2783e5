//! Two hls-face nodes behind one nginx, started by `deploy/cluster` as an operator would:
//! new sessions spread over the nodes through the one address (a full node passes the
//! socket on, a full cluster says `busy`), every later request of a session reaches its
//! node, a viewer link's requests are served from nginx's cache (one request per URL
//! reaches the node), and a node that dies ends only its own sessions.

mod common;

use anyhow::{bail, ensure, Context, Result};
use app::hls_path::{node_of, playlist_url, viewer_playlist};
use app::protocol::{ClientMsg, ErrorKind, ServerMsg};
use common::*;
use server::hls::playlist::LlPlaylist;
use server::hls::stream::Resource;
use std::time::{Duration, Instant};

/// `deploy/cluster` with one session per node; stopped (nginx and nodes) when dropped.
struct Cluster {
    child: tokio::process::Child,
    public: String,
    /// (name, pid, address) of each node.
    nodes: Vec<(String, i32, String)>,
}

impl Cluster {
    async fn start(nodes: usize) -> Result<Self> {
        Self::start_with(nodes, &[]).await
    }

    /// Like [`Cluster::start`], with more environment for `deploy/cluster` and its nodes.
    async fn start_with(nodes: usize, env: &[(&str, &str)]) -> Result<Self> {
        let prefix = tempdir("cluster")?;
        let public = free_addr()?;
        let addrs = (0..nodes)
            .map(|_| free_addr())
            .collect::<Result<Vec<_>>>()?;
        let child = tokio::process::Command::new(repo_root().join("deploy/cluster"))
            .arg(&public)
            .arg(&prefix)
            .args(&addrs)
            .env("HLS_FACE_BIN", env!("CARGO_BIN_EXE_hls-face"))
            .env("LEPTOS_SITE_ROOT", stub_site()?)
            // One session per node, so the second session must be passed on to the other
            // node and a third finds the cluster full. No CPU refusals: tests share cores.
            .env("HLS_FACE_LIMITS_MAX_SESSIONS", "1")
            .env("HLS_FACE_LIMITS_MAX_CPU_PERCENT", "100")
            .env("HLS_FACE_DETECTOR_KIND", "haar")
            // Waiting requests always wait for the one on its way (the default, 200 ms, lets
            // them go to the node when it takes longer, as it may on two busy cores).
            .env("LOCK_TIMEOUT", "10s")
            .env("RUST_LOG", "server=info,hls_face=info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .context("starting deploy/cluster")?;
        let mut cluster = Cluster {
            child,
            public,
            nodes: Vec::new(),
        };
        let listed = prefix.join("nodes");
        let deadline = Instant::now() + DEADLINE * 4;
        loop {
            if let Some(status) = cluster.child.try_wait()? {
                bail!("deploy/cluster exited: {status}");
            }
            let up = listed.exists()
                && http_get(&cluster.public, "/", &[])
                    .await
                    .is_ok_and(|r| r.status == 200);
            if up {
                break;
            }
            ensure!(Instant::now() < deadline, "the cluster never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for line in std::fs::read_to_string(&listed)?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            ensure!(f.len() == 3, "bad nodes line {line:?}");
            cluster
                .nodes
                .push((f[0].to_string(), f[1].parse()?, f[2].to_string()));
        }
        ensure!(
            cluster.nodes.len() == nodes,
            "nodes listed: {:?}",
            cluster.nodes
        );
        Ok(cluster)
    }

    /// (pid, address) of node `name`.
    fn node(&self, name: &str) -> Result<(i32, &str)> {
        self.nodes
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, pid, addr)| (*pid, addr.as_str()))
            .with_context(|| format!("no node {name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The value of counter `name` in a node's `/metrics` (0 if not yet counted).
async fn counter(node: &str, name: &str) -> Result<f64> {
    let text = String::from_utf8(http_get(node, "/metrics", &[]).await?.body)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// The playlist at `path` through the cluster, parsed.
async fn playlist(public: &str, path: &str) -> Result<(LlPlaylist, Response)> {
    let r = http_get(public, path, &[]).await?;
    ensure!(r.status == 200, "{path}: {}", r.status);
    let p = LlPlaylist::parse(&String::from_utf8_lossy(&r.body)).context("not a playlist")?;
    Ok((p, r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_nodes_viewers_hit_the_cache_and_a_dead_node_ends_only_its_own(
) -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let public = cluster.public.clone();

    // Two sessions through the one address land on different nodes: each node holds one,
    // so nginx passes the second socket on from the full node.
    let mut a = socket(&public).await?;
    let sa = a.start().await?;
    let (cookie_b, csrf_b) = browser_session(&public).await?;
    let mut b = socket_as(&public, &cookie_b, &csrf_b).await?;
    let sb = b.start().await?;
    let (na, nb) = (node_of(&sa.session_id), node_of(&sb.session_id));
    ensure!(
        na.is_some() && nb.is_some() && na != nb,
        "sessions {} and {} should be on two nodes",
        sa.session_id,
        sb.session_id
    );
    let (na, nb) = (na.unwrap_or_default(), nb.unwrap_or_default());
    let token = sa
        .viewer_url
        .strip_prefix("/watch/")
        .context("viewer url")?
        .to_string();
    ensure!(
        node_of(&token) == Some(na),
        "the viewer token names its node"
    );

    // A third session finds every node full: the typed `busy` (nginx's last try upgrades).
    let mut c = socket(&public).await?;
    c.send(&start_msg()).await?;
    match c.next().await? {
        Some(ServerMsg::Error {
            kind: ErrorKind::Busy,
            ..
        }) => {}
        other => bail!("a full cluster should say busy, said {other:?}"),
    }
    drop(c);

    // A streams its whole clip in the background (~7 s), so its stream keeps growing while
    // the viewer checks below run; B streams half now and the rest after A's node died.
    let clip = std::fs::read(media("face.webm"))?;
    let feeder = {
        let clip = clip.clone();
        tokio::spawn(async move {
            let sent = stream_bytes(&mut a, &clip, 30_000, 7).await;
            (a, sent)
        })
    };
    stream_bytes(&mut b, &clip[..clip.len() / 2], 30_000, 9).await?;
    b.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    let (p, _) = playlist(&public, &playlist_url(&sb.session_id)).await?;
    ensure!(p.is_ready(), "B's playlist through nginx");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = playlist(&public, &playlist_url(&sa.session_id))
            .await
            .is_ok_and(|(p, _)| p.is_ready());
        if ready {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "A's playlist never appeared through nginx"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The viewer link: the page from any node, the stream from A's node, through the cache.
    let page = http_get(&public, &sa.viewer_url, &[]).await?;
    ensure!(page.status == 200, "viewer page: {}", page.status);
    let (live, first) = playlist(&public, &viewer_playlist(&token)).await?;
    ensure!(
        first.header("cache-control") == Some("no-cache"),
        "the plain live playlist is not kept: {:?}",
        first.header("cache-control")
    );
    let hint = live.preload_hint.clone().context("no preload hint")?;
    let Some(Resource::Part(msn, part)) = Resource::parse(&hint) else {
        bail!("hint {hint}");
    };
    // Twenty viewers ask for the next part's playlist at once: one request reaches the node.
    let (_, node_a) = cluster.node(na)?;
    let before = counter(node_a, "hls_face_viewer_requests_total").await?;
    let blocking = format!(
        "{}?_HLS_msn={msn}&_HLS_part={part}",
        viewer_playlist(&token)
    );
    let answers =
        futures_util::future::join_all((0..20).map(|_| playlist(&public, &blocking))).await;
    for answer in answers {
        let (p, r) = answer?;
        let listed = p
            .segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .chain(p.growing.iter())
            .any(|x| x.uri == hint);
        ensure!(listed, "a blocking reload answered without {hint}");
        ensure!(
            r.header("cache-control") == Some("public, max-age=3"),
            "blocking reloads are shareable: {:?}",
            r.header("cache-control")
        );
    }
    let reached = counter(node_a, "hls_face_viewer_requests_total").await? - before;
    ensure!(
        reached == 1.0,
        "20 identical blocking reloads reached the node {reached} times (1 expected)"
    );
    let part_url = format!("/view/{token}/{hint}");
    let max_age: u64 = http_get(&public, &part_url, &[])
        .await?
        .header("cache-control")
        .and_then(|c| {
            c.split("max-age=")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(u64::MAX);
    let misses = {
        let mut misses = 0;
        for _ in 0..2 {
            let r = http_get(&public, &part_url, &[]).await?;
            ensure!(r.status == 200, "part {hint}: {}", r.status);
            if r.header("x-cache") != Some("HIT") {
                misses += 1;
            }
        }
        misses
    };
    ensure!(
        misses == 0,
        "a part is fetched from the node once ({misses} misses after the first)"
    );
    // Every viewer page asks each second whether the session runs: nginx answers for a second.
    let status = format!("/view/{token}/status");
    let (first, second) = (
        http_get(&public, &status, &[]).await?,
        http_get(&public, &status, &[]).await?,
    );
    ensure!(
        first.status == 200 && second.status == 200 && second.header("x-cache") == Some("HIT"),
        "the viewer status through nginx: {} then {} ({:?})",
        first.status,
        second.status,
        second.header("x-cache")
    );

    let (mut a, sent) = feeder.await?;
    sent?;
    // A's node dies: A's socket closes, its stream and viewer link are gone...
    let (pid_a, _) = cluster.node(na)?;
    // SAFETY: kill only sends a signal to a node this test's cluster started.
    unsafe {
        libc::kill(pid_a, libc::SIGKILL);
    }
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match a.next().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    ensure!(closed.is_ok(), "A's socket outlived its node");
    let gone = eventually(DEADLINE, || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{public}{}", playlist_url(&sa.session_id)))
            .output()
            .is_ok_and(|o| o.stdout == b"404")
    })
    .await;
    ensure!(gone, "a dead node's session should be 404 through nginx");
    // Its viewer link's media, cached at nginx, goes with the live window (not a minute
    // later): the part fetched above is 404 within its max-age.
    ensure!(max_age <= 20, "a viewer's part is cached for {max_age} s");
    let expired = eventually(Duration::from_secs(max_age + 5), || {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{public}{part_url}"))
            .output()
            .is_ok_and(|o| o.stdout == b"404")
    })
    .await;
    ensure!(
        expired,
        "a dead session's viewer part is still served after {max_age} s"
    );

    // ...while B's node goes on: more frames in, more segments out, a recording at the end.
    let segments_before = b
        .wait_stats("B's segments", |s| s.segments > 0)
        .await?
        .segments;
    stream_bytes(&mut b, &clip[clip.len() / 2..], 30_000, 9).await?;
    b.wait_stats("B going on after A's node died", |s| {
        s.segments > segments_before
    })
    .await?;
    let (p, _) = playlist(&public, &playlist_url(&sb.session_id)).await?;
    ensure!(!p.ended && p.is_ready(), "B's stream through nginx");

    // B's network drops; the page reconnects through nginx to the node named in its socket
    // URL (the page takes it from the session id) and resumes the same session.
    drop(b);
    let resume_url = format!("ws://{public}/socket?csrf_token={csrf_b}&node={nb}");
    let origin = format!("http://{public}");
    let headers = [("Cookie", cookie_b.as_str()), ("Origin", origin.as_str())];
    let to_dead_node = format!("ws://{public}/socket?csrf_token={csrf_b}&node={na}");
    ensure!(
        refused_status(&to_dead_node, &headers).await == Some(502),
        "a socket naming a dead node must not reach another node"
    );
    let deadline = Instant::now() + DEADLINE;
    let mut b = loop {
        let mut again = connect(&resume_url, &headers).await?;
        again
            .send(&app::protocol::ClientMsg::Resume {
                token: sb.resume_token.clone(),
            })
            .await?;
        match again.next().await? {
            Some(ServerMsg::Resumed { .. }) => break again,
            // The node has not noticed the drop yet: the session is not parked.
            Some(ServerMsg::Error {
                kind: ErrorKind::ResumeFailed,
                ..
            }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => bail!("resuming B through nginx: {other:?}"),
        }
    };
    let ended = {
        b.send(&app::protocol::ClientMsg::Stop).await?;
        b.wait_for("recording", |m| {
            matches!(m, ServerMsg::RecordingReady { .. })
        })
        .await?
    };
    let ServerMsg::RecordingReady { url, .. } = ended else {
        bail!("no recording");
    };
    let recording = http_get(&public, &url, &[]).await?;
    ensure!(
        recording.status == 200 && recording.header("content-type") == Some("video/mp4"),
        "B's recording through nginx: {}",
        recording.status
    );
    // The other node still takes new sessions through the one address.
    let mut d = socket(&public)
        .await
        .context("a socket through nginx after a node died")?;
    d.send(&start_msg()).await?;
    match d.next().await? {
        Some(ServerMsg::Started { session_id, .. }) => {
            ensure!(
                node_of(&session_id) == Some(nb),
                "{session_id} on a dead node"
            )
        }
        // B's place frees when its session is retired; until then the cluster is full.
        Some(ServerMsg::Error {
            kind: ErrorKind::Busy,
            ..
        }) => {}
        other => bail!("a new session after the death of a node: {other:?}"),
    }
    drop(cluster);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_is_busy_not_gone_and_one_client_is_held_to_its_share() -> Result<()> {
    let cluster = Cluster::start_with(
        1,
        &[
            // A node with few connections, so a test can fill them.
            ("HLS_FACE_LIMITS_MAX_SOCKETS", "4"),
            ("HLS_FACE_LIMITS_MAX_CONNECTIONS", "10"),
            ("CONN_PER_CLIENT", "6"),
            ("REQ_RATE", "20r/s"),
            ("REQ_BURST", "20"),
        ],
    )
    .await?;
    let public = cluster.public.clone();
    let (_, node) = cluster.node("n1")?;
    let node = node.to_string();

    // The owner's session, through nginx.
    let mut owner = socket(&public).await?;
    let started = owner.start().await?;
    stream_file(&mut owner, &media("face.webm"), 30_000, 20).await?;
    owner
        .wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    // (Not fetched yet: nginx would keep that connection to the node open and use it.)
    let own = app::hls_path::playlist_url(&started.session_id);

    // The node's connections taken by something else: its playlist is busy (503, try
    // again), never "ended" (404) while the session runs.
    let mut held = Vec::new();
    while held.len() < 10 {
        held.push(tokio::net::TcpStream::connect(&node).await?);
    }
    ensure!(
        http_get(&node, "/", &[]).await?.status == 503,
        "the node itself says busy"
    );
    let busy = http_get(&public, &own, &[]).await?;
    ensure!(
        busy.status == 503,
        "a full node's session playlist: {} (404 would say it ended) {:?}",
        busy.status,
        busy.headers
    );
    drop(held);
    let live = loop {
        let again = http_get(&public, &own, &[]).await?;
        if again.status == 200 {
            break LlPlaylist::parse(&String::from_utf8_lossy(&again.body)).context("playlist")?;
        }
        ensure!(
            again.status == 503,
            "while the node frees up: {}",
            again.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // What one client holds at once is capped at nginx (429): blocking reloads held for
    // the segment after next, with random extra parameters that all share one cache entry.
    let ahead = live.segments_produced() + 1;
    let held = futures_util::future::join_all((0..12).map(|i| {
        let public = public.clone();
        let blocking = format!("{own}?_HLS_msn={ahead}&n={i}");
        async move { http_get(&public, &blocking, &[]).await }
    }))
    .await;
    let over = held
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|r| r.status == 429))
        .count();
    ensure!(
        over >= 6,
        "12 held reloads from one client, {over} limited (6 connections each)"
    );

    // So are its requests a second.
    let answers =
        futures_util::future::join_all((0..120).map(|_| http_get(&public, "/", &[]))).await;
    let limited = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|r| r.status == 429))
        .count();
    ensure!(
        limited >= 60,
        "{limited} of 120 quick requests limited at nginx"
    );
    // The owner's session went on throughout.
    owner.send(&ClientMsg::Stop).await?;
    owner
        .wait_for("ended", |m| matches!(m, ServerMsg::Ended { .. }))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_runs_the_channels_assigned_to_it_and_nginx_routes_them_there() -> Result<()> {
    // One settings file for the whole cluster, as an operator keeps it: a channel per node.
    let dir = tempdir("cluster-channels")?;
    let clip = media("real-face-h264.mkv");
    let settings = dir.join("cluster.toml");
    let mut tables = String::new();
    for (name, node) in [("north", "n1"), ("south", "n2")] {
        tables += &format!(
            "[[channel]]\nname = \"{name}\"\nsource = \"file:{}\"\nnode = \"{node}\"\n\n",
            clip.display()
        );
    }
    std::fs::write(&settings, tables)?;
    let model = repo_root().join("models/centerface.onnx");
    let cluster = Cluster::start_with(
        2,
        &[
            ("HLS_FACE_CONFIG", settings.to_str().unwrap_or_default()),
            (
                "HLS_FACE_DETECTOR_MODEL",
                model.to_str().unwrap_or_default(),
            ),
            // A channel takes a place like a session.
            ("HLS_FACE_LIMITS_MAX_SESSIONS", "2"),
        ],
    )
    .await?;
    let public = cluster.public.clone();
    for (name, node, other) in [("north", "n1", "n2"), ("south", "n2", "n1")] {
        // Through the one address, the channel is found live, on its own node.
        let deadline = Instant::now() + DEADLINE;
        let run = loop {
            let r = http_get(&public, &format!("/channel/{name}/status"), &[]).await?;
            if r.status == 200 {
                let status: serde_json::Value = serde_json::from_slice(&r.body)?;
                if status["state"] == "live" {
                    break status["run"].as_str().unwrap_or_default().to_string();
                }
            }
            ensure!(Instant::now() < deadline, "{name} never went live");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            run.starts_with(&format!("{node}-")),
            "{name} should run on {node}: {run}"
        );
        // The other node leaves it alone.
        let (_, other_addr) = cluster.node(other)?;
        let there = http_get(other_addr, &format!("/channel/{name}/status"), &[]).await?;
        ensure!(
            there.status == 404,
            "{other} runs {name} too: {}",
            there.status
        );
        // Every node's list names every channel, another node's as such (the page then
        // reads its state through the proxy).
        for (addr, elsewhere) in [(other_addr, true), (cluster.node(node)?.1, false)] {
            let list = http_get(addr, "/channels.json", &[]).await?;
            let list: Vec<app::channels::ChannelInfo> = serde_json::from_slice(&list.body)?;
            let entry = list.iter().find(|i| i.name == name).context("not listed")?;
            ensure!(
                entry.elsewhere == elsewhere && entry.node.as_deref() == Some(node),
                "{name} listed as {entry:?}"
            );
        }
        // The stable address leads a player to the run, which nginx fetches from its node
        // and caches like a viewer link.
        let redirect = http_get(&public, &format!("/channel/{name}/playlist.m3u8"), &[]).await?;
        ensure!(
            redirect.status == 302,
            "stable address: {}",
            redirect.status
        );
        let location = redirect.header("location").context("location")?.to_string();
        ensure!(location.contains(&run), "{location} is not run {run}");
        let deadline = Instant::now() + DEADLINE;
        let segment = loop {
            let (list, _) = playlist(&public, &location).await?;
            if let Some(segment) = list.segments.first() {
                break segment.uri.clone();
            }
            ensure!(Instant::now() < deadline, "{name}: no segment");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let base = location.trim_end_matches("playlist.m3u8");
        let mut bytes = Vec::new();
        for file in ["init.mp4", segment.as_str()] {
            let first = http_get(&public, &format!("{base}{file}"), &[]).await?;
            ensure!(first.status == 200, "{name} {file}: {}", first.status);
            let again = http_get(&public, &format!("{base}{file}"), &[]).await?;
            ensure!(
                again.header("x-cache") == Some("HIT"),
                "{name} {file} is not served from the cache: {:?}",
                again.header("x-cache")
            );
            bytes.extend(first.body);
        }
        let direct = http_get(other_addr, &format!("{base}init.mp4"), &[]).await?;
        ensure!(direct.status == 404, "{other} has {name}'s stream");
        // Privacy (the channel default): no face in the served frames.
        let frames = decode_frames(&bytes, 640, 480)?;
        ensure!(!frames.is_empty(), "{name}: no frame decoded");
        ensure!(
            faces_found(&frames)?.is_empty(),
            "{name}: a face is visible"
        );
    }
    Ok(())
}
