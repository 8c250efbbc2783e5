//! Where encoded media comes from: the browser's recorder over the WebSocket (chunks on a
//! channel, in the codec its Start announced) or a file (`process`). The decoder reads any
//! of them the same way; a camera or a push from a streaming tool arrives relayed as MPEG-TS
//! by its channel's ingest ([`crate::channel`]).

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
    /// MPEG-TS relayed from a camera channel's ingest (a camera's or a publisher's video,
    /// copied, not re-encoded); the decoder finds the codec (H.264 or H.265) in the stream.
    Relay { chunks: mpsc::Receiver<Bytes> },
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
