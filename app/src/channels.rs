//! Camera channels on the page: the Channels list (`/channels`) and one channel's player
//! (`/channel/<name>`), and the [`ChannelInfo`] both read from the server as JSON
//! (`/channels.json`, `/channel/<name>/status`).

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use serde::{Deserialize, Serialize};

/// Where a channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    /// Connecting to the camera (RTSP) or starting the file.
    Connecting,
    /// Waiting for the publisher to push (SRT).
    Waiting,
    /// Its processed stream plays.
    Live,
    /// The source is down; `why` says what happened, and it is retried.
    Down,
    /// The server is shutting down.
    Stopped,
}

impl ChannelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Connecting => "connecting",
            ChannelState::Waiting => "waiting",
            ChannelState::Live => "live",
            ChannelState::Down => "down",
            ChannelState::Stopped => "stopped",
        }
    }
}

/// One channel as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub name: String,
    /// "rtsp", "srt" or "file".
    pub kind: String,
    pub state: ChannelState,
    /// When the state began (Unix milliseconds).
    pub since_ms: u64,
    /// Why it is down, in words (`None` when nothing is wrong).
    pub why: Option<String>,
    /// The same as a stable label (`unreachable`, `credentials`, `key-refused`, …).
    pub why_label: Option<String>,
    /// When a publisher was last refused for a wrong key (Unix milliseconds).
    pub refused_ms: Option<u64>,
    /// Faces pixelated (true) or boxed.
    pub privacy: bool,
    /// Output frames per second, over the last second.
    pub fps: f32,
    /// Addresses that fetched the stream in the last 10 s (a cache in front counts once).
    pub viewers: u32,
    /// The running stream's id: its playlist is `/channel/<name>/<run>/playlist.m3u8`.
    pub run: Option<String>,
    /// Whether a thumbnail was taken (the last one stays while the source is down).
    pub thumbnail: bool,
    pub width: u32,
    pub height: u32,
    /// The cluster node that runs it (`None`: every server reading the settings).
    #[serde(default)]
    pub node: Option<String>,
    /// Listed by a node that does not run it: only its settings are known here, and the
    /// page reads its state from `/channel/<name>/status` (which the proxy sends to the
    /// node that runs it).
    #[serde(default)]
    pub elsewhere: bool,
}

/// The JSON list of every channel.
pub const CHANNELS_JSON: &str = "/channels.json";

/// The page of channel `name`.
pub fn channel_page(name: &str) -> String {
    format!("/channel/{name}")
}

/// The JSON state of channel `name`.
pub fn channel_status(name: &str) -> String {
    format!("/channel/{name}/status")
}

/// The stable playlist address of channel `name` (it redirects to the running stream's).
pub fn channel_playlist(name: &str) -> String {
    format!("/channel/{name}/{}", crate::hls_path::PLAYLIST)
}

/// The playlist of one run of channel `name`.
pub fn run_playlist(name: &str, run: &str) -> String {
    format!("/channel/{name}/{run}/{}", crate::hls_path::PLAYLIST)
}

/// The latest processed frame of channel `name`, as JPEG.
pub fn channel_thumbnail(name: &str) -> String {
    format!("/channel/{name}/thumbnail.jpg")
}

/// The words for a channel's state: "Live", "Connecting to the camera…",
/// "Source down since 12:03 — camera unreachable".
pub fn describe(info: &ChannelInfo, since: &str) -> String {
    match info.state {
        ChannelState::Live => match &info.why {
            Some(why) => format!("Live, but {why}"),
            None => "Live".into(),
        },
        ChannelState::Connecting => "Connecting to the source…".into(),
        ChannelState::Waiting => match &info.why {
            Some(why) => format!("Waiting for the publisher (last attempt: {why})"),
            None => "Waiting for the publisher to start streaming".into(),
        },
        ChannelState::Down => format!(
            "Source down since {since} — {}; retrying",
            info.why.as_deref().unwrap_or("unknown reason")
        ),
        ChannelState::Stopped => "Stopped (the server is shutting down)".into(),
    }
}

/// `HH:MM` of a Unix time in the browser's zone (the server renders UTC).
pub fn clock(ms: u64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let minutes = ms / 60_000;
        format!("{:02}:{:02}", (minutes / 60) % 24, minutes % 60)
    }
}

/// One channel's card on the Channels page.
#[component]
fn ChannelCard(info: ChannelInfo, refresh: u32) -> impl IntoView {
    let href = channel_page(&info.name);
    let thumb = format!("{}?n={refresh}", channel_thumbnail(&info.name));
    let state = info.state.as_str();
    let words = describe(&info, &clock(info.since_ms));
    let alt = format!("Latest processed frame of channel {}", info.name);
    let faces = if info.privacy {
        "faces hidden"
    } else {
        "faces boxed"
    };
    let stats = format!(
        "{:.0} fps · {} viewer{} · {faces}",
        info.fps,
        info.viewers,
        if info.viewers == 1 { "" } else { "s" }
    );
    let why = info.why_label.clone().unwrap_or_default();
    let picture = if info.thumbnail {
        view! { <img src=thumb alt=alt width="320" height="240" loading="lazy"/> }.into_any()
    } else {
        view! { <span class="no-picture">"No picture yet"</span> }.into_any()
    };
    view! {
        <li class="channel-card" data-testid="channel-card" data-name=info.name.clone() data-state=state data-why=why>
            <a href=href.clone() tabindex="-1" aria-hidden="true">{picture}</a>
            <h2><a href=href>{info.name.clone()}</a></h2>
            <p class="status" data-testid="channel-state">{words}</p>
            <p class="stats">{stats}</p>
        </li>
    }
}

/// `/channels`: every channel with its state, a recent frame, its rate and viewers.
#[component]
pub fn ChannelList() -> impl IntoView {
    let channels = RwSignal::new(None::<Vec<ChannelInfo>>);
    let refresh = RwSignal::new(0u32);
    let hydrated = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        hydrated.set(true);
        let load = move || {
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(text) = crate::media::fetch_text(CHANNELS_JSON).await {
                    if let Ok(mut list) = serde_json::from_str::<Vec<ChannelInfo>>(&text) {
                        // In a cluster, a channel another node runs is read from its own
                        // status (the proxy routes it to that node).
                        for info in list.iter_mut().filter(|i| i.elsewhere) {
                            let status =
                                crate::media::fetch_text(&channel_status(&info.name)).await;
                            if let Some(now) =
                                status.and_then(|t| serde_json::from_str::<ChannelInfo>(&t).ok())
                            {
                                *info = now;
                            }
                        }
                        channels.set(Some(list));
                        refresh.update(|n| *n += 1);
                    }
                }
            });
        };
        load();
        if let Ok(handle) = set_interval_with_handle(load, std::time::Duration::from_secs(3)) {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <main class="studio channels" data-hydrated=move || hydrated.get().to_string()>
            <header>
                <h1>"hls-face"</h1>
                <p class="tagline">"Camera channels: faces found and hidden on the server, live to any number of viewers."</p>
            </header>
            {move || match channels.get() {
                None => view! { <p class="status" role="status">"Loading channels…"</p> }.into_any(),
                Some(list) if list.is_empty() => view! {
                    <p class="status" role="status">
                        "No channels are configured. An operator adds them as [[channel]] tables in the server's settings."
                    </p>
                }.into_any(),
                Some(list) => {
                    let n = refresh.get_untracked();
                    view! {
                        <ul class="channel-list" data-testid="channel-list">
                            {list.into_iter().map(|info| view! { <ChannelCard info refresh=n/> }).collect_view()}
                        </ul>
                    }.into_any()
                }
            }}
            <p><a href="/">"Start your own camera session"</a></p>
        </main>
    }
}

/// `/channel/<name>`: the channel's processed stream, with its state and how far behind
/// live the picture is.
#[component]
pub fn ChannelPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let info = RwSignal::new(None::<ChannelInfo>);
    let missing = RwSignal::new(false);
    let behind = RwSignal::new(None::<f64>);
    let hydrated = RwSignal::new(false);
    let video = NodeRef::<leptos::html::Video>::new();
    #[cfg(feature = "hydrate")]
    {
        let player = StoredValue::new_local(None::<(String, crate::media::Player)>);
        Effect::new(move |_| {
            hydrated.set(true);
            let name = params.read_untracked().get("name").unwrap_or_default();
            let poll = move || {
                let name = name.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let text = crate::media::fetch_text(&channel_status(&name)).await;
                    let Some(now) = text.and_then(|t| serde_json::from_str::<ChannelInfo>(&t).ok())
                    else {
                        missing.set(true);
                        return;
                    };
                    missing.set(false);
                    let run = now.run.clone().filter(|_| now.state == ChannelState::Live);
                    let playing = player.with_value(|p| p.as_ref().map(|(r, _)| r.clone()));
                    if run != playing {
                        player.set_value(None);
                        if let (Some(run), Some(element)) = (run, video.get_untracked()) {
                            let url = run_playlist(&name, &run);
                            if let Ok(p) = crate::media::play(element, &url, || {}, || {}) {
                                player.set_value(Some((run, p)));
                            }
                        }
                    }
                    behind
                        .set(player.with_value(|p| p.as_ref().and_then(|(_, p)| p.behind_live())));
                    info.set(Some(now));
                });
            };
            poll();
            if let Ok(handle) = set_interval_with_handle(poll, std::time::Duration::from_secs(2)) {
                on_cleanup(move || handle.clear());
            }
        });
    }
    let state = move || info.get().map_or("loading", |i| i.state.as_str());
    let words = move || {
        if missing.get() {
            return "There is no channel of that name.".to_string();
        }
        match info.get() {
            Some(i) => describe(&i, &clock(i.since_ms)),
            None => "Loading the channel…".into(),
        }
    };
    let stats = move || {
        info.get().map(|i| {
            let lag = behind
                .get()
                .filter(|b| (0.0..60.0).contains(b))
                .map_or("—".to_string(), |b| format!("{b:.2} s"));
            format!(
                "{:.0} fps · {} viewer{} · behind live {lag}",
                i.fps,
                i.viewers,
                if i.viewers == 1 { "" } else { "s" }
            )
        })
    };
    view! {
        <main class="studio viewer" data-hydrated=move || hydrated.get().to_string()>
            <header>
                <h1>"hls-face"</h1>
                <p class="tagline">"Channel " <strong>{name}</strong> " (faces are hidden on the server)."</p>
            </header>
            <section class="videos">
                <figure>
                    <video
                        data-testid="channel-video"
                        aria-label="Live processed stream of the channel"
                        node_ref=video
                        autoplay=true
                        muted=true
                        playsinline=true
                        controls=true
                    ></video>
                    <figcaption>"Processed stream"</figcaption>
                </figure>
            </section>
            <p data-testid="channel-status" class="status" role="status" aria-live="polite" data-state=state>
                {words}
            </p>
            <p class="stats" data-testid="channel-stats">{stats}</p>
            <p><a href="/channels">"All channels"</a></p>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: ChannelState, why: Option<&str>) -> ChannelInfo {
        ChannelInfo {
            name: "door".into(),
            kind: "rtsp".into(),
            state,
            since_ms: 0,
            why: why.map(str::to_string),
            why_label: None,
            refused_ms: None,
            privacy: true,
            fps: 30.0,
            viewers: 2,
            run: None,
            thumbnail: true,
            width: 640,
            height: 480,
            node: None,
            elsewhere: false,
        }
    }

    #[test]
    fn states_read_as_the_issue_words_them() {
        assert_eq!(
            describe(
                &info(ChannelState::Down, Some("camera unreachable")),
                "12:03"
            ),
            "Source down since 12:03 — camera unreachable; retrying"
        );
        assert_eq!(describe(&info(ChannelState::Live, None), "x"), "Live");
        assert_eq!(
            describe(
                &info(
                    ChannelState::Live,
                    Some("no video from the source right now")
                ),
                "x"
            ),
            "Live, but no video from the source right now"
        );
        assert!(
            describe(&info(ChannelState::Waiting, Some("key refused")), "x")
                .contains("key refused")
        );
        assert_eq!(clock(12 * 3_600_000 + 3 * 60_000), "12:03");
        let json = serde_json::to_string(&info(ChannelState::Waiting, None)).unwrap();
        assert!(json.contains("\"state\":\"waiting\""), "{json}");
    }

    #[test]
    fn addresses_are_under_the_channel() {
        assert_eq!(channel_playlist("door"), "/channel/door/playlist.m3u8");
        assert_eq!(run_playlist("door", "ab"), "/channel/door/ab/playlist.m3u8");
        assert_eq!(channel_thumbnail("door"), "/channel/door/thumbnail.jpg");
    }
}
