//! The typed WebSocket protocol spoken between the page and the server.
//!
//! Text frames carry JSON of [`ClientMsg`] (page → server) and [`ServerMsg`]
//! (server → page); media travels as binary frames and never appears here.
//! Both sides compile this module, so a change to the wire is a change to one type.
//! Every message, error kind and limit both sides rely on is here.

use serde::{Deserialize, Serialize};

/// Largest text frame either side accepts. Every legitimate message is far smaller; a
/// bigger one is rejected before it is parsed.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// Largest frame size a session may ask for (1080p). Larger frames would blow the
/// per-session memory budget (each raw BGR frame is width × height × 3 bytes).
pub const MAX_WIDTH: u32 = 1920;
/// See [`MAX_WIDTH`].
pub const MAX_HEIGHT: u32 = 1080;
/// Smallest frame size worth detecting faces in.
pub const MIN_SIDE: u32 = 64;

/// A message from the page to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMsg {
    /// Begin a session: binary frames that follow are the recorder's chunks, from chunk 0.
    Start {
        /// The MediaRecorder mimeType actually in use, e.g. `video/webm;codecs=vp9`.
        mime_type: String,
        /// Width of the camera frames in pixels.
        width: u32,
        /// Height of the camera frames in pixels.
        height: u32,
    },
    /// The recorder has stopped and its last chunk was sent: end the recording.
    Stop,
    /// Continue a session whose socket dropped (a network blip), as the first message of a
    /// new socket: `token` is the `resumeToken` of its `started` message. The server
    /// answers `resumed` with how many chunks it has; the page sends the rest, in order.
    Resume {
        /// The session's resume token.
        token: String,
    },
    /// Privacy mode: faces pixelated (`on: true`) instead of boxed; applies from the next
    /// frame not yet encoded, and to the next session if sent before Start.
    SetPrivacy {
        /// Whether privacy mode is on.
        on: bool,
    },
    /// Face detector settings, applied from the next detection; checked against
    /// [`DetectorSettings::check`] (out-of-range values get an `invalidSettings` error and
    /// change nothing).
    SetDetector(DetectorSettings),
}

/// The face detector's live settings: each detector has its own, and the page shows only
/// those of the detector the server runs (`started` names it by this value's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DetectorSettings {
    /// OpenCV's Haar cascade.
    Haar {
        /// Pyramid step: smaller finds more faces and costs more.
        scale_factor: f32,
        /// Neighbouring hits needed: higher means fewer false boxes.
        min_neighbors: u32,
        /// Smallest face reported, in frame pixels.
        min_face: u32,
    },
    /// The CenterFace network (the default).
    CenterFace {
        /// Lowest confidence (0–1) a face is boxed at.
        threshold: f32,
        /// Smallest face reported, in frame pixels.
        min_face: u32,
    },
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self::center_face()
    }
}

/// One setting a detector may have, with the limits the page and the server hold it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    ScaleFactor,
    MinNeighbors,
    MinFace,
    Threshold,
}

impl Setting {
    /// The words on the page.
    pub fn label(self) -> &'static str {
        match self {
            Setting::ScaleFactor => "Scale factor",
            Setting::MinNeighbors => "Min neighbours",
            Setting::MinFace => "Min face size",
            Setting::Threshold => "Confidence threshold",
        }
    }

    /// Its name in tests and element ids.
    pub fn id(self) -> &'static str {
        match self {
            Setting::ScaleFactor => "scale-factor",
            Setting::MinNeighbors => "min-neighbors",
            Setting::MinFace => "min-face",
            Setting::Threshold => "threshold",
        }
    }

    /// Allowed values (inclusive) and the slider's step. Scale factors below 1.05 make a
    /// detection several times longer, above 1.5 faces between pyramid levels are missed;
    /// a face may be as large as the largest frame; a threshold under 0.1 boxes noise and
    /// one over 0.95 boxes almost nothing.
    pub fn limits(self) -> (f64, f64, f64) {
        match self {
            Setting::ScaleFactor => (1.05, 1.5, 0.05),
            Setting::MinNeighbors => (1.0, 10.0, 1.0),
            Setting::MinFace => (16.0, MAX_HEIGHT as f64, 8.0),
            Setting::Threshold => (0.1, 0.95, 0.05),
        }
    }

    /// A value as the page shows it.
    pub fn show(self, value: f64) -> String {
        match self {
            Setting::ScaleFactor | Setting::Threshold => format!("{value:.2}"),
            Setting::MinNeighbors => format!("{value:.0}"),
            Setting::MinFace => format!("{value:.0} px"),
        }
    }
}

impl DetectorSettings {
    /// The defaults, stated once for the page and the server's `[detector]` settings
    /// (whose shipped `Leptos.toml` a test holds to them).
    pub const DEFAULT_SCALE_FACTOR: f64 = 1.1;
    pub const DEFAULT_MIN_NEIGHBORS: u32 = 3;
    pub const DEFAULT_MIN_FACE: u32 = 32;
    pub const DEFAULT_THRESHOLD: f32 = 0.5;

    /// The Haar cascade's defaults.
    pub fn haar() -> Self {
        DetectorSettings::Haar {
            scale_factor: Self::DEFAULT_SCALE_FACTOR as f32,
            min_neighbors: Self::DEFAULT_MIN_NEIGHBORS,
            min_face: Self::DEFAULT_MIN_FACE,
        }
    }

    /// CenterFace's defaults.
    pub fn center_face() -> Self {
        DetectorSettings::CenterFace {
            threshold: Self::DEFAULT_THRESHOLD,
            min_face: Self::DEFAULT_MIN_FACE,
        }
    }

    /// The detector's name, as the page says it.
    pub fn name(&self) -> &'static str {
        match self {
            DetectorSettings::Haar { .. } => "Haar cascade",
            DetectorSettings::CenterFace { .. } => "CenterFace",
        }
    }

    /// The settings this detector has, in the order the page shows them.
    pub fn settings(&self) -> &'static [Setting] {
        match self {
            DetectorSettings::Haar { .. } => &[
                Setting::ScaleFactor,
                Setting::MinNeighbors,
                Setting::MinFace,
            ],
            DetectorSettings::CenterFace { .. } => &[Setting::Threshold, Setting::MinFace],
        }
    }

    /// The value of `setting` (`None` if this detector has no such setting).
    pub fn get(&self, setting: Setting) -> Option<f64> {
        match (*self, setting) {
            (DetectorSettings::Haar { scale_factor, .. }, Setting::ScaleFactor) => {
                Some(scale_factor.into())
            }
            (DetectorSettings::Haar { min_neighbors, .. }, Setting::MinNeighbors) => {
                Some(min_neighbors.into())
            }
            (DetectorSettings::CenterFace { threshold, .. }, Setting::Threshold) => {
                Some(threshold.into())
            }
            (
                DetectorSettings::Haar { min_face, .. }
                | DetectorSettings::CenterFace { min_face, .. },
                Setting::MinFace,
            ) => Some(min_face.into()),
            _ => None,
        }
    }

    /// Sets `setting` to `value` (rounded for counts); false if this detector has no such
    /// setting. Limits are not applied here: [`DetectorSettings::check`] says.
    pub fn set(&mut self, setting: Setting, value: f64) -> bool {
        match (self, setting) {
            (DetectorSettings::Haar { scale_factor, .. }, Setting::ScaleFactor) => {
                *scale_factor = value as f32
            }
            (DetectorSettings::Haar { min_neighbors, .. }, Setting::MinNeighbors) => {
                *min_neighbors = value.round().max(0.0) as u32
            }
            (DetectorSettings::CenterFace { threshold, .. }, Setting::Threshold) => {
                *threshold = value as f32
            }
            (
                DetectorSettings::Haar { min_face, .. }
                | DetectorSettings::CenterFace { min_face, .. },
                Setting::MinFace,
            ) => *min_face = value.round().max(0.0) as u32,
            _ => return false,
        }
        true
    }

    /// Whether `other` is the same detector's settings.
    pub fn same_detector(&self, other: &DetectorSettings) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// `Ok` when every value is within its limits, else a sentence naming the first that is
    /// not (shown to the user).
    pub fn check(&self) -> Result<(), String> {
        for &setting in self.settings() {
            let (lo, hi, _) = setting.limits();
            let value = self.get(setting).unwrap_or(f64::NAN);
            // Compared as the f32 the value travels as: 1.05 as f32 is not below 1.05.
            let within = |v: f64| (lo as f32 as f64..=hi as f32 as f64).contains(&v);
            if !within(value) {
                return Err(format!(
                    "{} must be between {} and {}.",
                    setting.label(),
                    setting.show(lo),
                    setting.show(hi)
                ));
            }
        }
        Ok(())
    }
}

/// A message from the server to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMsg {
    /// The session's pipeline is running; media may flow.
    Started {
        /// The session's id (also the HLS folder name).
        session_id: String,
        /// Read-only link another browser can watch this session's processed stream at,
        /// `/watch/<token>`; it stops working when the session ends.
        viewer_url: String,
        /// The detector settings in force (the server's configured defaults).
        detector: DetectorSettings,
        /// Lets a new socket continue this session if this one drops ([`ClientMsg::Resume`]),
        /// within the server's grace period.
        resume_token: String,
        /// That grace period, in seconds (0: a dropped session ends at once).
        resume_grace_secs: u64,
    },
    /// A new socket took over the session ([`ClientMsg::Resume`]): the server has the
    /// first `chunks` recorder chunks; the page sends the following ones.
    Resumed {
        /// Chunks received so far.
        chunks: u64,
    },
    /// The first segment is complete: the processed stream can be played from `url`.
    PlaylistReady {
        /// Same-origin URL of the HLS playlist, `/hls/<session-id>/playlist.m3u8`.
        url: String,
        /// How far behind the live edge the player should stay, in seconds (about two
        /// segments: less stalls, more adds latency).
        live_sync_seconds: f32,
    },
    /// Live pipeline figures, sent at most a few times a second.
    Stats(Stats),
    /// The recording has ended (after a stop); the playlist carries `#EXT-X-ENDLIST`.
    Ended {
        /// The playlist URL, if a playlist was produced at all.
        url: Option<String>,
    },
    /// The recording is ready to download as one MP4 (after [`ServerMsg::Ended`]); the
    /// file stays until the server's retention time ends.
    RecordingReady {
        /// Same-origin URL of the MP4, `/hls/<session-id>/recording.mp4`.
        url: String,
        /// Seconds the file stays available (the rest of the retention time).
        available_secs: u64,
    },
    /// Something went wrong; `message` is written for the person in front of the page.
    /// Errors whose kind is not [`ErrorKind::is_fatal`] leave the session running.
    Error {
        /// What kind of problem it was.
        kind: ErrorKind,
        /// A user-facing sentence; never internal error text.
        message: String,
    },
}

impl ServerMsg {
    /// The error message for `kind`, with its standard user-facing text.
    pub fn error(kind: ErrorKind) -> Self {
        ServerMsg::Error {
            kind,
            message: kind.user_message().to_string(),
        }
    }
}

/// Pipeline figures for one session, cumulative counts plus recent rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Decoded frames per second over the last interval.
    pub fps_in: f32,
    /// Frames per second handed to the encoder over the last interval.
    pub fps_out: f32,
    /// Frames decoded since start.
    pub frames_in: u64,
    /// Frames encoded since start.
    pub frames_out: u64,
    /// Frames dropped anywhere (encoder backlog) since start.
    pub frames_dropped: u64,
    /// Frames the detector skipped because a newer one arrived first.
    pub detector_skipped: u64,
    /// Faces in the most recent detection.
    pub faces: u32,
    /// Milliseconds the most recent detection took.
    pub detect_ms: f32,
    /// HLS segments written so far.
    pub segments: u64,
    /// Faces the latest detection found but did not box: smaller than the minimum face
    /// size the user set (privacy mode hides them anyway).
    #[serde(default)]
    pub faces_small: u32,
    /// Recorder chunks the server has received so far: the page's acknowledgement (what
    /// it sent beyond this is still on its way).
    #[serde(default)]
    pub chunks: u64,
    /// When the server handled each frame that carried a frame code (the test clip's strip,
    /// [`crate::latency`]) since the last stats: the benchmark's latency budget matches them
    /// with the page's own sightings of the same codes. Empty with a real camera.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_times: Vec<FrameTimes>,
}

/// Where one coded frame was when, on the server (wall-clock milliseconds since the Unix
/// epoch, so a page on the same machine can line them up with its own clock).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameTimes {
    /// The frame code read from the decoded frame.
    pub code: u32,
    /// The decoder handed the frame to the frame path.
    pub decoded: f64,
    /// The frame path handed it (boxes drawn) to the encoder.
    pub sent: f64,
    /// Its part was published (a player may fetch it from then on).
    pub published: f64,
}

/// `GET /auth`: whether this server asks who streams, how, and whether this browser has
/// signed in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// What the server asks for, if anything.
    pub asks: Option<AuthAsk>,
    /// This browser has signed in (and its sign-in still holds).
    pub signed_in: bool,
}

/// What a server asks a browser for before it may stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthAsk {
    /// The operator's shared passphrase.
    Passphrase,
    /// An access token (a JWT the operator's sign-in system issued).
    Token,
}

/// `POST /auth` (with the page's CSRF token in `x-csrf-token`): the passphrase or token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    pub secret: String,
}

/// `GET /recordings.json`: the recordings the server keeps for this browser (its cookie),
/// so a reloaded page, or one opened after a restart, still offers them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptRecordings {
    /// Ready to download, newest last.
    pub recordings: Vec<KeptRecording>,
    /// This browser's sessions still running (another tab, or a page left a moment ago)
    /// or whose recording is still being made: asking again soon finds more.
    pub finishing: u32,
}

/// One kept recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptRecording {
    /// Its download URL.
    pub url: String,
    /// Seconds it stays downloadable.
    pub available_secs: u64,
}

/// The kinds of error a client can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// The text frame was not a known message.
    BadMessage,
    /// The message was valid but not allowed now (e.g. media before start).
    Protocol,
    /// The announced media type or size is not supported.
    UnsupportedMedia,
    /// The binary data is not a WebM/Matroska stream.
    BadMedia,
    /// A frame exceeded the size limit.
    TooLarge,
    /// Messages arrived faster than allowed.
    RateLimited,
    /// The server is at its session limit: its sessions take the room.
    Busy,
    /// The machine is under heavy load from other work than its sessions: no room now.
    Overloaded,
    /// The video could not be processed (decoder or encoder failed).
    Pipeline,
    /// The session was idle for too long.
    Idle,
    /// The server is shutting down.
    ShuttingDown,
    /// Detector settings out of range; nothing changed and the session goes on.
    InvalidSettings,
    /// The recording could not be made into a download; the stream itself was fine.
    Recording,
    /// The session reached the longest length the server allows and was ended.
    TooLong,
    /// The server is out of disk space for recordings: not started, or ended.
    Storage,
    /// This browser already runs as many sessions as one browser may.
    ClientLimit,
    /// A dropped session could not be continued (its grace period is over, or the page no
    /// longer has the chunks the server missed).
    ResumeFailed,
    /// The server asks who streams (`[auth]`) and this browser has not signed in.
    AuthRequired,
}

impl ErrorKind {
    /// Every kind, for listing them (metrics register one series per kind).
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::BadMessage,
        ErrorKind::Protocol,
        ErrorKind::UnsupportedMedia,
        ErrorKind::BadMedia,
        ErrorKind::TooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Busy,
        ErrorKind::Overloaded,
        ErrorKind::Pipeline,
        ErrorKind::Idle,
        ErrorKind::ShuttingDown,
        ErrorKind::InvalidSettings,
        ErrorKind::Recording,
        ErrorKind::TooLong,
        ErrorKind::Storage,
        ErrorKind::ClientLimit,
        ErrorKind::ResumeFailed,
    ];

    /// The sentence shown to the user for this kind.
    pub fn user_message(self) -> &'static str {
        match self {
            ErrorKind::BadMessage => "The server did not understand a message from this page.",
            ErrorKind::Protocol => "The page and the server got out of step; please start again.",
            ErrorKind::UnsupportedMedia => {
                "This browser's video format or camera size is not supported."
            }
            ErrorKind::BadMedia => "The video sent by this page could not be read.",
            ErrorKind::TooLarge => "A piece of video was larger than the server accepts.",
            ErrorKind::RateLimited => "The page sent data faster than the server accepts.",
            ErrorKind::Busy => "The server is busy with other sessions; please try again later.",
            ErrorKind::Overloaded => {
                "The server is under heavy load right now (not from other sessions); please try again in a minute."
            }
            ErrorKind::Pipeline => "The server could not process the video stream.",
            ErrorKind::Idle => "The session was closed because no video arrived for a while.",
            ErrorKind::ShuttingDown => "The server is shutting down, so this session ended. Reload this page once the server is back: its recording is offered there if the server could finish it.",
            ErrorKind::InvalidSettings => "Those detector settings are outside their limits.",
            ErrorKind::Recording => "The recording could not be prepared for download.",
            ErrorKind::TooLong => {
                "The session reached the longest length this server allows and was ended; the recording is kept. Press Start to go on."
            }
            ErrorKind::Storage => {
                "The server has no room left for recordings; please try again later."
            }
            ErrorKind::ClientLimit => {
                "This browser (or this network) already runs as many sessions as the server allows one; stop one first."
            }
            ErrorKind::ResumeFailed => {
                "The connection was lost for too long and the session has ended. Press Start to begin a new one."
            }
            ErrorKind::AuthRequired => {
                "This server lets only signed-in people stream: sign in below, then press Start."
            }
        }
    }

    /// Whether the session ends with this error (all but settings and download problems,
    /// and the maximum length: that session ends like a Stop, its recording offered after).
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            ErrorKind::InvalidSettings | ErrorKind::Recording | ErrorKind::TooLong
        )
    }

    /// The kind's wire name (as serialised), e.g. for metric labels.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadMessage => "badMessage",
            ErrorKind::Protocol => "protocol",
            ErrorKind::UnsupportedMedia => "unsupportedMedia",
            ErrorKind::BadMedia => "badMedia",
            ErrorKind::TooLarge => "tooLarge",
            ErrorKind::RateLimited => "rateLimited",
            ErrorKind::Busy => "busy",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Pipeline => "pipeline",
            ErrorKind::Idle => "idle",
            ErrorKind::ShuttingDown => "shuttingDown",
            ErrorKind::InvalidSettings => "invalidSettings",
            ErrorKind::Recording => "recording",
            ErrorKind::TooLong => "tooLong",
            ErrorKind::Storage => "storage",
            ErrorKind::AuthRequired => "authRequired",
            ErrorKind::ClientLimit => "clientLimit",
            ErrorKind::ResumeFailed => "resumeFailed",
        }
    }
}

/// Why a text frame could not be turned into a [`ClientMsg`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_TEXT_BYTES`].
    #[error("text message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The frame is not a known message.
    #[error("unknown or malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The error kind the client is told.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::TooLarge(_) => ErrorKind::TooLarge,
            DecodeError::Malformed(_) => ErrorKind::BadMessage,
        }
    }
}

impl ClientMsg {
    /// Parses one text frame, refusing oversized or unknown input.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(DecodeError::TooLarge(text.len()));
        }
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    /// The JSON text of this message.
    pub fn encode(&self) -> String {
        // A derived Serialize of these plain enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerMsg {
    /// Parses one text frame from the server.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    /// The JSON text of this message.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Checks a start request's size: even, within [`MIN_SIDE`]..=[`MAX_WIDTH`]×[`MAX_HEIGHT`]
/// (H.264 4:2:0 needs even sides).
pub fn valid_frame_size(width: u32, height: u32) -> bool {
    (MIN_SIDE..=MAX_WIDTH).contains(&width)
        && (MIN_SIDE..=MAX_HEIGHT).contains(&height)
        && width.is_multiple_of(2)
        && height.is_multiple_of(2)
}

/// The four bytes every WebM/Matroska stream starts with (the EBML header id).
pub const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];

/// Whether the first bytes of a session's media (`prefix`, however few arrived so far;
/// browsers may send the header in pieces as small as one byte) can start a WebM/Matroska
/// stream.
pub fn looks_like_webm(prefix: &[u8]) -> bool {
    let n = prefix.len().min(EBML_MAGIC.len());
    prefix[..n] == EBML_MAGIC[..n]
}

/// The container a recorder mimeType names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// WebM or Matroska (Chromium, Firefox).
    Matroska,
    /// Fragmented MP4 (Safari and every iOS browser).
    Mp4,
}

impl Container {
    /// Bytes of the stream's start that [`Container::accepts`] looks at.
    pub const PREFIX: usize = 8;

    /// Whether `prefix` (however few bytes arrived so far) can start this container: the
    /// EBML header id, or an MP4 `ftyp` box (4 size bytes, then `ftyp`).
    pub fn accepts(self, prefix: &[u8]) -> bool {
        match self {
            Container::Matroska => looks_like_webm(prefix),
            Container::Mp4 => {
                let tail = prefix.get(4..).unwrap_or_default();
                let n = tail.len().min(4);
                tail[..n] == b"ftyp"[..n]
            }
        }
    }
}

/// The video codec a session's recorder announced. The server decodes only that codec
/// (anything else in the stream is refused as bad media), so a client cannot smuggle in
/// whatever else ffmpeg happens to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCodec {
    Vp8,
    Vp9,
    H264,
}

impl InputCodec {
    /// The codec of a recorder mimeType (see [`media_format`]).
    pub fn from_mime(mime: &str) -> Option<Self> {
        media_format(mime).map(|(_, codec)| codec)
    }

    /// The name of ffmpeg's decoder for this codec.
    pub fn ffmpeg_decoder(self) -> &'static str {
        match self {
            InputCodec::Vp8 => "vp8",
            InputCodec::Vp9 => "vp9",
            InputCodec::H264 => "h264",
        }
    }
}

/// The container and codec a recorder mimeType announces: WebM/Matroska with VP8, VP9 or
/// H.264 (`avc1…`), or MP4 with H.264 (Safari records nothing else), the codec named in an
/// explicit `codecs` parameter. `None` for anything else.
pub fn media_format(mime: &str) -> Option<(Container, InputCodec)> {
    let mut parts = mime.split(';');
    let container = match parts.next()?.trim().to_ascii_lowercase().as_str() {
        "video/webm" | "video/x-matroska" | "video/matroska" => Container::Matroska,
        "video/mp4" => Container::Mp4,
        _ => return None,
    };
    let codecs = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("codecs"))?
        .1
        .trim()
        .trim_matches('"')
        .to_ascii_lowercase();
    // The first listed codec is the video one (audio is not recorded).
    let video = codecs.split(',').next()?.trim();
    let codec = match video.split('.').next()? {
        "vp8" | "vp08" => InputCodec::Vp8,
        "vp9" | "vp09" => InputCodec::Vp9,
        "h264" | "avc1" | "avc3" => InputCodec::H264,
        _ => return None,
    };
    match (container, codec) {
        (Container::Mp4, InputCodec::H264) | (Container::Matroska, _) => Some((container, codec)),
        (Container::Mp4, _) => None,
    }
}

/// Whether the server can decode a recorder mimeType (see [`media_format`]).
pub fn supported_mime(mime: &str) -> bool {
    media_format(mime).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_round_trip() {
        let msgs = [
            ClientMsg::Start {
                mime_type: "video/webm;codecs=vp9".into(),
                width: 640,
                height: 480,
            },
            ClientMsg::Stop,
            ClientMsg::SetPrivacy { on: true },
            ClientMsg::SetDetector(DetectorSettings::default()),
        ];
        for msg in msgs {
            assert_eq!(ClientMsg::decode(&msg.encode()), Ok(msg));
        }
    }

    #[test]
    fn start_has_the_documented_json_shape() {
        let msg = ClientMsg::decode(
            r#"{"type":"start","mimeType":"video/webm;codecs=vp9","width":640,"height":480}"#,
        )
        .unwrap();
        assert_eq!(
            msg,
            ClientMsg::Start {
                mime_type: "video/webm;codecs=vp9".into(),
                width: 640,
                height: 480
            }
        );
        assert_eq!(ClientMsg::Stop.encode(), r#"{"type":"stop"}"#);
        assert_eq!(
            ClientMsg::Resume { token: "ab".into() }.encode(),
            r#"{"type":"resume","token":"ab"}"#
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = [
            ServerMsg::Started {
                session_id: "ab".into(),
                viewer_url: "/watch/cd".into(),
                detector: DetectorSettings::default(),
                resume_token: "ef".into(),
                resume_grace_secs: 6,
            },
            ServerMsg::Resumed { chunks: 42 },
            ServerMsg::RecordingReady {
                url: "/hls/ab/recording.mp4".into(),
                available_secs: 600,
            },
            ServerMsg::PlaylistReady {
                url: "/hls/ab/playlist.m3u8".into(),
                live_sync_seconds: 0.5,
            },
            ServerMsg::Stats(Stats {
                fps_in: 30.0,
                faces: 1,
                ..Stats::default()
            }),
            ServerMsg::Ended { url: None },
            ServerMsg::error(ErrorKind::Busy),
        ];
        for msg in msgs {
            assert_eq!(ServerMsg::decode(&msg.encode()), Ok(msg));
        }
        assert_eq!(
            ServerMsg::PlaylistReady {
                url: "/x".into(),
                live_sync_seconds: 0.5
            }
            .encode(),
            r#"{"type":"playlistReady","url":"/x","liveSyncSeconds":0.5}"#
        );
    }

    #[test]
    fn malformed_and_unknown_messages_are_typed_errors() {
        for bad in [
            "",
            "null",
            "{}",
            r#"{"type":"launch"}"#,
            r#"{"type":"start"}"#,
            "\u{0}",
        ] {
            let err = ClientMsg::decode(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadMessage, "{bad:?}");
        }
        let huge = format!(
            r#"{{"type":"stop","pad":"{}"}}"#,
            "x".repeat(MAX_TEXT_BYTES)
        );
        assert_eq!(
            ClientMsg::decode(&huge).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn detector_settings_have_the_documented_shape_and_limits() {
        let msg = ClientMsg::decode(
            r#"{"type":"setDetector","kind":"haar","scaleFactor":1.2,"minNeighbors":5,"minFace":80}"#,
        )
        .unwrap();
        let ClientMsg::SetDetector(haar) = msg else {
            panic!("unexpected {msg:?}");
        };
        assert_eq!(haar.check(), Ok(()));
        assert_eq!(haar.name(), "Haar cascade");
        let msg = ClientMsg::decode(
            r#"{"type":"setDetector","kind":"centerFace","threshold":0.7,"minFace":80}"#,
        )
        .unwrap();
        let ClientMsg::SetDetector(center) = msg else {
            panic!("unexpected {msg:?}");
        };
        assert_eq!(center.get(Setting::Threshold), Some(0.7f32 as f64));
        assert!(!center.same_detector(&haar));
        assert_eq!(center.settings(), &[Setting::Threshold, Setting::MinFace]);
        assert_eq!(center.get(Setting::ScaleFactor), None, "not CenterFace's");
        for ok in [DetectorSettings::haar(), DetectorSettings::center_face()] {
            assert_eq!(ok.check(), Ok(()));
        }
        let out_of_range = [
            (DetectorSettings::haar(), Setting::ScaleFactor, 1.0),
            (DetectorSettings::haar(), Setting::ScaleFactor, f64::NAN),
            (DetectorSettings::haar(), Setting::MinNeighbors, 0.0),
            (DetectorSettings::haar(), Setting::MinNeighbors, 11.0),
            (DetectorSettings::haar(), Setting::MinFace, 8.0),
            (DetectorSettings::center_face(), Setting::MinFace, 5000.0),
            (DetectorSettings::center_face(), Setting::Threshold, 0.0),
            (DetectorSettings::center_face(), Setting::Threshold, 0.99),
        ];
        for (mut settings, setting, value) in out_of_range {
            assert!(settings.set(setting, value));
            assert!(settings.check().is_err(), "{settings:?}");
        }
        assert_eq!(
            {
                let mut s = DetectorSettings::center_face();
                s.set(Setting::Threshold, 0.99);
                s.check()
            },
            Err("Confidence threshold must be between 0.10 and 0.95.".into())
        );
        // A setting the detector lacks is refused, not silently stored.
        assert!(!DetectorSettings::center_face().set(Setting::MinNeighbors, 3.0));
        // Negative or fractional counts, missing fields or no kind are not settings at all.
        for text in [
            r#"{"type":"setDetector","kind":"haar","scaleFactor":1.2,"minNeighbors":-1,"minFace":80}"#,
            r#"{"type":"setDetector","kind":"haar","scaleFactor":1.2,"minNeighbors":3}"#,
            r#"{"type":"setDetector","scaleFactor":1.2,"minNeighbors":3,"minFace":80}"#,
        ] {
            assert_eq!(
                ClientMsg::decode(text).unwrap_err().kind(),
                ErrorKind::BadMessage
            );
        }
    }

    #[test]
    fn error_kind_codes_are_their_wire_names() {
        use ErrorKind::*;
        assert_eq!(ErrorKind::ALL.len(), 17, "every kind is listed");
        for kind in ErrorKind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.code())
            );
            assert_eq!(
                kind.is_fatal(),
                !matches!(kind, InvalidSettings | Recording | TooLong)
            );
        }
    }

    #[test]
    fn error_messages_are_user_facing_text() {
        match ServerMsg::error(ErrorKind::Pipeline) {
            ServerMsg::Error { message, .. } => {
                assert_eq!(message, ErrorKind::Pipeline.user_message())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frame_sizes_and_mimes_are_checked() {
        assert!(valid_frame_size(640, 480));
        assert!(valid_frame_size(1920, 1080));
        assert!(!valid_frame_size(641, 480));
        assert!(!valid_frame_size(0, 0));
        assert!(!valid_frame_size(4000, 480));
        assert!(supported_mime("video/webm;codecs=vp9"));
        assert!(supported_mime("video/x-matroska;codecs=avc1"));
        assert!(!supported_mime("video/mp4"), "the codec must be named");
        assert!(supported_mime("video/mp4;codecs=avc1.42E01E"));
        assert!(!supported_mime("video/mp4;codecs=vp9"));
        assert!(!supported_mime(""));
        assert!(Container::Mp4.accepts(&[0, 0, 0, 0x1c, b'f', b't']));
        assert!(Container::Mp4.accepts(&[0, 0, 0]));
        assert!(!Container::Mp4.accepts(b"\x1a\x45\xdf\xa3moov"));
        assert!(Container::Matroska.accepts(&EBML_MAGIC));
        assert!(!supported_mime("video/webm"), "the codec must be named");
        for (mime, codec) in [
            ("video/webm;codecs=vp9", Some(InputCodec::Vp9)),
            (
                "video/webm; codecs=\"vp09.00.10.08\"",
                Some(InputCodec::Vp9),
            ),
            ("video/webm;codecs=vp8", Some(InputCodec::Vp8)),
            ("video/webm;codecs=h264", Some(InputCodec::H264)),
            (
                "video/x-matroska;codecs=avc1.42E01E,opus",
                Some(InputCodec::H264),
            ),
            ("video/webm;codecs=av1", None),
            ("video/ogg;codecs=vp8", None),
        ] {
            assert_eq!(InputCodec::from_mime(mime), codec, "{mime}");
        }
        assert!(looks_like_webm(&[0x1a, 0x45, 0xdf, 0xa3, 0x01]));
        assert!(!looks_like_webm(b"GIF89a"));
        assert!(
            looks_like_webm(&[0x1a]),
            "a one-byte first chunk is a valid start"
        );
        assert!(looks_like_webm(&[0x1a, 0x45]));
        assert!(!looks_like_webm(&[0x1a, 0x00]));
    }
}
