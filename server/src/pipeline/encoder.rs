//! The encoder stage: one long-lived ffmpeg per session turning raw BGR frames (stdin) into
//! H.264 HLS (a playlist and short segments in the session folder). Closing stdin makes
//! ffmpeg finish the last segment and write `#EXT-X-ENDLIST`.

use super::frame::{Frame, FramePool};
use crate::child::{reap, ExitReporter, Spawned};
use crate::config::PipelineConfig;
use crate::error::ServerError;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::mpsc;

pub use app::hls_path::PLAYLIST;

/// How the HLS output is cut.
#[derive(Debug, Clone)]
pub struct HlsSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub segment_seconds: f64,
    /// Segments kept in the playlist; 0 keeps all (a VOD playlist).
    pub playlist_size: u32,
    pub preset: String,
    /// Whether ffmpeg deletes segments that leave the playlist (live sessions without a
    /// recording); otherwise a [`super::recording::SegmentKeeper`] decides.
    pub delete_segments: bool,
}

impl HlsSettings {
    /// Live settings for a `width`×`height` session from the pipeline config.
    pub fn live(config: &PipelineConfig, width: u32, height: u32) -> Self {
        HlsSettings {
            width,
            height,
            fps: config.frame_rate,
            segment_seconds: config.segment_seconds,
            playlist_size: config.playlist_size,
            preset: config.x264_preset.clone(),
            delete_segments: !config.records(),
        }
    }
}

/// ffmpeg arguments: raw BGR24 on stdin → libx264 HLS in `dir`.
///
/// One keyframe per segment (`-g` = `-keyint_min` = fps × segment length, no scene-cut
/// keyframes) so every segment starts decodable and segment boundaries land on time;
/// `zerolatency` disables frame look-ahead so a frame leaves the encoder as soon as it
/// arrives; `temp_file` makes the playlist and segments appear atomically (by rename).
pub fn encoder_args(s: &HlsSettings, dir: &Path) -> Vec<String> {
    let gop = ((s.fps as f64 * s.segment_seconds).round() as u32)
        .max(1)
        .to_string();
    let mut flags = "independent_segments+temp_file".to_string();
    if s.playlist_size > 0 && s.delete_segments {
        flags.push_str("+delete_segments");
    }
    let segment_pattern = dir.join("seg_%05d.ts");
    let playlist = dir.join(PLAYLIST);
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
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        &s.preset,
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-f",
        "hls",
        "-hls_time",
        &format!("{}", s.segment_seconds),
        "-hls_list_size",
        &s.playlist_size.to_string(),
        "-hls_flags",
        &flags,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if s.playlist_size == 0 {
        args.extend(["-hls_playlist_type".into(), "vod".into()]);
    }
    args.extend([
        "-hls_segment_filename".into(),
        segment_pattern.to_string_lossy().into_owned(),
        playlist.to_string_lossy().into_owned(),
    ]);
    args
}

/// A running encoder: frames go in through the channel given to [`Encoder::start`].
pub struct Encoder {
    child: Child,
    exit: ExitReporter,
    /// Set once the child has exited (seen by [`Encoder::exited`]).
    status: Option<std::io::Result<std::process::ExitStatus>>,
}

impl Encoder {
    /// Spawns ffmpeg writing into `dir`; a task writes `frames` to its stdin and closes
    /// stdin (→ ENDLIST) when the channel closes.
    pub fn start(
        ffmpeg: &Path,
        settings: &HlsSettings,
        dir: &Path,
        mut frames: mpsc::Receiver<Frame>,
        pool: FramePool,
    ) -> Result<Self, ServerError> {
        let args = encoder_args(settings, dir);
        let (child, mut stdin, _stdout, exit) =
            Spawned::spawn("encoder", ffmpeg, &args)?.into_parts();
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                let started = std::time::Instant::now();
                if let Err(e) = stdin.write_all(&frame.data).await {
                    tracing::debug!("encoder stdin closed: {e}");
                    return;
                }
                ::metrics::histogram!(crate::metrics::ENCODE_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                pool.give(frame.data);
            }
        });
        Ok(Encoder {
            child,
            exit,
            status: None,
        })
    }

    /// Resolves when the encoder exits (it must outlive its input: before the input
    /// closes, that is a failure); never again once it has.
    pub async fn exited(&mut self) {
        if self.status.is_some() {
            return std::future::pending().await;
        }
        self.status = Some(self.child.wait().await);
    }

    /// Waits up to `grace` for the encoder to finish its last segment and ENDLIST (its
    /// input must be closed first), then kills it; reports how it ended.
    pub async fn finish(mut self, grace: std::time::Duration) -> Result<(), ServerError> {
        let status = match self.status.take() {
            Some(status) => status,
            None => reap(&mut self.child, grace).await,
        };
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

    fn settings(playlist_size: u32) -> HlsSettings {
        HlsSettings {
            width: 640,
            height: 480,
            fps: 30,
            segment_seconds: 1.0,
            playlist_size,
            preset: "veryfast".into(),
            delete_segments: true,
        }
    }

    #[test]
    fn live_output_has_a_keyframe_per_segment_and_a_sliding_window() {
        let args = encoder_args(&settings(6), Path::new("/run/s")).join(" ");
        assert!(args.contains("-s 640x480 -r 30 -i pipe:0"));
        assert!(args.contains("-g 30 -keyint_min 30 -sc_threshold 0"));
        assert!(args.contains("-hls_time 1 -hls_list_size 6"));
        assert!(args.contains("delete_segments"));
        assert!(args.ends_with("-hls_segment_filename /run/s/seg_%05d.ts /run/s/playlist.m3u8"));
    }

    #[test]
    fn short_segments_get_a_keyframe_each() {
        let mut s = settings(6);
        s.segment_seconds = 0.5;
        let args = encoder_args(&s, Path::new("/run/s")).join(" ");
        assert!(args.contains("-g 15 -keyint_min 15"));
        assert!(args.contains("-hls_time 0.5 "));
    }

    #[test]
    fn a_recording_session_keeps_its_segments() {
        let mut s = settings(6);
        s.delete_segments = false;
        let args = encoder_args(&s, Path::new("/run/s")).join(" ");
        assert!(!args.contains("delete_segments"));
        assert!(args.contains("-hls_list_size 6"));
    }

    #[test]
    fn vod_output_keeps_every_segment() {
        let args = encoder_args(&settings(0), Path::new("out")).join(" ");
        assert!(!args.contains("delete_segments"));
        assert!(args.contains("-hls_playlist_type vod"));
    }
}
