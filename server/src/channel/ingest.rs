//! A channel's ingest: the ffmpeg child that pulls an RTSP camera, waits for an SRT
//! publisher, or plays a file in a loop, and decodes its video into the channel's raw
//! frames on stdout, which the channel's pipeline reads as a session's decoder output; and
//! what its stderr says when it fails, as a [`Fault`] the Channels page can show.

use crate::config::ChannelSource;
use crate::video::decoder::{frame_output_args, CAMERA_MAX_PIXELS, FILE_INPUT_GUARD};
use crate::video::frame::Shape;

/// How long an RTSP camera or an SRT publisher may stay silent (connect, or between
/// packets) before the ingest gives up and the channel reconnects.
pub const SILENCE_MICROS: u64 = 5_000_000;

/// How much of a live source ffmpeg reads to learn its streams: enough for a camera's first
/// keyframe with its parameter sets, never seconds of video.
const PROBE_BYTES: &str = "500000";
const PROBE_MICROS: &str = "500000";

/// ffmpeg arguments for `source`: its first video stream, decoded as `shape` raw frames on
/// stdout (the session decoder's output, [`frame_output_args`]). One ffmpeg both receives
/// and decodes: a second one that decoded a relayed copy cost a channel ~5 % more CPU than
/// a browser session.
///
/// The codec is read from the stream (H.264 or H.265 from a camera), the picture size is
/// capped at [`CAMERA_MAX_PIXELS`], corrupt packets (a camera's lost RTP packets) are
/// dropped, and it decodes on one thread, as a session's decoder does: frame threads hold
/// a frame each (33 ms) and cost ~15 % more CPU, and slice threads cost ~10 % more at the
/// channel's usual sizes (measured: 4 channels then cost 84 % of a core against 76 % for 4
/// sessions; on one thread both ~80 %). A 4K source still decodes in real time on one
/// thread here (~25 ms a frame).
///
/// RTSP over TCP (cameras behind NAT and firewalls drop UDP), with a socket timeout so a
/// camera that stops answering ends the ingest instead of hanging it. SRT in listener
/// mode with the channel's passphrase: libsrt derives the stream key from it, so a
/// publisher with another passphrase (or none) fails the handshake and never reaches
/// ffmpeg; once one publisher is connected the listener takes no second one. A file is
/// read at its own pace (`-re`), looped, through the same demuxer whitelist as `process`.
pub fn args(source: &ChannelSource, shape: Shape) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !matches!(source, ChannelSource::File(_)) {
        // A live source is probed for half a second at most: ffmpeg's default (5 s) held
        // a publisher's first 5 s back, which then burst through the pipeline at start.
        args.extend(
            ["-probesize", PROBE_BYTES, "-analyzeduration", PROBE_MICROS]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    args.extend(
        [
            "-max_pixels",
            &CAMERA_MAX_PIXELS.to_string(),
            "-fflags",
            "+discardcorrupt",
            "-threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    match source {
        ChannelSource::Rtsp { url } => {
            args.extend(
                [
                    "-rtsp_transport",
                    "tcp",
                    "-timeout",
                    &SILENCE_MICROS.to_string(),
                    "-i",
                    url.expose(),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        ChannelSource::Srt { bind, passphrase } => {
            args.push("-i".into());
            args.push(format!(
                "srt://{bind}?mode=listener&passphrase={}&pbkeylen=16&timeout={SILENCE_MICROS}",
                passphrase.expose()
            ));
        }
        ChannelSource::File(path) => {
            // No probing read-ahead: ffmpeg would read seconds of the file at full speed
            // before pacing it, and the channel would start with a burst.
            args.extend(
                ["-re", "-stream_loop", "-1", "-analyzeduration", "0"]
                    .iter()
                    .map(|s| s.to_string()),
            );
            args.extend(FILE_INPUT_GUARD.iter().map(|s| s.to_string()));
            args.push("-i".into());
            args.push(path.to_string_lossy().into_owned());
        }
    }
    args.extend(["-map".to_string(), "0:v:0".to_string()]);
    args.extend(frame_output_args(shape.width, shape.height, shape.fps));
    args
}

/// Why a channel's source is down, as the Channels page and `/metrics` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No answer: wrong host or port, the camera is off, or the network is down.
    Unreachable,
    /// The camera refused the user name or password.
    Credentials,
    /// The camera has no stream at that path.
    NotFound,
    /// An SRT publisher came with the wrong passphrase.
    KeyRefused,
    /// The video is in a codec the channel cannot carry (H.264 and H.265 can).
    UnsupportedCodec,
    /// The source connected but sent no video.
    Silent,
    /// The source ended its stream (a camera restarting, a publisher that stopped).
    Ended,
    /// The video could not be read (corrupt, or changed beyond what the decoder follows).
    Unreadable,
    /// The server has no room for another stream.
    NoRoom,
}

impl Fault {
    /// The label in `/metrics` and in the page's `data-why`.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Unreachable => "unreachable",
            Fault::Credentials => "credentials",
            Fault::NotFound => "not-found",
            Fault::KeyRefused => "key-refused",
            Fault::UnsupportedCodec => "unsupported-codec",
            Fault::Silent => "silent",
            Fault::Ended => "ended",
            Fault::Unreadable => "unreadable",
            Fault::NoRoom => "no-room",
        }
    }

    /// The words on the Channels page.
    pub fn sentence(self) -> &'static str {
        match self {
            Fault::Unreachable => "camera unreachable",
            Fault::Credentials => "wrong credentials",
            Fault::NotFound => "no such stream on the camera",
            Fault::KeyRefused => "key refused",
            Fault::UnsupportedCodec => "unsupported codec",
            Fault::Silent => "the source connected but sent no video",
            Fault::Ended => "the source ended its stream",
            Fault::Unreadable => "the video could not be read",
            Fault::NoRoom => "the server is at capacity",
        }
    }

    /// Whether trying again soon can help (a wrong password or codec needs the operator:
    /// those are retried slowly, not hammered).
    pub fn transient(self) -> bool {
        !matches!(
            self,
            Fault::Credentials | Fault::NotFound | Fault::UnsupportedCodec
        )
    }
}

/// What an ingest's stderr says went wrong (`sent_video`: whether any video came first;
/// `push`: the ingest listens for a publisher, as for SRT, and its socket times out only
/// once a publisher connected, so a time-out there is a silent publisher, not a camera
/// out of reach).
pub fn classify(stderr: &str, sent_video: bool, push: bool) -> Fault {
    let has = |needle: &str| stderr.contains(needle);
    if has("401 Unauthorized") || has("403 Forbidden") || has("authorization failed") {
        Fault::Credentials
    } else if !sent_video && (has("Incorrect passphrase") || has("BADSECRET")) {
        // (After video came, a refusal in the tail was another publisher's, turned away
        // before this one connected.)
        Fault::KeyRefused
    } else if has("404 Not Found") || has("454 Session Not Found") {
        Fault::NotFound
    } else if has("not currently supported in container")
        || has("codec not currently supported")
        || has("no decoder found")
        || (has("Decoder (codec") && has("not found"))
        || has("Unsupported codec")
        || has("unsupported codec")
    {
        Fault::UnsupportedCodec
    } else if has("Connection refused")
        || has("No route to host")
        || has("Name or service not known")
        || has("Temporary failure in name resolution")
        || has("Network is unreachable")
        || (!sent_video && !push && has("timed out"))
    {
        Fault::Unreachable
    } else if !sent_video && (has("Connection timed out") || has("Input/output error")) {
        Fault::Silent
    } else if has("Invalid data found") {
        Fault::Unreadable
    } else if sent_video {
        Fault::Ended
    } else {
        Fault::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn each_source_is_decoded_to_the_channels_frames_on_stdout() {
        let shape = Shape {
            width: 640,
            height: 480,
            fps: crate::video::frame::FrameRate::whole(30),
        };
        let rtsp = args(
            &ChannelSource::Rtsp {
                url: Secret::new("rtsp://u:p@cam/s"),
            },
            shape,
        )
        .join(" ");
        assert!(rtsp.contains("-rtsp_transport tcp -timeout 5000000 -i rtsp://u:p@cam/s"));
        assert!(rtsp.contains("-map 0:v:0 -an -threads 1 -vf setpts="));
        assert!(rtsp
            .ends_with(",scale=640:480 -r 30 -f rawvideo -pix_fmt bgr24 -flush_packets 1 pipe:1"));
        assert!(
            rtsp.contains("-max_pixels 9437184 -fflags +discardcorrupt -threads 1 -rtsp_transport"),
            "capped pictures, one decoding thread (frame threads hold a frame each)"
        );
        let srt = args(
            &ChannelSource::Srt {
                bind: "0.0.0.0:9000".parse().unwrap(),
                passphrase: Secret::new("0123456789ab"),
            },
            shape,
        )
        .join(" ");
        assert!(srt.contains("srt://0.0.0.0:9000?mode=listener&passphrase=0123456789ab"));
        assert!(srt.contains("-probesize 500000 -analyzeduration 500000 -max_pixels"));
        assert!(!srt.contains("-re "), "a live source is not paced");
        let file = args(&ChannelSource::File("clip.mkv".into()), shape).join(" ");
        assert!(file.contains("-max_pixels 9437184 -fflags +discardcorrupt -threads 1 -re -stream_loop -1 -analyzeduration 0 -protocol_whitelist file"));
        assert!(file.ends_with("-pix_fmt bgr24 -flush_packets 1 pipe:1"));
    }

    #[test]
    fn stderr_names_the_fault() {
        for (stderr, sent, want) in [
            (
                "[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized | rtsp://***@h/cam: Server returned 401 Unauthorized (authorization failed)",
                false,
                Fault::Credentials,
            ),
            ("rtsp://h:1/cam: Connection refused", false, Fault::Unreachable),
            (
                "processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase",
                false,
                Fault::KeyRefused,
            ),
            ("method DESCRIBE failed: 404 Not Found", false, Fault::NotFound),
            (
                "Could not write header for output file #0 (incorrect codec parameters ?): codec not currently supported in container",
                false,
                Fault::UnsupportedCodec,
            ),
            ("", true, Fault::Ended),
            ("srt://***: Input/output error", false, Fault::Silent),
            ("1010 - Incorrect passphrase | (later the right one came)", true, Fault::Ended),
        ] {
            assert_eq!(classify(stderr, sent, false), want, "{stderr}");
        }
        // A listener times out only after a publisher connected and sent nothing; a camera
        // that never answers a pull is out of reach.
        let timed_out = "srt://***?mode=listener: Connection timed out";
        assert_eq!(classify(timed_out, false, true), Fault::Silent);
        assert_eq!(
            classify("rtsp://h/cam: Connection timed out", false, false),
            Fault::Unreachable
        );
        assert!(!Fault::Credentials.transient() && Fault::Unreachable.transient());
    }
}
