//! The decoder stage: one long-lived ffmpeg per session turning the recorder's WebM chunks
//! (stdin, from chunk 0) into exactly-sized raw BGR frames (stdout) at a constant rate; or,
//! for a camera channel whose ingest decodes, the reader that cuts its frames.

use super::frame::{Frame, FramePool, FrameRate, Shape};
use crate::child::{feed, join_tasks, reap, ExitReporter, Process, Spawned, Spawner};
use crate::error::{Role, ServerError};
use crate::source::Codec;
use crate::source::Source;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the decoder reads, for its arguments.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A live recorder stream on stdin.
    Pipe(Codec),
    /// A file.
    File(&'a Path),
}

/// Largest picture a camera channel's stream may hold: 4096×2304 (4K cameras, scaled down
/// to the channel's size); anything larger is refused before ffmpeg allocates for it.
pub const CAMERA_MAX_PIXELS: u64 = 4096 * 2304;

/// A live stream's pictures may be this much larger (in pixels) than announced before the
/// decoder refuses them: cameras round sizes, and a phone may swap width and height.
const SLACK_PIXELS: f64 = 1.25;

/// The longest gap between two frames' timestamps that is kept as it is. A longer jump (a
/// stream claiming hours between frames) is shortened to this, so the constant-rate output
/// repeats at most this long a frame instead of producing hours of copies.
pub const MAX_GAP_SECONDS: f64 = 0.5;

/// ffmpeg arguments: the source → `width`×`height` BGR24 at `fps` on stdout.
///
/// For a live pipe, `-probesize 32 -analyzeduration 0` make ffmpeg start after the first
/// chunk (~0.15 s) instead of buffering seconds of input; `-threads 1` avoids frame-threaded
/// decoding, which holds back a frame per extra thread; `-flush_packets 1` hands each frame
/// on at once instead of when the next one fills the output buffer. For both, `-r`
/// resamples to a constant rate (a WebM's millisecond timebase otherwise yields ~1000 fps
/// of duplicates) and the scale filter guarantees the frame size the rest of the pipeline
/// reads, whatever the camera or file holds.
///
/// A live pipe also names its decoder (`-c:v`, the announced codec: another codec in the
/// stream fails to decode) and caps the picture size (`-max_pixels`, the announced size
/// plus [`SLACK_PIXELS`]: a stream declared 640×480 but holding 8192×8192 pictures is
/// refused before ffmpeg allocates for them). For both, `setpts` clamps timestamp jumps to
/// [`MAX_GAP_SECONDS`] (and backward jumps to none) before `-r` makes the rate constant.
/// What a file given to `process` may be: a plain local media file. Only the `file`
/// protocol, and only demuxers of self-contained media containers and raw streams: no
/// playlist (HLS, DASH, concat, ffconcat) or image sequence whose contents name other files
/// or URLs, whatever the file is called.
pub const FILE_INPUT_GUARD: [&str; 4] = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,matroska,webm,avi,mpegts,flv,ogg,mpeg,asf,ivf,yuv4mpegpipe,h264,hevc,m4v,mjpeg,gif,nut,rawvideo",
];

pub fn decoder_args(input: Input, width: u32, height: u32, fps: FrameRate) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "warning"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match input {
        Input::Pipe(codec) => {
            let max_pixels = (width as f64 * height as f64 * SLACK_PIXELS).ceil() as u64;
            args.extend(
                [
                    "-max_pixels",
                    &max_pixels.to_string(),
                    "-c:v",
                    codec.ffmpeg_decoder(),
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
            )
        }
        Input::File(path) => {
            args.extend(FILE_INPUT_GUARD.iter().map(|s| s.to_string()));
            args.push("-i".into());
            args.push(path.to_string_lossy().into_owned());
        }
    }
    args.extend(frame_output_args(width, height, fps));
    args
}

/// The output half of a decoding ffmpeg: its first video stream as `width`×`height` BGR24
/// frames at a constant `fps` on stdout, timestamp jumps clamped (see [`decoder_args`]).
/// A camera channel's ingest ends with the same.
pub fn frame_output_args(width: u32, height: u32, fps: FrameRate) -> Vec<String> {
    let mut args = Vec::new();
    let clamp = format!(
        "setpts='if(isnan(PREV_INPTS),PTS,PREV_OUTPTS+clip(PTS-PREV_INPTS,0,{MAX_GAP_SECONDS}/TB))'"
    );
    // One thread for the raw "encoder" that writes the frames: ffmpeg gives it frame
    // threads by default, and a frame-threaded encoder hands frame N out only once frame
    // N+1 has come in, so every frame waited for the next one (33 ms at 30 fps).
    args.extend(
        [
            "-an",
            "-threads",
            "1",
            "-vf",
            &format!("{clamp},scale={width}:{height}"),
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

/// A running decoder: chunks go in through the channel given to [`Decoder::start`],
/// frames come out of the other.
pub struct Decoder {
    /// The decoding ffmpeg and what it said; none when the source's frames come decoded.
    child: Option<(Box<dyn Process>, ExitReporter)>,
    /// The stdin writer, the stdout reader and the stderr drain.
    tasks: TaskTracker,
    /// Stops the pipe tasks once the child is reaped (and the frame reader on `stop`).
    cancel: CancellationToken,
}

impl Decoder {
    /// Spawns the decoder; a task writes the source's chunks to its stdin (closing stdin
    /// when the channel closes) and another reads frame-sized blocks from stdout into
    /// `frames`. Frames that come decoded ([`Source::Frames`]) are only read.
    pub fn start(
        spawner: &dyn Spawner,
        source: Source,
        shape: Shape,
        frames: mpsc::Sender<Frame>,
        pool: FramePool,
    ) -> Result<Self, ServerError> {
        let Shape { width, height, fps } = shape;
        let cancel = CancellationToken::new();
        let (args, chunks) = match source {
            Source::Chunks { chunks, codec } => (
                decoder_args(Input::Pipe(codec), width, height, fps),
                Some(chunks),
            ),
            Source::File(path) => (decoder_args(Input::File(&path), width, height, fps), None),
            Source::Frames { first, reader } => {
                let tasks = TaskTracker::new();
                let reader = std::io::Cursor::new(first).chain(reader);
                // Nothing to kill here: a stop ends the reads themselves.
                let reads = Reads::Cancellable;
                tasks.spawn(read_frames(
                    reader,
                    shape,
                    frames,
                    pool,
                    cancel.clone(),
                    reads,
                ));
                return Ok(Decoder {
                    child: None,
                    tasks,
                    cancel,
                });
            }
        };
        let Spawned {
            process,
            stdin,
            stdout,
            exit,
            tasks,
        } = spawner.spawn(Role::Decoder, &args)?;
        // A file source has no chunks: stdin closes at once.
        if let Some(chunks) = chunks {
            feed(
                &tasks,
                stdin,
                chunks,
                cancel.clone(),
                |c| c,
                |_| {},
                |_, _| {},
            );
        }
        // The child's frames are read to its end (a stop kills the child, which ends them).
        let reads = Reads::ToTheEnd;
        tasks.spawn(read_frames(
            stdout,
            shape,
            frames,
            pool,
            cancel.clone(),
            reads,
        ));
        Ok(Decoder {
            child: Some((process, exit)),
            tasks,
            cancel,
        })
    }

    /// Stops decoding at once (for a failed, cancelled or cut pipeline: an open input would
    /// never end on its own).
    pub fn stop(&mut self) {
        match &mut self.child {
            Some((process, _)) => {
                let _ = process.start_kill();
            }
            None => self.cancel.cancel(),
        }
    }

    /// Waits up to `grace` for the decoder to exit (then kills it), ends its pipe tasks and
    /// reports how it ended.
    pub async fn finish(mut self, grace: std::time::Duration) -> Result<(), ServerError> {
        match self.child.take() {
            Some((mut process, exit)) => {
                let status = reap(process.as_mut(), grace).await;
                join_tasks(&self.tasks, &self.cancel).await;
                exit.check(status)
            }
            None => {
                self.tasks.close();
                if tokio::time::timeout(grace, self.tasks.wait())
                    .await
                    .is_err()
                {
                    self.cancel.cancel();
                    self.tasks.wait().await;
                }
                Ok(())
            }
        }
    }
}

/// Whether `cancel` ends a frame reader's pending read, or only its waits to hand on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    Cancellable,
    ToTheEnd,
}

/// Reads frame-sized blocks from `reader` into `frames` until it ends (EOF, or a partial
/// last frame) or `cancel`.
async fn read_frames(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    shape: Shape,
    frames: mpsc::Sender<Frame>,
    pool: FramePool,
    cancel: CancellationToken,
    reads: Reads,
) {
    let Shape { width, height, .. } = shape;
    let frame_len = Frame::byte_len(width, height);
    loop {
        let mut data = pool.take(frame_len);
        let read = async {
            if reads == Reads::Cancellable {
                tokio::select! {
                    _ = cancel.cancelled() => false,
                    read = reader.read_exact(&mut data) => read.is_ok(),
                }
            } else {
                reader.read_exact(&mut data).await.is_ok()
            }
        };
        if !read.await {
            return;
        }
        let frame = Frame {
            width,
            height,
            data,
            hidden: false,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = frames.send(frame) => if sent.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_pin_the_frame_format() {
        let args = decoder_args(Input::Pipe(Codec::Vp9), 640, 480, FrameRate::whole(30)).join(" ");
        assert!(args.contains(
            "-max_pixels 384000 -c:v vp9 -probesize 32 -analyzeduration 0 -threads 1 -i pipe:0"
        ));
        assert!(args
            .contains(",scale=640:480 -r 30 -f rawvideo -pix_fmt bgr24 -flush_packets 1 pipe:1"));
        assert!(
            args.contains("-an -threads 1 -vf"),
            "the frame writer runs on one thread (frame threads hold a frame)"
        );
        assert!(args.contains(
            "-vf setpts='if(isnan(PREV_INPTS),PTS,PREV_OUTPTS+clip(PTS-PREV_INPTS,0,0.5/TB))'"
        ));
        let file = decoder_args(
            Input::File(Path::new("in.mp4")),
            640,
            480,
            FrameRate::whole(25),
        )
        .join(" ");
        assert!(file.contains("-i in.mp4") && !file.contains("max_pixels"));
        assert!(
            !args.contains("nobuffer"),
            "-fflags nobuffer breaks decoding here"
        );
    }
}
