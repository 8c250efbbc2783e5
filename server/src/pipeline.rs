//! One pipeline for every front door: a [`Source`] of encoded media → decoder → frames for
//! the caller's frame path → encoder → a [`Sink`] (live LL-HLS in memory with its
//! recording, or a VOD folder). A live session and `process` start it the same way; they
//! differ only in how they drive the frame path between [`Pipeline::frames`] and
//! [`Pipeline::encoder_input`].

use crate::child::Spawner;
use crate::error::ServerError;
use crate::hls::packager::PackagerSettings;
use crate::hls::publisher::{Publisher, SegmentStore};
use crate::hls::stream::Stream;
use crate::source::Source;
use crate::video::decoder::Decoder;
use crate::video::encoder::{Encoder, EncoderOutput, EncoderSettings};
use crate::video::frame::{Frame, FramePool, Shape};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Where the encoded output goes.
pub enum Sink {
    /// Live LL-HLS: the packager publishes every part into `stream` and hands complete
    /// segments to `store` (the recording), if any.
    Live {
        packager: PackagerSettings,
        stream: watch::Sender<Arc<Stream>>,
        store: Option<SegmentStore>,
    },
    /// A VOD HLS playlist with every segment, written by the encoder into a folder, with
    /// the first audio stream of `audio_from` (a file source's own sound) if it has one.
    Vod {
        dir: PathBuf,
        audio_from: Option<PathBuf>,
    },
}

/// Frames buffered between the stages.
#[derive(Debug, Clone, Copy)]
pub struct Queues {
    /// Decoded frames toward the frame path.
    pub frames: usize,
    /// Finished frames toward the encoder.
    pub encoder: usize,
}

/// A started pipeline: the children run; the caller drives frames from `frames` through
/// its frame path into `encoder_input`, then finishes the parts.
pub struct Pipeline {
    pub decoder: Decoder,
    pub frames: mpsc::Receiver<Frame>,
    pub encoder: Encoder,
    pub encoder_input: mpsc::Sender<Frame>,
    /// The live sink's publisher (`None` for a VOD folder, which the encoder writes).
    pub publisher: Option<Publisher>,
}

impl Pipeline {
    /// Spawns the decoder reading `source` and the encoder writing `sink`, both through
    /// `spawner`, with frames of `encoding`'s size and rate from `pool`.
    pub fn start(
        spawner: &dyn Spawner,
        source: Source,
        encoding: &EncoderSettings,
        sink: Sink,
        queues: Queues,
        pool: &FramePool,
    ) -> Result<Self, ServerError> {
        let shape = Shape {
            width: encoding.width,
            height: encoding.height,
            fps: encoding.fps,
        };
        let (frame_tx, frames) = mpsc::channel(queues.frames);
        let (encoder_input, encoder_rx) = mpsc::channel(queues.encoder);
        let decoder = Decoder::start(spawner, source, shape, frame_tx, pool.clone())?;
        let output = match &sink {
            Sink::Live { .. } => EncoderOutput::Fragments,
            Sink::Vod { dir, audio_from } => EncoderOutput::Vod {
                dir: dir.clone(),
                audio_from: audio_from.clone(),
            },
        };
        let (encoder, fragments) =
            Encoder::start(spawner, encoding, &output, encoder_rx, pool.clone())?;
        let publisher = match sink {
            Sink::Live {
                packager,
                stream,
                store,
            } => Some(Publisher::start(fragments, shape, packager, stream, store)),
            Sink::Vod { .. } => None,
        };
        Ok(Pipeline {
            decoder,
            frames,
            encoder,
            encoder_input,
            publisher,
        })
    }
}
