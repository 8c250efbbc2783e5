//! Where media comes from: the browser's recorder over the WebSocket (chunks on a channel,
//! in the codec its Start announced) or a file (`process`), both decoded by the session's
//! decoder; or a camera or a push from a streaming tool, decoded by its channel's ingest
//! ([`crate::channel`]), whose frames the pipeline reads as they are.

use bytes::Bytes;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// A source of encoded media for [`crate::pipeline::Pipeline::start`].
pub enum Source {
    /// A live stream in pieces (a recorder's WebM/MP4 chunks), written to the decoder's
    /// stdin as they arrive, decoded as `codec` (the only one accepted).
    Chunks {
        chunks: mpsc::Receiver<Bytes>,
        codec: Codec,
    },
    /// Raw frames already at the pipeline's size, rate and pixel format: a camera
    /// channel's ingest decodes its source itself, so no second ffmpeg runs. `first` is what
    /// was read before the pipeline started (the start of the first frame); `reader` yields
    /// the rest.
    Frames {
        first: Bytes,
        reader: crate::child::Output,
    },
    /// A file ffmpeg can read.
    File(PathBuf),
}

/// A live stream's video codec: the only one its decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    /// The name of ffmpeg's decoder for this codec.
    pub fn ffmpeg_decoder(self) -> &'static str {
        match self {
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::H264 => "h264",
        }
    }
}
