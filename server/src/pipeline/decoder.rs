//! The decoder stage: one long-lived ffmpeg per session turning the recorder's WebM chunks
//! (stdin, from chunk 0) into exactly-sized raw BGR frames (stdout) at a constant rate.

use super::frame::{Frame, FramePool};
use crate::child::{ExitReporter, Spawned};
use crate::error::ServerError;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;

/// Where the decoder reads its video.
pub enum Source {
    /// A live recorder stream: WebM chunks written to ffmpeg's stdin as they arrive.
    Pipe(mpsc::Receiver<Bytes>),
    /// A file ffmpeg can read (the `process` command).
    File(PathBuf),
}

/// ffmpeg arguments: the source → `width`×`height` BGR24 at `fps` on stdout.
///
/// For a live pipe, `-probesize 32 -analyzeduration 0` make ffmpeg start after the first
/// chunk (~0.15 s) instead of buffering seconds of input; `-threads 1` avoids frame-threaded
/// decoding, which holds back a frame per extra thread; `-flush_packets 1` hands each frame
/// on at once instead of when the next one fills the output buffer. For both, `-r`
/// resamples to a constant rate (a WebM's millisecond timebase otherwise yields ~1000 fps
/// of duplicates) and the scale filter guarantees the frame size the rest of the pipeline
/// reads, whatever the camera or file holds.
pub fn decoder_args(file: Option<&Path>, width: u32, height: u32, fps: u32) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "warning"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match file {
        None => args.extend(
            [
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
                "-threads",
                "1",
                "-i",
                "pipe:0",
            ]
            .iter()
            .map(|s| s.to_string()),
        ),
        Some(path) => {
            args.push("-i".into());
            args.push(path.to_string_lossy().into_owned());
        }
    }
    args.extend(
        [
            "-an",
            "-vf",
            &format!("scale={width}:{height}"),
            "-r",
            &fps.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-flush_packets",
            "1",
            "pipe:1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args
}

/// A running decoder: its child and the exit reporter; chunks go in through the channel
/// given to [`Decoder::start`], frames come out of the other.
pub struct Decoder {
    pub child: Child,
    pub exit: ExitReporter,
}

impl Decoder {
    /// Spawns ffmpeg; a task writes `chunks` to its stdin (closing stdin when the channel
    /// closes) and another reads frame-sized blocks from stdout into `frames`.
    pub fn start(
        ffmpeg: &Path,
        width: u32,
        height: u32,
        fps: u32,
        source: Source,
        frames: mpsc::Sender<Frame>,
        pool: FramePool,
    ) -> Result<Self, ServerError> {
        let (file, mut chunks) = match source {
            Source::Pipe(chunks) => (None, Some(chunks)),
            Source::File(path) => (Some(path), None),
        };
        let args = decoder_args(file.as_deref(), width, height, fps);
        let (child, mut stdin, mut stdout, exit) =
            Spawned::spawn("decoder", ffmpeg, &args)?.into_parts();
        tokio::spawn(async move {
            let Some(chunks) = chunks.as_mut() else {
                return; // a file source: stdin closes at once
            };
            while let Some(chunk) = chunks.recv().await {
                if let Err(e) = stdin.write_all(&chunk).await {
                    tracing::debug!("decoder stdin closed: {e}");
                    return;
                }
            }
            // Dropping stdin here sends EOF: ffmpeg flushes its last frames and exits.
        });
        let frame_len = Frame::byte_len(width, height);
        tokio::spawn(async move {
            loop {
                let mut data = pool.take(frame_len);
                match stdout.read_exact(&mut data).await {
                    Ok(_) => {
                        let frame = Frame {
                            width,
                            height,
                            data,
                        };
                        if frames.send(frame).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return, // EOF (or a partial last frame): the decoder ended.
                }
            }
        });
        Ok(Decoder { child, exit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_pin_the_frame_format() {
        let args = decoder_args(None, 640, 480, 30).join(" ");
        assert!(args.contains("-probesize 32 -analyzeduration 0 -threads 1 -i pipe:0"));
        assert!(args.contains(
            "-vf scale=640:480 -r 30 -f rawvideo -pix_fmt bgr24 -flush_packets 1 pipe:1"
        ));
        assert!(
            !args.contains("nobuffer"),
            "-fflags nobuffer breaks decoding here"
        );
    }
}
