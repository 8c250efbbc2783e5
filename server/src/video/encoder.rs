//! The encoder stage: one long-lived ffmpeg per session turning raw BGR frames (stdin) into
//! H.264. Live, it writes fragmented MP4 to stdout, one fragment per frame, for the
//! [`crate::hls::packager`]; for `process` it writes a VOD HLS playlist and segments into a folder.
//! Closing stdin makes ffmpeg flush the last frame (and write `#EXT-X-ENDLIST`).

use super::frame::{Frame, FramePool, FrameRate};
use crate::child::{feed, join_tasks, reap, ExitReporter, Output, Process, Spawned, Spawner};
use crate::config::HlsConfig;
use crate::error::{Role, ServerError};
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use app::hls_path::PLAYLIST;

/// What the encoder makes of the frames.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderOutput {
    /// Fragmented MP4 on stdout, a fragment per frame (live LL-HLS).
    Fragments,
    /// A VOD HLS playlist with every segment, in a folder (`process`).
    Vod {
        dir: PathBuf,
        /// A file whose first audio stream goes into the output beside the video (as AAC),
        /// if it has one.
        audio_from: Option<PathBuf>,
    },
}

/// How the H.264 output is cut.
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    /// Seconds between keyframes: every segment starts with one.
    pub segment_seconds: f64,
    /// Live: frames in the first segment (0: a whole segment). A short first segment is
    /// complete, and the stream playable for every client, a fraction of a second after the
    /// first frame instead of a segment later.
    pub first_segment_frames: u32,
    pub preset: String,
    /// Live: the session's privacy switch. A frame that reaches the encoder unhidden while
    /// it is on (it passed the frame path before the switch) is hidden whole: from the
    /// moment the switch arrives, no frame leaves unhidden.
    pub privacy: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl EncoderSettings {
    /// Live settings for a `width`×`height` session from the pipeline config.
    pub fn live(config: &HlsConfig, width: u32, height: u32) -> Self {
        EncoderSettings {
            width,
            height,
            fps: FrameRate::whole(config.frame_rate),
            segment_seconds: config.segment_seconds,
            first_segment_frames: config.first_segment_frames(),
            preset: config.x264_preset.clone(),
            privacy: None,
        }
    }
}

/// x264 threads per encoder. One: x264's own choice here (1.5 × cores, sliced threads with
/// `zerolatency`) spent ~12 % more CPU a frame on the same footage (`scripts/bench`, keyframe
/// table: 1.16 against 1.02 ms/frame at 640×480 ultrafast), for a frame that leaves 0.25 ms
/// sooner; with several sessions on a few cores, every session's threads only contend.
const ENCODER_THREADS: &str = "1";

/// ffmpeg arguments: raw BGR24 on stdin → libx264 → `output`.
///
/// One keyframe per segment (`-g` = `-keyint_min` = fps × segment length, no scene-cut
/// keyframes) so every segment starts decodable and segment boundaries land on time;
/// `zerolatency` disables frame look-ahead and B-frames so a frame leaves the encoder as
/// soon as it arrives. Live, FLV + `flush_packets` hand each frame to the packager at once
/// ([`crate::hls::flv`] turns it into an fMP4 fragment; the packager groups them into parts).
pub fn encoder_args(s: &EncoderSettings, output: &EncoderOutput) -> Vec<String> {
    let gop = ((s.fps.as_f64() * s.segment_seconds).round() as u32)
        .max(1)
        .to_string();
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        &format!("{}x{}", s.width, s.height),
        "-r",
        &s.fps.to_string(),
        "-i",
        "pipe:0",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    match output {
        EncoderOutput::Vod {
            audio_from: Some(file),
            ..
        } => {
            // The source's sound, read by a second input under the same guard as the
            // decoder's, cut where the video ends.
            args.extend(
                crate::video::decoder::FILE_INPUT_GUARD
                    .iter()
                    .map(|a| a.to_string()),
            );
            args.push("-i".into());
            args.push(file.to_string_lossy().into_owned());
            args.extend(
                [
                    "-map",
                    "0:v:0",
                    "-map",
                    "1:a:0?",
                    "-c:a",
                    "aac",
                    "-b:a",
                    "128k",
                    "-shortest",
                ]
                .map(String::from),
            );
        }
        _ => args.push("-an".into()),
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            &s.preset,
            "-tune",
            "zerolatency",
            "-threads",
            ENCODER_THREADS,
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
        ]
        .map(String::from),
    );
    if matches!(output, EncoderOutput::Fragments) && s.first_segment_frames > 0 {
        // One extra keyframe that ends the short first segment; x264 counts the GOP from it.
        args.push("-force_key_frames".into());
        args.push(format!("expr:eq(n,{})", s.first_segment_frames));
    }
    match output {
        EncoderOutput::Fragments => args.extend(
            // FLV: each frame's tag leaves as soon as x264 hands the frame over (the fMP4
            // muxer holds every frame until the next arrives); hls::flv makes the fMP4.
            ["-f", "flv", "-flush_packets", "1", "pipe:1"].map(String::from),
        ),
        EncoderOutput::Vod { dir, .. } => args.extend([
            "-f".into(),
            "hls".into(),
            "-hls_time".into(),
            format!("{}", s.segment_seconds),
            "-hls_list_size".into(),
            "0".into(),
            "-hls_playlist_type".into(),
            "vod".into(),
            "-hls_flags".into(),
            "independent_segments+temp_file".into(),
            "-hls_segment_filename".into(),
            dir.join("seg_%05d.ts").to_string_lossy().into_owned(),
            dir.join(PLAYLIST).to_string_lossy().into_owned(),
        ]),
    }
    args
}

/// A running encoder: frames go in through the channel given to [`Encoder::start`].
pub struct Encoder {
    process: Box<dyn Process>,
    exit: ExitReporter,
    /// Set once the child has exited (seen by [`Encoder::exited`]).
    status: Option<std::io::Result<std::process::ExitStatus>>,
    /// The stdin writer and the stderr drain.
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Encoder {
    /// Spawns the encoder writing `output`; a task writes `frames` to its stdin and closes
    /// stdin (→ the last frame flushed) when the channel closes. Returns the encoder and
    /// its stdout (the fragments, for [`EncoderOutput::Fragments`]).
    pub fn start(
        spawner: &dyn Spawner,
        settings: &EncoderSettings,
        output: &EncoderOutput,
        frames: mpsc::Receiver<Frame>,
        pool: FramePool,
    ) -> Result<(Self, Output), ServerError> {
        let args = encoder_args(settings, output);
        let Spawned {
            process,
            stdin,
            stdout,
            exit,
            tasks,
        } = spawner.spawn(Role::Encoder, &args)?;
        let cancel = CancellationToken::new();
        let privacy = settings.privacy.clone();
        feed(
            &tasks,
            stdin,
            frames,
            cancel.clone(),
            |frame: &Frame| &frame.data,
            move |frame: &mut Frame| {
                let on = privacy
                    .as_ref()
                    .is_some_and(|p| p.load(std::sync::atomic::Ordering::Relaxed));
                if on && !frame.hidden {
                    crate::video::overlay::pixelate_whole(frame);
                    frame.hidden = true;
                    ::metrics::counter!(crate::metrics::FRAMES_HIDDEN).increment(1);
                    ::metrics::counter!(crate::metrics::FRAMES_HIDDEN_LATE).increment(1);
                }
            },
            move |frame, took| {
                ::metrics::histogram!(crate::metrics::ENCODE_SECONDS).record(took.as_secs_f64());
                pool.give(frame.data);
            },
        );
        let encoder = Encoder {
            process,
            exit,
            status: None,
            tasks,
            cancel,
        };
        Ok((encoder, stdout))
    }

    /// Resolves when the encoder exits (it must outlive its input: before the input
    /// closes, that is a failure); never again once it has.
    pub async fn exited(&mut self) {
        if self.status.is_some() {
            return std::future::pending().await;
        }
        self.status = Some(self.process.wait().await);
    }

    /// Waits up to `grace` for the encoder to finish its last segment and ENDLIST (its
    /// input must be closed first), then kills it; ends its tasks and reports how it ended.
    pub async fn finish(mut self, grace: std::time::Duration) -> Result<(), ServerError> {
        let status = match self.status.take() {
            Some(status) => status,
            None => reap(self.process.as_mut(), grace).await,
        };
        join_tasks(&self.tasks, &self.cancel).await;
        self.exit.check(status)
    }

    /// An error saying the encoder stopped taking frames.
    pub fn stalled(&self) -> ServerError {
        self.exit.error("stopped taking frames".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EncoderSettings {
        EncoderSettings {
            width: 640,
            height: 480,
            fps: FrameRate::whole(30),
            segment_seconds: 1.0,
            first_segment_frames: 0,
            preset: "veryfast".into(),
            privacy: None,
        }
    }

    #[tokio::test]
    async fn a_frame_that_reaches_the_encoder_unhidden_after_the_privacy_switch_is_hidden_whole() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let fake = crate::fake_ffmpeg::FakeFfmpeg::default();
        let privacy = std::sync::Arc::new(AtomicBool::new(false));
        let settings = EncoderSettings {
            width: 16,
            height: 16,
            privacy: Some(privacy.clone()),
            ..settings()
        };
        let (tx, rx) = mpsc::channel(8);
        let (mut encoder, _out) = Encoder::start(
            &fake,
            &settings,
            &EncoderOutput::Fragments,
            rx,
            FramePool::default(),
        )
        .unwrap();
        let boxed = Frame::checkerboard(16, 16, [0, 255, 0]);
        // Before the switch: written as the frame path left it.
        tx.send(boxed.clone()).await.unwrap();
        let wait_for = |n: usize| {
            let encoded = fake.encoded.clone();
            async move {
                while encoded.lock().unwrap().len() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        wait_for(1).await;
        privacy.store(true, Ordering::Relaxed);
        // Boxed by the frame path before the switch (it waited in the encoder's queue),
        // written after it: hidden whole.
        tx.send(boxed.clone()).await.unwrap();
        // Already hidden by the frame path: written as it is.
        let hidden = Frame {
            hidden: true,
            ..Frame::checkerboard(16, 16, [255, 0, 0])
        };
        tx.send(hidden.clone()).await.unwrap();
        drop(tx);
        wait_for(3).await;
        let written = fake.encoded.lock().unwrap().clone();
        assert_eq!(written[0], boxed.data, "before the switch");
        let mut whole = boxed.clone();
        crate::video::overlay::pixelate_whole(&mut whole);
        assert_ne!(whole.data, boxed.data);
        assert_eq!(written[1], whole.data, "hidden whole");
        assert_eq!(written[2], hidden.data, "hidden by the frame path already");
        encoder.exited().await;
    }

    #[test]
    fn live_output_is_a_fragment_per_frame_with_a_keyframe_per_segment() {
        let args = encoder_args(&settings(), &EncoderOutput::Fragments).join(" ");
        assert!(args.contains("-s 640x480 -r 30 -i pipe:0"));
        assert!(args.contains("-g 30 -keyint_min 30 -sc_threshold 0"));
        assert!(args.ends_with("-f flv -flush_packets 1 pipe:1"));
    }

    #[test]
    fn a_short_first_segment_gets_its_own_keyframe_live_only() {
        let mut s = settings();
        assert!(!encoder_args(&s, &EncoderOutput::Fragments)
            .join(" ")
            .contains("force_key_frames"));
        s.first_segment_frames = 6;
        let live = encoder_args(&s, &EncoderOutput::Fragments).join(" ");
        assert!(live.contains("-force_key_frames expr:eq(n,6)"), "{live}");
        let vod = encoder_args(
            &s,
            &EncoderOutput::Vod {
                dir: "out".into(),
                audio_from: None,
            },
        )
        .join(" ");
        assert!(!vod.contains("force_key_frames"));
        let config = HlsConfig::default();
        assert_eq!(
            config.first_segment_frames(),
            7,
            "6 parts of hold-back and one more, a frame each"
        );
        let long_parts = HlsConfig {
            part_seconds: 0.2,
            ..HlsConfig::default()
        };
        assert_eq!(
            long_parts.first_segment_frames(),
            0,
            "no shorter than a segment"
        );
    }

    #[test]
    fn short_segments_get_a_keyframe_each() {
        let mut s = settings();
        s.segment_seconds = 0.5;
        let args = encoder_args(&s, &EncoderOutput::Fragments).join(" ");
        assert!(args.contains("-g 15 -keyint_min 15"));
    }

    #[test]
    fn vod_output_keeps_every_segment() {
        let args = encoder_args(
            &settings(),
            &EncoderOutput::Vod {
                dir: "out".into(),
                audio_from: None,
            },
        )
        .join(" ");
        assert!(!args.contains("delete_segments"));
        assert!(args.contains("-hls_time 1 -hls_list_size 0 -hls_playlist_type vod"));
        assert!(args.ends_with("-hls_segment_filename out/seg_%05d.ts out/playlist.m3u8"));
    }
}
