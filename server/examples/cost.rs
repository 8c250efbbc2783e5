//! Cost table (`scripts/bench`): what one 640×480@30 session costs per stage, on real
//! footage with the shipped settings, and the floor beside it (decoding and encoding alone).
//!
//! The ffmpeg stages run the live decoder's and encoder's own arguments
//! ([`decoder_args`], [`encoder_args`]) on the clip, and again with YUV 4:2:0 in place of
//! BGR, so the colour conversion each child does is the difference; their CPU is the
//! children's user + system time, the least of five runs. The server's own stages (scene check, detection,
//! tracking, drawing, pixelation, packaging) run here on the decoded frames, one thread,
//! timed by that thread's CPU clock. Detection is counted at its live rate (`detect-fps`
//! of every `frame-rate` frames).
//!
//! `cargo run --release -p server --example cost [clip] [session core share]`

use anyhow::{bail, Context, Result};
use server::config::Config;
use server::hls::flv::FlvReader;
use server::hls::fmp4::Chunk;
use server::hls::packager::{Packager, PackagerSettings};
use server::video::decoder::{decoder_args, Input};
use server::video::detector::{factory_for, FaceDetector, Tuning};
use server::video::encoder::{encoder_args, EncoderOutput, EncoderSettings};
use server::video::follower::{Follower, Grey};
use server::video::frame::{FaceBox, Frame, FrameRate};
use server::video::overlay::{draw_boxes, pixelate_boxes};
use server::video::scene::SceneCuts;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

const W: u32 = 640;
const H: u32 = 480;

/// CPU seconds this thread has used.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU seconds (user + system) of the children this process waited for so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into the rusage it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Runs ffmpeg with `args` (its last argument, `pipe:1`, replaced by `output`), stdin from
/// `input`; its CPU seconds.
fn ffmpeg(args: &[String], stdin: Option<&Path>, output: &str) -> Result<f64> {
    let mut args = args.to_vec();
    if args.last().map(String::as_str) == Some("pipe:1") {
        args.pop();
        args.push(output.into());
    }
    let before = children_cpu();
    let status = Command::new("ffmpeg")
        .args(["-y"])
        .args(&args)
        .stdin(match stdin {
            Some(path) => Stdio::from(std::fs::File::open(path)?),
            None => Stdio::null(),
        })
        .stdout(Stdio::null())
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg {args:?} failed: {status}");
    }
    Ok(children_cpu() - before)
}

/// The least CPU of five runs of `run` (the children's time varies with the page cache
/// and the other processes of the machine; the least is the stage's own cost).
fn best_of_five(mut run: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        best = best.min(run()?);
    }
    Ok(best)
}

/// The live decoder's arguments for `clip`, with `pix_fmt` as its output format.
fn decoder(clip: &Path, fps: FrameRate, pix_fmt: &str) -> Vec<String> {
    decoder_args(Input::File(clip), W, H, fps)
        .into_iter()
        .map(|a| if a == "bgr24" { pix_fmt.to_string() } else { a })
        .collect()
}

/// The live encoder's arguments, reading `pix_fmt` frames.
fn encoder(settings: &EncoderSettings, pix_fmt: &str) -> Vec<String> {
    encoder_args(settings, &EncoderOutput::Fragments)
        .into_iter()
        .map(|a| if a == "bgr24" { pix_fmt.to_string() } else { a })
        .collect()
}

struct Row {
    stage: &'static str,
    what: String,
    ms_per_frame: f64,
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let clip = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/media/real-face-h264.mkv"));
    let measured_share: Option<f64> = args.next().and_then(|s| s.parse().ok());
    let mut config = Config::load(Some(&root.join("Leptos.toml")))?;
    config.resolve_relative_to(&root);
    let pipeline = &config.pipeline;
    let fps = FrameRate::whole(pipeline.hls.frame_rate);
    let work = root.join("target/cost");
    std::fs::create_dir_all(&work)?;

    // Decoding: the live decoder to BGR (what the frame path takes) and to YUV 4:2:0.
    let bgr = work.join("frames.bgr");
    let yuv = work.join("frames.yuv");
    let bgr_path = bgr.to_string_lossy().into_owned();
    let yuv_path = yuv.to_string_lossy().into_owned();
    // The frames, once, for the stages below; timed to /dev/null (writing a file costs the
    // kernel time by the byte, which would blur the conversion's share).
    ffmpeg(&decoder(&clip, fps, "bgr24"), None, &bgr_path)?;
    ffmpeg(&decoder(&clip, fps, "yuv420p"), None, &yuv_path)?;
    let decode_bgr = best_of_five(|| ffmpeg(&decoder(&clip, fps, "bgr24"), None, "/dev/null"))?;
    let decode_yuv = best_of_five(|| ffmpeg(&decoder(&clip, fps, "yuv420p"), None, "/dev/null"))?;
    let frame_bytes = (W * H * 3) as usize;
    let raw = std::fs::read(&bgr)?;
    let frames = raw.len() / frame_bytes;
    if frames < 30 {
        bail!("{} decoded to {frames} frames", clip.display());
    }
    let n = frames as f64;

    // Encoding: the live encoder from BGR (as it runs) and from YUV 4:2:0.
    let settings = EncoderSettings::live(&pipeline.hls, W, H);
    let fragments = work.join("out.mp4");
    let fragments_path = fragments.to_string_lossy().into_owned();
    let encode_bgr =
        best_of_five(|| ffmpeg(&encoder(&settings, "bgr24"), Some(&bgr), &fragments_path))?;
    let encode_yuv =
        best_of_five(|| ffmpeg(&encoder(&settings, "yuv420p"), Some(&yuv), "/dev/null"))?;

    let frames_in: Vec<Frame> = raw
        .chunks_exact(frame_bytes)
        .map(|data| Frame {
            width: W,
            height: H,
            data: data.to_vec(),
            hidden: false,
        })
        .collect();
    drop(raw);

    // Scene check, every frame.
    let mut cuts = SceneCuts::default();
    let t = thread_cpu();
    let cut: Vec<bool> = frames_in.iter().map(|f| cuts.is_cut(f)).collect();
    let scene = thread_cpu() - t;

    // Detection at the live rate: every (frame-rate / detect-fps)th frame.
    let every = (pipeline.hls.frame_rate / pipeline.detector.detect_fps.max(1)).max(1) as usize;
    let mut detector: Box<dyn FaceDetector> = factory_for(&pipeline.detector)()?;
    detector.configure(&Tuning::from(&pipeline.detector));
    let _ = detector.detect(&frames_in[0]); // warm-up, not counted
    let t = thread_cpu();
    let mut found: Vec<(usize, Vec<FaceBox>)> = Vec::new();
    for (i, frame) in frames_in.iter().enumerate().step_by(every) {
        found.push((i, detector.detect_all(frame)?.sure));
    }
    let detections = found.len();
    let detect = thread_cpu() - t;

    // Tracking: each frame's grey copy and the follower carrying the newest detection.
    let mut follower = Follower::default();
    let mut carried = Vec::with_capacity(frames);
    let t = thread_cpu();
    let mut next = found.iter().peekable();
    for (i, frame) in frames_in.iter().enumerate() {
        follower.frame(i as u64, cut[i], Grey::of(frame));
        if let Some((at, boxes)) = next.next_if(|(at, _)| *at == i) {
            follower.detected(*at as u64, boxes, boxes);
        }
        carried.push(follower.carried(i as u64));
    }
    let track = thread_cpu() - t;

    // Drawing boxes (the default) and pixelating faces (privacy), every frame.
    let mut boxed = frames_in.clone();
    let t = thread_cpu();
    for (frame, boxes) in boxed.iter_mut().zip(&carried) {
        draw_boxes(frame, &boxes.drawn);
    }
    let draw = thread_cpu() - t;
    let mut hidden = frames_in;
    let t = thread_cpu();
    for (frame, boxes) in hidden.iter_mut().zip(&carried) {
        pixelate_boxes(frame, &boxes.hidden);
    }
    let pixelate = thread_cpu() - t;
    drop((boxed, hidden));

    // Packaging: the encoder's fragments read and cut into parts and segments.
    let bytes = std::fs::read(&fragments)?;
    let hls = &pipeline.hls;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let t = thread_cpu();
    runtime.block_on(async {
        let shape = server::video::frame::Shape {
            width: W,
            height: H,
            fps,
        };
        let mut reader = FlvReader::new(bytes.as_slice(), shape);
        let mut packager = Packager::new(PackagerSettings {
            segment_seconds: hls.segment_seconds,
            part_seconds: hls.part_seconds,
            hold_back_parts: hls.hold_back_parts,
            window: hls.playlist_size as usize,
            clock_origin: None,
        });
        while let Some(chunk) = reader.next().await? {
            match chunk {
                Chunk::Init(init) => packager.init(init),
                Chunk::Fragment(f) => {
                    packager.push(f, SystemTime::now())?;
                }
            }
        }
        packager.finish();
        Ok::<_, anyhow::Error>(())
    })?;
    let package = thread_cpu() - t;
    let _ = std::fs::remove_dir_all(&work);

    let per_frame = |secs: f64| 1000.0 * secs / n;
    let rows = [
        Row {
            stage: "decode",
            what: "H.264 640×480 to YUV 4:2:0 (live decoder, one thread)".into(),
            ms_per_frame: per_frame(decode_yuv),
        },
        Row {
            stage: "colour conversion (decoder)",
            what: "YUV 4:2:0 → BGR for the frame path".into(),
            ms_per_frame: per_frame(decode_bgr - decode_yuv),
        },
        Row {
            stage: "scene check",
            what: "8×6 grid signature, every frame".into(),
            ms_per_frame: per_frame(scene),
        },
        Row {
            stage: "detection",
            what: format!(
                "{:?} at {} px, {} a second ({:.1} ms each)",
                pipeline.detector.kind,
                pipeline.detector.dnn_width,
                pipeline.detector.detect_fps,
                1000.0 * detect / detections as f64
            ),
            ms_per_frame: per_frame(detect),
        },
        Row {
            stage: "tracking",
            what: "grey copy + block matching, every frame".into(),
            ms_per_frame: per_frame(track),
        },
        Row {
            stage: "overlay",
            what: "boxes drawn (privacy off, the default)".into(),
            ms_per_frame: per_frame(draw),
        },
        Row {
            stage: "pixelation",
            what: "faces pixelated (privacy on; instead of the overlay)".into(),
            ms_per_frame: per_frame(pixelate),
        },
        Row {
            stage: "colour conversion (encoder)",
            what: "BGR → YUV 4:2:0 for x264".into(),
            ms_per_frame: per_frame(encode_bgr - encode_yuv),
        },
        Row {
            stage: "encode",
            what: format!("x264 {} zerolatency, one thread", hls.x264_preset),
            ms_per_frame: per_frame(encode_yuv),
        },
        Row {
            stage: "packaging",
            what: "fMP4 fragments into parts, segments and playlists".into(),
            ms_per_frame: per_frame(package),
        },
    ];
    let share = |ms: f64| ms * f64::from(hls.frame_rate) / 1000.0;
    println!(
        "| stage | what | ms per frame | share of a core at {} fps |",
        hls.frame_rate
    );
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {:.3} |",
            row.stage,
            row.what,
            row.ms_per_frame,
            share(row.ms_per_frame)
        );
    }
    let total: f64 = rows
        .iter()
        .filter(|r| r.stage != "pixelation")
        .map(|r| r.ms_per_frame)
        .sum();
    let floor = rows[0].ms_per_frame + rows[8].ms_per_frame;
    println!(
        "| **stages, boxes** | everything above but pixelation | {total:.2} | **{:.3}** |",
        share(total)
    );
    println!(
        "| **floor** | decode + encode alone (no conversion, no vision) | {floor:.2} | **{:.3}** |",
        share(floor)
    );
    if let Some(measured) = measured_share {
        println!(
            "| measured session | `scripts/capacity` (server and children; also pipes, socket, async runtime, recording) | {:.2} | {measured:.3} |",
            measured * 1000.0 / f64::from(hls.frame_rate)
        );
    }
    println!(
        "\n{frames} frames of {} at 640×480, settings from Leptos.toml; ffmpeg stages: the children's CPU time; the server's stages: one thread's CPU time.",
        clip.file_name().unwrap_or_default().to_string_lossy()
    );
    Ok(())
}
