//! A stand-in for ffmpeg in unit tests: a [`Spawner`] whose children are tasks on the test's
//! runtime (so paused time drives them). The decoder turns every chunk into one frame of
//! the size in its `scale=` argument; the encoder writes FLV as
//! ffmpeg does: a sequence header, then a tag per frame (a keyframe every `-g` frames), and
//! can be told to die after a number of frames. Both exit 0 when their stdin ends and as if killed by SIGKILL when killed.

use crate::child::{Exit, ExitReporter, Process, Spawned, Spawner};
use crate::error::{Role, ServerError};
use crate::hls::flv::tests::{frame as flv_frame, header, sequence};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Raw wait status of a child killed by SIGKILL.
const KILLED: i32 = 9;
/// The fake encoder's milliseconds a frame (about 30 fps; the reader counts frames).
const MILLIS: u64 = 33;

/// What the fake children do.
#[derive(Debug, Default)]
pub struct FakeFfmpeg {
    /// The encoder exits with status 1 after this many frames.
    pub encoder_dies_after: Option<u64>,
    /// Children started and not yet exited.
    pub running: Arc<AtomicUsize>,
    /// Every frame the encoders read, in order.
    pub encoded: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

/// A fake child: killed through `kill`, its exit published on `status` (a raw wait status).
struct FakeProcess {
    kill: CancellationToken,
    status: watch::Receiver<Option<i32>>,
}

impl Process for FakeProcess {
    fn start_kill(&mut self) -> std::io::Result<()> {
        self.kill.cancel();
        Ok(())
    }

    fn wait(&mut self) -> Exit<'_> {
        Box::pin(async move {
            let status = self
                .status
                .wait_for(Option::is_some)
                .await
                .map_err(|_| std::io::Error::other("fake child vanished"))?;
            Ok(ExitStatus::from_raw(status.unwrap_or(KILLED)))
        })
    }
}

/// The frame size given by `key` in `args`: the argument after `-s` (`640x480`), or the
/// rest of the argument holding `scale=` (`…,scale=640:480`).
fn size_after(args: &[String], key: &str, sep: char) -> (u32, u32) {
    let text = match args.iter().position(|a| a == key) {
        Some(i) => args[i + 1].clone(),
        None => args
            .iter()
            .find_map(|a| Some(a[a.find(key)? + key.len()..].to_owned()))
            .expect("frame size in the arguments"),
    };
    let (w, h) = text.split_once(sep).expect("a WxH size");
    let h: String = h.chars().take_while(char::is_ascii_digit).collect();
    (w.parse().expect("width"), h.parse().expect("height"))
}

impl Spawner for FakeFfmpeg {
    fn spawn(&self, role: Role, args: &[String]) -> Result<Spawned, ServerError> {
        let (stdin, child_in) = tokio::io::duplex(1 << 20);
        let (child_out, stdout) = tokio::io::duplex(1 << 20);
        let kill = CancellationToken::new();
        let (status_tx, status) = watch::channel(None);
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let work = match role {
            Role::Encoder => {
                let (w, h) = size_after(args, "-s", 'x');
                let gop = args
                    .iter()
                    .position(|a| a == "-g")
                    .and_then(|i| args.get(i + 1)?.parse().ok())
                    .unwrap_or(30u64);
                tokio::spawn(encode(
                    child_in,
                    child_out,
                    Frames::of(w, h),
                    gop,
                    self.encoder_dies_after,
                    self.encoded.clone(),
                ))
            }
            _ => {
                let (w, h) = size_after(args, "scale=", ':');
                tokio::spawn(decode(child_in, child_out, Frames::of(w, h)))
            }
        };
        let killed = kill.clone();
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = killed.cancelled() => KILLED,
                code = work => code.unwrap_or(KILLED),
            };
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = status_tx.send(Some(code));
        });
        Ok(Spawned {
            process: Box::new(FakeProcess { kill, status }),
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            exit: ExitReporter::new(role),
            tasks: TaskTracker::new(),
        })
    }
}

/// A raw frame's byte length.
struct Frames(usize);

impl Frames {
    fn of(width: u32, height: u32) -> Self {
        Frames(crate::video::frame::Frame::byte_len(width, height))
    }
}

/// Bytes of input the fake decoder turns into one frame.
pub const BYTES_PER_FRAME: usize = 100;

/// One frame out per [`BYTES_PER_FRAME`] in; exit 0 at the end of the input.
async fn decode(mut input: DuplexStream, mut output: DuplexStream, frames: Frames) -> i32 {
    let mut chunk = vec![0u8; BYTES_PER_FRAME];
    let frame = vec![128u8; frames.0];
    loop {
        if input.read_exact(&mut chunk).await.is_err() {
            return 0;
        }
        if output.write_all(&frame).await.is_err() {
            return 0;
        }
    }
}

/// An init segment, then a fragment per frame; exit 0 at the end of the input, or 1 after
/// `dies_after` frames.
async fn encode(
    mut input: DuplexStream,
    mut output: DuplexStream,
    frames: Frames,
    gop: u64,
    dies_after: Option<u64>,
    encoded: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) -> i32 {
    let mut init = header();
    init.extend(sequence());
    if output.write_all(&init).await.is_err() {
        return 1;
    }
    let mut frame = vec![0u8; frames.0];
    for n in 0u64.. {
        if dies_after == Some(n) {
            return 1;
        }
        if input.read_exact(&mut frame).await.is_err() {
            return 0;
        }
        encoded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(frame.clone());
        let bytes = flv_frame((n * MILLIS) as u32, n % gop == 0, &n.to_be_bytes());
        if output.write_all(&bytes).await.is_err() {
            return 1;
        }
    }
    0
}
