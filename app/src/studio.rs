//! The studio page: camera preview, start/stop, the processed HLS player, status and stats.
//!
//! The view and its state live here and render on both sides; everything that touches
//! browser media is delegated to [`crate::media`], which exists only in the hydrated build.

use crate::protocol::{Setting, Stats};
use crate::ui::{LiveEvent, Phase, Ui};
use leptos::prelude::*;

/// The one page of the app.
#[component]
pub fn Studio() -> impl IntoView {
    let ui = Ui::new();
    let preview = NodeRef::<leptos::html::Video>::new();
    let preview_view = NodeRef::<leptos::html::Canvas>::new();
    let output = NodeRef::<leptos::html::Video>::new();

    #[cfg(feature = "hydrate")]
    let controller = crate::media::Controller::new(ui, preview, preview_view, output);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        ui.event(LiveEvent::Hydrated);
        controller.open_camera();
        controller.load_kept();
        controller.load_auth();
    });

    let start_button = NodeRef::<leptos::html::Button>::new();
    let stop_button = NodeRef::<leptos::html::Button>::new();
    let status_line = NodeRef::<leptos::html::P>::new();
    // A button that disables itself would drop focus to the page: it moves to the control
    // that now makes sense (Stop after Start; the status, which says what happens, after Stop).
    let on_start = move |_| {
        #[cfg(feature = "hydrate")]
        {
            controller.start();
            request_animation_frame(move || {
                if let Some(stop) = stop_button.get_untracked() {
                    let _ = stop.focus();
                }
            });
        }
    };
    let on_stop = move |_| {
        #[cfg(feature = "hydrate")]
        {
            controller.stop();
            request_animation_frame(move || {
                if let Some(status) = status_line.get_untracked() {
                    let _ = status.focus();
                }
            });
        }
    };
    let on_privacy = move |ev: leptos::ev::Event| {
        ui.event(LiveEvent::PrivacyChanged(event_target_checked(&ev)));
        #[cfg(feature = "hydrate")]
        controller.set_privacy(ui.privacy.get_untracked());
    };
    let on_detector = move |setting: Setting, value: f64| {
        ui.event(LiveEvent::DetectorChanged(setting, value));
        #[cfg(feature = "hydrate")]
        controller.set_detector(ui.detector.get_untracked());
    };
    let on_sign_in = move |secret: String| {
        #[cfg(feature = "hydrate")]
        controller.sign_in(secret);
        #[cfg(not(feature = "hydrate"))]
        let _ = secret;
    };
    let on_copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(url) = ui.viewer_url.get_untracked() {
            controller.copy(url);
        }
    };

    view! {
        <main class="studio" data-hydrated=move || ui.hydrated.get().to_string()>
            <header>
                <h1>"hls-face"</h1>
                <p class="tagline">
                    "Your camera → server-side face detection → HLS, back in this page."
                </p>
            </header>
            <Videos ui=ui preview=preview preview_view=preview_view output=output />
            <Controls
                ui=ui
                on_start=on_start
                on_stop=on_stop
                on_privacy=on_privacy
                start_button=start_button
                stop_button=stop_button
                status_line=status_line
            />
            <SignInForm ui=ui on_sign_in=on_sign_in />
            <Share ui=ui on_copy=on_copy />
            <DetectorControls ui=ui on_change=on_detector />
            <StatsPanel ui=ui />
        </main>
    }
}

/// The camera preview (a video, then the canvas it is painted into) and the processed
/// stream's player.
#[component]
fn Videos(
    ui: Ui,
    preview: NodeRef<leptos::html::Video>,
    preview_view: NodeRef<leptos::html::Canvas>,
    output: NodeRef<leptos::html::Video>,
) -> impl IntoView {
    view! {
    <section class="videos">
        <figure>
            <video
                data-testid="preview"
                aria-label="Your camera"
                node_ref=preview
                autoplay=true
                muted=true
                playsinline=true
            ></video>
            // The camera painted frame by frame once it plays (see preview_mode).
            <canvas
                data-testid="preview-view"
                role="img"
                aria-label="Your camera"
                node_ref=preview_view
                hidden=true
            ></canvas>
            <figcaption>"Camera"</figcaption>
        </figure>
        <figure>
            <video
                data-testid="output"
                aria-label="Processed stream, as the server sends it back"
                node_ref=output
                data-playlist=move || ui.playlist.get().unwrap_or_default()
                autoplay=true
                muted=true
                playsinline=true
                controls=true
            ></video>
            <figcaption>"Processed stream"</figcaption>
        </figure>
    </section>
    }
}

/// Start, Stop, the privacy switch and the status line.
#[component]
fn Controls(
    ui: Ui,
    on_start: impl Fn(leptos::ev::MouseEvent) + 'static,
    on_stop: impl Fn(leptos::ev::MouseEvent) + 'static,
    on_privacy: impl Fn(leptos::ev::Event) + 'static,
    start_button: NodeRef<leptos::html::Button>,
    stop_button: NodeRef<leptos::html::Button>,
    status_line: NodeRef<leptos::html::P>,
) -> impl IntoView {
    // After an error Start tries again (it reopens the camera), unless that cannot help:
    // then it is disabled and the reason shows beside it.
    let must_sign_in = move || ui.auth.with(|a| a.asks.is_some() && !a.signed_in);
    let can_start = move || {
        let phase = ui.phase.get();
        if phase.is_active() || must_sign_in() {
            return false;
        }
        ui.camera_ready.get()
            || (phase == Phase::Error && ui.camera_problem.get().is_none_or(|p| p.start_retries()))
    };
    let start_reason = move || {
        if must_sign_in() && !ui.phase.get().is_active() {
            return Some("Start needs you to sign in first (below): this server lets only people it knows stream.");
        }
        (!ui.camera_ready.get())
            .then(|| ui.camera_problem.get().and_then(|p| p.start_reason()))
            .flatten()
    };
    let can_stop = move || ui.phase.get().is_active();
    view! {
    <div class="controls">
        <button
            data-testid="start"
            node_ref=start_button
            on:click=on_start
            disabled=move || !can_start()
            aria-describedby=move || start_reason().map(|_| "start-reason")
        >
            "Start"
        </button>
        <button
            data-testid="stop"
            node_ref=stop_button
            on:click=on_stop
            disabled=move || !can_stop()
        >
            "Stop"
        </button>
        <label class="privacy">
            <input
                type="checkbox"
                data-testid="privacy"
                prop:checked=move || ui.privacy.get()
                on:change=on_privacy
            />
            "Blur faces"
        </label>
        <p
            data-testid="status"
            class="status"
            tabindex="-1"
            node_ref=status_line
            role="status"
            aria-live="polite"
            data-state=move || ui.phase.get().as_str()
            data-link=move || ui.link.get().as_str()
        >
            {move || ui.message.get()}
        </p>
        <p
            data-testid="start-reason"
            id="start-reason"
            class="start-reason"
            hidden=move || start_reason().is_none()
        >
            {move || start_reason().unwrap_or_default()}
        </p>
    </div>
    }
}

/// Asks for the server's passphrase (or an access token) in plain words, when the server
/// asks who streams and this browser has not signed in.
#[component]
fn SignInForm(ui: Ui, on_sign_in: impl Fn(String) + Copy + Send + Sync + 'static) -> impl IntoView {
    let secret = NodeRef::<leptos::html::Input>::new();
    let token = move || {
        ui.auth
            .with(|a| a.asks == Some(crate::protocol::AuthAsk::Token))
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(input) = secret.get_untracked() {
            let value = input.value();
            if !value.is_empty() {
                on_sign_in(value);
            }
        }
    };
    view! {
        <Show when=move || ui.auth.with(|a| a.asks.is_some() && !a.signed_in)>
            <form class="sign-in" data-testid="sign-in" on:submit=on_submit>
                <p>
                    {move || {
                        if token() {
                            "This server lets only people with an access token stream. Paste the token its operator gave you."
                        } else {
                            "This server lets only people who know its passphrase stream. Ask its operator for it."
                        }
                    }}
                </p>
                <label>
                    {move || if token() { "Access token" } else { "Passphrase" }}
                    " "
                    <input
                        type="password"
                        data-testid="secret"
                        autocomplete="current-password"
                        required=true
                        node_ref=secret
                    />
                </label>
                " "
                <button type="submit" data-testid="sign-in-button">
                    "Sign in"
                </button>
                <p data-testid="sign-in-error" class="sign-in-error" role="alert">
                    {move || ui.sign_in_error.get()}
                </p>
            </form>
        </Show>
    }
    .into_any()
}

/// The running session's viewer link, and the stopped session's download.
#[component]
fn Share(
    ui: Ui,
    on_copy: impl Fn(leptos::ev::MouseEvent) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
    <section class="share">
        {move || {
            ui.viewer_url
                .get()
                .map(|url| {
                    view! {
                        <p class="viewer-link">
                            "Viewer link (watch-only, ends with the session): "
                            <a
                                data-testid="viewer-link"
                                href=url.clone()
                                target="_blank"
                                rel="noopener noreferrer"
                            >
                                {url.clone()}
                            </a>
                            " "
                            <button data-testid="copy-viewer-link" on:click=on_copy>
                                {move || if ui.copied.get() { "Copied ✓" } else { "Copy" }}
                            </button>
                        </p>
                    }
                })
        }}
        {move || {
            ui.recording
                .get()
                .map(|(url, secs)| {
                    view! {
                        <p class="recording">
                            <a
                                data-testid="download"
                                class="download"
                                href=url
                                download="hls-face-recording.mp4"
                            >
                                "Download recording (MP4)"
                            </a>
                            <span class="notice">
                                {format!(" kept for {} min", secs.div_ceil(60))}
                            </span>
                        </p>
                    }
                })
        }}
        <KeptList ui=ui />
    </section>
    }
    .into_any()
}

/// Recordings the server keeps for this browser from earlier sessions: after a reload, a
/// closed tab or a server restart, they are still offered here until they expire.
#[component]
fn KeptList(ui: Ui) -> impl IntoView {
    // The running or just-stopped session's own recording shows above, not twice.
    let earlier = move || {
        let own = ui
            .recording
            .with(|r| r.as_ref().map(|(url, _)| url.clone()));
        ui.kept.with(|k| {
            k.recordings
                .iter()
                .filter(|r| Some(&r.url) != own.as_ref())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let finishing = move || ui.kept.with(|k| k.finishing) > 0 && !ui.phase.get().is_active();
    view! {
        <Show when=move || !earlier().is_empty() || finishing()>
            <div class="kept" data-testid="kept">
                <p>"Recordings kept for this browser from earlier sessions:"</p>
                <ul>
                    {move || {
                        earlier()
                            .into_iter()
                            .map(|r| {
                                view! {
                                    <li>
                                        <a
                                            data-testid="kept-download"
                                            href=r.url.clone()
                                            download="hls-face-recording.mp4"
                                        >
                                            "Download recording (MP4)"
                                        </a>
                                        <span class="notice">
                                            {format!(
                                                " kept for {} more min",
                                                r.available_secs.div_ceil(60),
                                            )}
                                        </span>
                                    </li>
                                }
                            })
                            .collect_view()
                    }}
                </ul>
                <p class="notice" data-testid="kept-finishing" hidden=move || !finishing()>
                    "A session of this browser is still being finished (another tab, or a \
                     page left a moment ago): its recording shows here when it is ready."
                </p>
            </div>
        </Show>
    }
}

/// The live figures while a session runs; its summary once it has ended.
#[component]
fn StatsPanel(ui: Ui) -> impl IntoView {
    view! {
        <Show
            when=move || ui.summary.with(Option::is_some) && !ui.phase.get().is_active()
            fallback=move || view! { <LiveStats ui=ui /> }
        >
            <SummaryPanel ui=ui />
        </Show>
        <Chart ui=ui />
    }
    .into_any()
}

/// What the ended session amounted to, instead of its last live figures.
#[component]
fn SummaryPanel(ui: Ui) -> impl IntoView {
    let summary = move || ui.summary.get().unwrap_or_default();
    view! {
        <section class="summary" data-testid="summary" aria-label="Session summary">
            <h2>"Session summary"</h2>
            <dl class="stats">
                <div>
                    <dt>"length"</dt>
                    <dd data-stat="length">{move || summary().length()}</dd>
                </div>
                <div>
                    <dt>"frames processed"</dt>
                    <dd data-stat="frames">{move || summary().frames.to_string()}</dd>
                    <dd class="hint">
                        {move || format!("{:.1} frames a second on average.", summary().mean_fps())}
                    </dd>
                </div>
                <div>
                    <dt>"frames dropped"</dt>
                    <dd data-stat="dropped">{move || summary().dropped.to_string()}</dd>
                </div>
                <div>
                    <dt>"most faces in a frame"</dt>
                    <dd data-stat="most-faces">{move || summary().most_faces.to_string()}</dd>
                </div>
                <div>
                    <dt>"behind live, on average"</dt>
                    <dd data-stat="mean-behind">
                        {move || match summary().mean_behind {
                            Some(s) => format!("{s:.2} s"),
                            None => "—".to_string(),
                        }}
                    </dd>
                </div>
            </dl>
        </section>
    }
}

/// Frame rate and behind-live over the last minute, drawn.
#[component]
fn Chart(ui: Ui) -> impl IntoView {
    const W: f64 = 238.0;
    const H: f64 = 70.0;
    view! {
        <figure class="chart" data-testid="chart" hidden=move || ui.history.with(|h| h.is_empty())>
            <svg
                viewBox=format!("0 0 {W} {H}")
                width=W
                height=H
                role="img"
                aria-label=move || ui.history.with(|h| h.describe())
            >
                <line class="grid" x1="0" x2=W y1=H / 2.0 y2=H / 2.0></line>
                <polyline
                    class="fps"
                    data-testid="chart-fps"
                    points=move || ui.history.with(|h| h.fps_line(W, H))
                ></polyline>
                <polyline
                    class="behind"
                    data-testid="chart-behind"
                    points=move || ui.history.with(|h| h.behind_line(W, H))
                ></polyline>
            </svg>
            <figcaption>
                <span class="key fps">"fps out (0–35)"</span>
                " · "
                <span class="key behind">"behind live (0–2 s)"</span>
                " · last minute"
            </figcaption>
        </figure>
    }
}

/// The figures the server pushes, and the page's own measurements.
#[component]
fn LiveStats(ui: Ui) -> impl IntoView {
    let stat = move |f: fn(&Stats) -> String| move || ui.stats.with(f);
    view! {
    <dl data-testid="stats" class="stats">
        <div>
            <dt>"fps in / out"</dt>
            <dd data-stat="fps">
                {stat(|s| format!("{:.1} / {:.1}", s.fps_in, s.fps_out))}
            </dd>
            <dd class="hint">"Frames a second the server decodes from your camera / sends back (2 s average)."</dd>
        </div>
        <div>
            <dt>"faces"</dt>
            <dd data-stat="faces">{stat(|s| s.faces.to_string())}</dd>
            <dd class="hint">"Faces boxed (or hidden) in the latest frame."</dd>
        </div>
        <div>
            <dt>"detector"</dt>
            <dd data-stat="detect-ms">{stat(|s| format!("{:.1} ms", s.detect_ms))}</dd>
            <dd class="hint">"Time the face detector took on the latest frame it checked."</dd>
        </div>
        <div>
            <dt>"frames dropped"</dt>
            <dd data-stat="dropped">{stat(|s| s.frames_dropped.to_string())}</dd>
            <dd class="hint" data-testid="dropped-hint">
                {move || {
                    if ui.stalled_once.get() {
                        "Frames the server skipped to get back to live after the connection stalled (the network's doing, not the server's)."
                    } else {
                        "Frames the server skipped because its encoder was busy (0 is normal)."
                    }
                }}
            </dd>
        </div>
        <div>
            <dt>"latency (glass to glass)"</dt>
            <dd
                data-stat="latency"
                data-latency-ms=move || {
                    ui.latency_ms.get().map(|ms| format!("{ms:.0}")).unwrap_or_default()
                }
            >
                {move || match ui.latency_ms.get() {
                    Some(ms) => format!("{:.2} s", ms / 1000.0),
                    None => "—".to_string(),
                }}
            </dd>
            <dd class="hint">
                {move || match ui.latency_ms.get() {
                    Some(_) => "From the camera to the played stream, measured in this page.",
                    None => "Measured only with ?measure in the address and the test clip's frame codes in the camera (scripts/bench); not with a real camera.",
                }}
            </dd>
        </div>
        <div>
            <dt>"player fps / skipped"</dt>
            <dd data-stat="player">
                {move || {
                    let p = ui.player.get();
                    if p.frames == 0 {
                        "—".to_string()
                    } else {
                        format!("{:.0} / {}", p.fps, p.skipped)
                    }
                }}
            </dd>
            <dd class="hint">"Frames the player showed a second / skipped (with the test clip only)."</dd>
        </div>
        <div>
            <dt>"behind live"</dt>
            <dd data-stat="behind-live">{move || ui.playback.get().describe_behind()}</dd>
            <dd class="hint">"How far the picture you see is behind the server's clock, from the stream's own timestamps (any camera)."</dd>
        </div>
        <div>
            <dt>"player dropped"</dt>
            <dd data-stat="player-dropped">{move || ui.playback.get().describe()}</dd>
            <dd class="hint">"Frames this browser decoded but could not show in time, by its own count (any camera)."</dd>
        </div>
        <div>
            <dt>"segments"</dt>
            <dd data-stat="segments">{stat(|s| s.segments.to_string())}</dd>
            <dd class="hint">"Pieces of the processed stream written so far."</dd>
        </div>
    </dl>
    }
}

/// The settings of the detector the server runs, and only those: a slider per setting
/// between its limits, its value beside it. The list follows the detector's kind (named by
/// the server in `started`), not every value change, so a slider keeps its focus.
#[component]
fn DetectorControls(
    ui: Ui,
    on_change: impl Fn(Setting, f64) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let kind = Memo::new(move |_| ui.detector.with(|d| d.name()));
    view! {
        <fieldset class="detector" data-testid="detector">
            <legend>
                {move || format!("Detector settings: {} (applied from the next detection)", kind.get())}
            </legend>
            {move || {
                kind.track();
                ui.detector
                    .with_untracked(|d| d.settings())
                    .iter()
                    .map(|&setting| setting_slider(ui, setting, on_change))
                    .collect_view()
            }}
            <p data-testid="notice" class="notice" aria-live="polite">
                {move || ui.notice.get()}
            </p>
        </fieldset>
    }
}

/// One detector setting as a range input between its limits, its value shown beside it.
fn setting_slider(
    ui: Ui,
    setting: Setting,
    on_change: impl Fn(Setting, f64) + 'static,
) -> impl IntoView {
    let (min, max, step) = setting.limits();
    let value = move || ui.detector.with(|d| d.get(setting)).unwrap_or(min);
    view! {
        <label>
            {setting.label()}
            " "
            <input
                type="range"
                data-testid=setting.id()
                min=min.to_string()
                max=max.to_string()
                step=step
                prop:value=move || value().to_string()
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                        on_change(setting, v);
                    }
                }
            />
            <output>{move || setting.show(value())}</output>
        </label>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_map_to_the_documented_states() {
        let all = [
            (Phase::Idle, "idle"),
            (Phase::Connecting, "connecting"),
            (Phase::Buffering, "buffering"),
            (Phase::Live, "live"),
            (Phase::Stopped, "stopped"),
            (Phase::Error, "error"),
        ];
        for (phase, name) in all {
            assert_eq!(phase.as_str(), name);
        }
        assert!(Phase::Live.is_active());
        assert!(!Phase::Stopped.is_active());
    }
}
