//! One channel's task: start the ingest, wait for its first decoded frame, take a place
//! like a session, run the session pipeline on the ingest's frames until the source ends or
//! fails, say why, wait (backing off), and start again, until shutdown.

use super::ingest::{self, Fault};
use super::Channel;
use crate::child::{join_tasks, reap, Spawned};
use crate::config::{ChannelConfig, ChannelSource};
use crate::error::Role;
use crate::metrics;
use crate::session::capacity::{session_share, Capacity};
use crate::session::life::{Due, Rules};
use crate::session::live::{Feed, Media, PipelineEnv, Session, SessionEvent};
use crate::session::registry::Registry;
use crate::source::Codec;
use crate::video::frame::{FrameRate, Shape};
use app::channels::ChannelState;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Bytes read from the ingest before its session starts (the start of the first decoded
/// frame, which tells that the source delivers).
const READ_BYTES: usize = 64 * 1024;
/// A channel whose pipeline gets no frame for this long is ended as silent and restarted.
const IDLE: Duration = Duration::from_secs(10);
/// How long the pipeline may take to finish after its source ended.
const FINISH: Duration = Duration::from_secs(5);
/// First and longest wait before reconnecting after a transient fault.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A fault the operator must fix (a wrong password) is retried this often, not hammered.
const OPERATOR_RETRY: Duration = Duration::from_secs(30);
/// A run live this long resets the backoff: the next fault is retried at once.
const HEALTHY: Duration = Duration::from_secs(30);

/// What a channel's task needs from the server.
pub(super) struct Env {
    pipeline: PipelineEnv,
    registry: Arc<Registry>,
    capacity: Arc<Capacity>,
    shutdown: CancellationToken,
    /// Cancelled when the channel leaves the settings.
    stop: CancellationToken,
}

impl Env {
    /// Resolves on shutdown or when the channel is removed.
    async fn stopped(&self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    fn is_stopped(&self) -> bool {
        self.shutdown.is_cancelled() || self.stop.is_cancelled()
    }
}

impl Env {
    /// The channel's environment; `stop` (removed from the settings) ends it like shutdown.
    pub(super) fn new(
        shared: &Arc<crate::web::Shared>,
        config: &ChannelConfig,
        stop: CancellationToken,
    ) -> Self {
        let mut pipeline = shared.pipeline_env();
        if let Some(fps) = config.frame_rate {
            pipeline.config.hls.frame_rate = fps;
        }
        Env {
            pipeline,
            registry: shared.registry.clone(),
            capacity: shared.capacity.clone(),
            shutdown: shared.shutdown.clone(),
            stop,
        }
    }
}

/// How one run ended.
enum RunEnd {
    /// Shutdown.
    Stopped,
    /// The source is down for `fault`; it had been live for `live_for`.
    Down { fault: Fault, live_for: Duration },
}

/// Runs `channel` until shutdown.
pub(super) async fn run(channel: Arc<Channel>, env: Env) {
    let mut backoff = BACKOFF_FIRST;
    let srt = matches!(channel.source, ChannelSource::Srt { .. });
    loop {
        // A source that is down stays "down since" its first failure while it is retried;
        // an SRT channel waiting again keeps saying what its last publisher did.
        let state = channel.state();
        if state != ChannelState::Down && !(srt && state == ChannelState::Waiting) {
            let waiting = if srt {
                ChannelState::Waiting
            } else {
                ChannelState::Connecting
            };
            channel.set_state(waiting, None);
        }
        let (fault, live_for) = match one_run(&channel, &env).await {
            RunEnd::Stopped => break,
            RunEnd::Down { fault, live_for } => (fault, live_for),
        };
        ::metrics::counter!(
            metrics::CHANNEL_FAULTS,
            "channel" => channel.config.name.clone(),
            "why" => fault.label()
        )
        .increment(1);
        if srt && fault == Fault::Ended {
            // A publisher that stopped is not a fault: the channel waits for the next one.
            channel.set_state(ChannelState::Waiting, None);
        } else if srt && fault == Fault::Silent {
            // Nor is the source down: a publisher connected and sent nothing, and was
            // dropped so that it holds no key; the listener waits for the next one.
            channel.set_state(ChannelState::Waiting, Some(fault));
        } else {
            channel.set_state(ChannelState::Down, Some(fault));
        }
        if live_for >= HEALTHY {
            backoff = BACKOFF_FIRST;
        }
        let wait = if srt && matches!(fault, Fault::Ended | Fault::Silent) {
            // The listener is nobody's fault: it listens again soon for the next publisher
            // (a silent one is dropped after 5 s each time, so it holds no key).
            BACKOFF_FIRST
        } else if fault.transient() {
            let wait = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        } else {
            backoff = (backoff * 2).min(BACKOFF_MAX);
            OPERATOR_RETRY
        };
        tokio::select! {
            _ = env.stopped() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    channel.set_run(None, None);
    channel.set_state(ChannelState::Stopped, None);
}

/// One connection to the source, from the ingest's start to its end.
async fn one_run(channel: &Channel, env: &Env) -> RunEnd {
    let name = &channel.config.name;
    let srt = matches!(channel.source, ChannelSource::Srt { .. });
    let shape = Shape {
        width: channel.config.width,
        height: channel.config.height,
        fps: FrameRate::whole(env.pipeline.config.hls.frame_rate),
    };
    let spawned = env
        .pipeline
        .spawner
        .spawn(Role::Ingest, &ingest::args(&channel.source, shape));
    let Spawned {
        mut process,
        stdin,
        mut stdout,
        exit,
        tasks,
    } = match spawned {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(channel = %name, "cannot start the ingest: {e}");
            return RunEnd::Down {
                fault: Fault::Unreadable,
                live_for: Duration::ZERO,
            };
        }
    };
    drop(stdin);
    let cancel = CancellationToken::new();
    let mut buf = vec![0u8; READ_BYTES];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut seen_stderr = String::new();
    // Until the first frame is decoded: nothing is reserved, so a camera that is down costs
    // no place of the session limit.
    let (first, arrived) = loop {
        tokio::select! {
            _ = env.stopped() => {
                end_ingest(process.as_mut(), &tasks, &cancel).await;
                return RunEnd::Stopped;
            }
            read = stdout.read(&mut buf) => match read {
                Ok(n) if n > 0 => break (Bytes::copy_from_slice(&buf[..n]), std::time::SystemTime::now()),
                _ => {
                    end_ingest(process.as_mut(), &tasks, &cancel).await;
                    return RunEnd::Down { fault: ingest::classify(&exit.tail(), false, srt), live_for: Duration::ZERO };
                }
            },
            _ = tick.tick() => {
                // A refused SRT publisher leaves the listener waiting: only its new lines say so.
                let tail = exit.tail();
                if tail != seen_stderr && ingest::classify(&tail, false, srt) == Fault::KeyRefused {
                    channel.note_refusal();
                }
                seen_stderr = tail;
            }
        }
    };
    let (width, height) = (channel.config.width, channel.config.height);
    let refuse = |why: &str| {
        tracing::warn!(channel = %name, "no room for the channel's stream ({why})");
        ::metrics::counter!(metrics::REFUSED, "why" => "channel").increment(1);
    };
    // Planned at its real cost: a privacy channel detects every frame.
    let share = session_share(Codec::H264, width, height);
    let reservation = match env.capacity.reserve(share, channel.config.privacy) {
        Ok(r) => r,
        Err(why) => {
            refuse(why.label());
            end_ingest(process.as_mut(), &tasks, &cancel).await;
            return no_room();
        }
    };
    let admission = match env.registry.admit_channel() {
        Ok(a) => a,
        Err(_) => {
            refuse("sessions");
            end_ingest(process.as_mut(), &tasks, &cancel).await;
            return no_room();
        }
    };
    let id = admission.id.clone();
    let rules = Rules {
        idle: IDLE,
        max_length: Duration::from_secs(10 * 365 * 86_400),
        // A camera is real time by nature, and a file loop is paced by its ingest.
        real_time: None,
    };
    // The session reads the rest of the ingest's frames itself.
    let media = Media {
        feed: Feed::Camera {
            arrived,
            first,
            frames: stdout,
        },
        width,
        height,
    };
    let started = Session::start(
        admission,
        reservation,
        media,
        &env.pipeline,
        channel.config.privacy,
        rules,
    )
    .await;
    let mut session = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(channel = %name, "cannot start the pipeline: {e}");
            env.registry.retire(id, Duration::ZERO, loopback(), false);
            end_ingest(process.as_mut(), &tasks, &cancel).await;
            return RunEnd::Down {
                // The decoding is the ingest's, whose words are read when it ends: a
                // pipeline that fails on its own (the encoder, the disk) is unreadable.
                fault: Fault::Unreadable,
                live_for: Duration::ZERO,
            };
        }
    };
    tracing::info!(channel = %name, session = %id, "channel stream starting");
    channel.set_run(Some(id.clone()), Some(session.thumbnails()));
    let mut live_since: Option<Instant> = None;
    let mut fault = None;
    let mut last_frames = (Instant::now(), 0u64);
    enum Step {
        Shutdown,
        Event(Option<SessionEvent>),
        Tick,
    }
    // The source ending (the ingest exits) ends the session's input: what was decoded still
    // leaves, then the pipeline ends.
    loop {
        let step = tokio::select! {
            biased;
            _ = env.stopped() => Step::Shutdown,
            event = session.event() => Step::Event(event),
            _ = tick.tick() => Step::Tick,
        };
        match step {
            Step::Shutdown => {
                let _ = process.start_kill();
                session.finish_within(FINISH).await;
                break;
            }
            Step::Event(Some(SessionEvent::PlaylistReady)) => {
                live_since = Some(Instant::now());
                channel.set_state(ChannelState::Live, None);
            }
            Step::Event(Some(SessionEvent::Ended(result))) => {
                if let Err(e) = result {
                    tracing::warn!(channel = %name, "the channel's pipeline failed: {e}");
                    fault = Some(Fault::Unreadable);
                }
                break;
            }
            Step::Event(Some(SessionEvent::Due(Due::Idle { .. }))) => {
                fault = Some(Fault::Silent);
                let _ = process.start_kill();
                session.finish_within(FINISH).await;
                break;
            }
            Step::Event(Some(SessionEvent::Due(_))) | Step::Event(None) => break,
            Step::Tick => {
                let now = Instant::now();
                let frames = session.counters().frames_out.load(Ordering::Relaxed);
                let secs = now.duration_since(last_frames.0).as_secs_f32().max(0.001);
                channel.set_fps((frames - last_frames.1.min(frames)) as f32 / secs);
                last_frames = (now, frames);
            }
        }
    }
    end_ingest(process.as_mut(), &tasks, &cancel).await;
    channel.set_run(None, None);
    drop(session);
    env.registry.retire(id, Duration::ZERO, loopback(), false);
    if env.is_stopped() {
        return RunEnd::Stopped;
    }
    let sent_video = live_since.is_some();
    let fault = fault.unwrap_or_else(|| ingest::classify(&exit.tail(), sent_video, srt));
    RunEnd::Down {
        fault,
        live_for: live_since.map_or(Duration::ZERO, |t| t.elapsed()),
    }
}

fn no_room() -> RunEnd {
    RunEnd::Down {
        fault: Fault::NoRoom,
        live_for: Duration::ZERO,
    }
}

fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}

/// Stops the ingest (it may be waiting on a camera) and reaps it.
async fn end_ingest(
    process: &mut dyn crate::child::Process,
    tasks: &tokio_util::task::TaskTracker,
    cancel: &CancellationToken,
) {
    let _ = process.start_kill();
    let _ = reap(process, Duration::from_secs(2)).await;
    join_tasks(tasks, cancel).await;
}
