//! The MediaRecorder: picks a WebM mimeType and hands each timeslice chunk to a callback.

use super::MediaError;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Blob, BlobEvent, Event, MediaRecorder, MediaRecorderOptions, MediaStream};

/// Recorder formats in order of preference: H.264 keeps 30 fps in Chromium, is cheap for
/// the laptop to encode (often in hardware) and costs the server less than half of VP9 to
/// decode; VP9 next; VP8 (Firefox's only choice) drops frames in Chromium. MP4 last: it is
/// all Safari (and so every iOS browser) records, in fragments at the timeslice; Chromium's
/// MP4 recorder ignores the timeslice, so WebM wins wherever it exists.
pub const PREFERRED_MIMES: [&str; 6] = [
    "video/webm;codecs=h264",
    "video/x-matroska;codecs=avc1",
    "video/webm;codecs=vp9",
    "video/webm;codecs=vp8",
    "video/mp4;codecs=avc1",
    "video/mp4",
];

/// The mimeType announced to the server for a recorder format: the server decodes only a
/// named codec, and a browser MP4 recorder records H.264.
pub fn announced(mime: &str) -> &str {
    if mime == "video/mp4" {
        "video/mp4;codecs=avc1"
    } else {
        mime
    }
}

/// Chunk length: short, so the server sees frames soon after capture.
const TIMESLICE_MS: i32 = 20;

/// Target bitrate: plenty for 640×480 and cheap to decode.
const VIDEO_BITS_PER_SECOND: u32 = 2_500_000;

/// The first supported mimeType of [`PREFERRED_MIMES`].
pub fn pick_mime() -> Option<&'static str> {
    PREFERRED_MIMES
        .into_iter()
        .find(|m| MediaRecorder::is_type_supported(m))
}

/// A running recorder; owns its event closures and stops when dropped.
pub struct Recorder {
    inner: MediaRecorder,
    _on_data: Closure<dyn FnMut(BlobEvent)>,
    _on_stop: Closure<dyn FnMut(Event)>,
}

impl Recorder {
    /// Records `stream` as `mime`, calling `on_chunk` for every chunk and `on_stop` after
    /// the last chunk once stopped.
    pub fn start(
        stream: &MediaStream,
        mime: &str,
        mut on_chunk: impl FnMut(Blob) + 'static,
        mut on_stop: impl FnMut() + 'static,
    ) -> Result<Self, MediaError> {
        let options = MediaRecorderOptions::new();
        options.set_mime_type(mime);
        options.set_video_bits_per_second(VIDEO_BITS_PER_SECOND);
        let inner =
            MediaRecorder::new_with_media_stream_and_media_recorder_options(stream, &options)
                .map_err(|e| super::js_err("MediaRecorder", e))?;
        let on_data = Closure::<dyn FnMut(BlobEvent)>::new(move |event: BlobEvent| {
            if let Some(blob) = event.data() {
                if blob.size() > 0.0 {
                    on_chunk(blob);
                }
            }
        });
        let on_stop = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_stop());
        inner.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
        inner.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
        inner
            .start_with_time_slice(TIMESLICE_MS)
            .map_err(|e| super::js_err("MediaRecorder.start", e))?;
        Ok(Recorder {
            inner,
            _on_data: on_data,
            _on_stop: on_stop,
        })
    }

    /// Whether it is recording (not stopped or stopping).
    pub fn is_recording(&self) -> bool {
        self.inner.state() == web_sys::RecordingState::Recording
    }

    /// Stops recording; the last chunk and then the stop callback follow asynchronously.
    /// Returns false if the recorder was not recording (nothing will follow).
    pub fn stop(&self) -> bool {
        if self.inner.state() == web_sys::RecordingState::Inactive {
            return false;
        }
        self.inner.stop().is_ok()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.inner.set_ondataavailable(None);
        self.inner.set_onstop(None);
        if self.inner.state() != web_sys::RecordingState::Inactive {
            let _ = self.inner.stop();
        }
    }
}
