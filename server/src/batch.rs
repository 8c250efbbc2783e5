//! The `process` command: a video file through the same decoder → detector → overlay →
//! encoder stages as a live session, written as a VOD HLS playlist with every segment.

use crate::config::PipelineConfig;
use crate::error::ServerError;
use crate::pipeline::{Pipeline, Queues, Sink};
use crate::source::Source;
use crate::video::detector::factory_for;
use crate::video::encoder::{EncoderSettings, PLAYLIST};
use crate::video::frame::{FramePool, FrameRate};
use crate::video::frame_path::{FramePath, PathSettings};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Frames between the stages: offline every frame waits its turn (nothing is dropped), so
/// a few frames keep the decoder and encoder busy while the frame path works.
const QUEUES: Queues = Queues {
    frames: 4,
    encoder: 8,
};

/// Largest output size; bigger videos are scaled down (aspect kept).
const MAX_SIDE: (u32, u32) = (1920, 1080);
/// The highest frame rate `process` keeps; faster sources are resampled to it.
const MAX_FPS: u32 = 60;

/// What to process and how.
pub struct Job {
    pub input: PathBuf,
    pub out: PathBuf,
    /// Pixelate faces instead of boxing them.
    pub privacy: bool,
    pub config: PipelineConfig,
}

/// The result, printed as one line or JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub frames: u64,
    pub frames_with_faces: u64,
    pub faces: u64,
    /// Frames pixelated whole in privacy mode (no detection covered them).
    pub frames_hidden: u64,
    /// Mean time of one detection, in milliseconds.
    pub detect_millis: f64,
    /// How long the processing took (not the video's length: that is `media_seconds`).
    pub wall_seconds: f64,
    /// How long the video is (its frames at its frame rate).
    pub media_seconds: f64,
    pub playlist: String,
}

/// Progress: frames done, frames expected (if known), frames per second.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>, f64);

/// The video stream's size, rate and frame count, from ffprobe.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    pub frames: Option<u64>,
}

/// Reads `input`'s first video stream with ffprobe (next to the configured ffmpeg).
pub async fn probe(
    ffmpeg: &Path,
    memory_bytes: u64,
    input: &Path,
) -> Result<VideoInfo, ServerError> {
    let ffprobe = ffmpeg.with_file_name(
        ffmpeg
            .file_name()
            .map(|n| n.to_string_lossy().replace("ffmpeg", "ffprobe"))
            .unwrap_or_else(|| "ffprobe".into()),
    );
    let mut command = tokio::process::Command::new(&ffprobe);
    crate::child::limit_memory(&mut command, memory_bytes);
    let out = command
        .args(crate::video::decoder::FILE_INPUT_GUARD)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,avg_frame_rate,nb_frames:format=duration")
        .args(["-of", "json"])
        .arg(input)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ServerError::Spawn {
            role: crate::error::Role::Probe,
            program: ffprobe.clone(),
            source,
        })?;
    let not_video = || {
        ServerError::Input(format!(
            "{} is not a video ffmpeg can read",
            input.display()
        ))
    };
    if !out.status.success() {
        return Err(not_video());
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| not_video())?;
    parse_probe(&json).ok_or_else(not_video)
}

/// The pure part of [`probe`]: ffprobe's JSON → size (even, capped), rate and frame count.
pub fn parse_probe(json: &serde_json::Value) -> Option<VideoInfo> {
    let stream = json.get("streams")?.get(0)?;
    let (w, h) = (
        stream.get("width")?.as_u64()? as f64,
        stream.get("height")?.as_u64()? as f64,
    );
    if w < 16.0 || h < 16.0 {
        return None;
    }
    let shrink = (MAX_SIDE.0 as f64 / w).min(MAX_SIDE.1 as f64 / h).min(1.0);
    let even = |v: f64| ((v * shrink) as u32 / 2 * 2).max(2);
    let rate = stream.get("avg_frame_rate")?.as_str()?;
    // The source's own rate, exactly (23.976 stays 24000/1001); one outside 1–60 fps is
    // rounded into that range.
    let fps = FrameRate::parse(rate, MAX_FPS).or_else(|| {
        let approx = match rate.split_once('/') {
            Some((n, d)) => n.parse::<f64>().ok()? / d.parse::<f64>().ok().filter(|d| *d > 0.0)?,
            None => rate.parse().ok()?,
        };
        Some(FrameRate::whole((approx.round() as u32).clamp(1, MAX_FPS)))
    })?;
    let frames = stream
        .get("nb_frames")
        .and_then(|n| n.as_str()?.parse().ok())
        .or_else(|| {
            let secs: f64 = json
                .get("format")?
                .get("duration")?
                .as_str()?
                .parse()
                .ok()?;
            Some((secs * fps.as_f64()).round() as u64)
        });
    Some(VideoInfo {
        width: even(w),
        height: even(h),
        fps,
        frames,
    })
}

/// Removes what an earlier `process` into `out` wrote (its playlist and `seg_NNNNN.ts`
/// segments), so a reused folder never holds stale segments beside the new playlist;
/// anything else in the folder is left alone.
fn clear_previous_output(out: &std::path::Path) -> Result<(), ServerError> {
    let entries =
        std::fs::read_dir(out).map_err(|e| ServerError::io("cannot read output folder", out, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let segment = name
            .strip_prefix("seg_")
            .and_then(|n| n.strip_suffix(".ts"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if segment || name == PLAYLIST {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| ServerError::io("cannot remove an earlier output", &path, e))?;
        }
    }
    Ok(())
}

/// Runs the job; `progress` is called about twice a second.
pub async fn run(job: &Job, progress: Progress<'_>) -> Result<Summary, ServerError> {
    if !job.input.is_file() {
        return Err(ServerError::Input(format!(
            "{} does not exist or is not a file",
            job.input.display()
        )));
    }
    let cfg = &job.config;
    let info = probe(&cfg.ffmpeg, cfg.child_memory_bytes(), &job.input).await?;
    std::fs::create_dir_all(&job.out)
        .map_err(|e| ServerError::io("cannot create output folder", &job.out, e))?;
    let probe_file = job.out.join(".hls-face-write-test");
    std::fs::write(&probe_file, b"")
        .map_err(|e| ServerError::io("cannot write to output folder", &job.out, e))?;
    let _ = std::fs::remove_file(&probe_file);
    clear_previous_output(&job.out)?;

    tracing::debug!(
        input = %job.input.display(),
        width = info.width,
        height = info.height,
        fps = %info.fps,
        "processing"
    );
    let started = Instant::now();
    let pool = FramePool::default();
    let settings = EncoderSettings {
        width: info.width,
        height: info.height,
        fps: info.fps,
        segment_seconds: 2.0,
        first_segment_frames: 0,
        preset: cfg.hls.x264_preset.clone(),
        // Privacy is fixed for a file: the frame path applies it to every frame.
        privacy: None,
    };
    let Pipeline {
        decoder,
        mut frames,
        encoder,
        encoder_input: enc_tx,
        ..
    } = Pipeline::start(
        &*cfg.spawner(),
        Source::File(job.input.clone()),
        &settings,
        // The source's sound is kept (as AAC), cut where the video ends.
        Sink::Vod {
            dir: job.out.clone(),
            audio_from: Some(job.input.clone()),
        },
        QUEUES,
        &pool,
    )?;
    let privacy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(job.privacy));
    let tuning = crate::video::detector::Tuning::from(&cfg.detector);
    let mut path = FramePath::inline(
        factory_for(&cfg.detector)()?,
        PathSettings::from(cfg),
        privacy,
        tuning,
    );
    let mut summary = Summary {
        frames: 0,
        frames_with_faces: 0,
        faces: 0,
        frames_hidden: 0,
        detect_millis: 0.0,
        wall_seconds: 0.0,
        media_seconds: 0.0,
        playlist: job.out.join(PLAYLIST).to_string_lossy().into_owned(),
    };
    let mut last_report = Instant::now();
    let (mut detect_total, mut detections) = (0.0, 0u64);
    'frames: while let Some(frame) = frames.recv().await {
        // Offline, every frame is detected (no rate cap): the output is the best we can do,
        // and every frame leaves the path as soon as it is pushed.
        let now = Instant::now();
        tokio::task::block_in_place(|| path.push(frame, now))?;
        detect_total += f64::from(path.detect_millis());
        detections += 1;
        while let Some(out) = path.next_ready(now) {
            summary.frames += 1;
            summary.faces += out.faces as u64;
            summary.frames_with_faces += u64::from(out.faces > 0);
            summary.frames_hidden += u64::from(out.hidden_whole);
            if enc_tx.send(out.frame).await.is_err() {
                break 'frames; // the encoder died; its exit status says why
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            let fps = summary.frames as f64 / started.elapsed().as_secs_f64();
            progress(summary.frames, info.frames, fps);
        }
    }
    drop(enc_tx);
    let decoded = decoder.finish(Duration::from_secs(10)).await;
    let encoded = encoder.finish(Duration::from_secs(60)).await;
    encoded?;
    decoded?;
    if summary.frames == 0 {
        return Err(ServerError::Input(format!(
            "{} has no video frames",
            job.input.display()
        )));
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    summary.media_seconds = summary.frames as f64 / info.fps.as_f64();
    summary.detect_millis = detect_total / detections.max(1) as f64;
    progress(
        summary.frames,
        Some(summary.frames),
        summary.frames as f64 / summary.wall_seconds,
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ffprobe_output() {
        let json = serde_json::json!({
            "streams": [{"width": 641, "height": 481, "avg_frame_rate": "30000/1001", "nb_frames": "300"}],
            "format": {"duration": "10.01"}
        });
        assert_eq!(
            parse_probe(&json),
            Some(VideoInfo {
                width: 640,
                height: 480,
                fps: FrameRate::parse("30000/1001", 60).unwrap(),
                frames: Some(300)
            })
        );
        let webm = serde_json::json!({
            "streams": [{"width": 3840, "height": 2160, "avg_frame_rate": "25/1"}],
            "format": {"duration": "4.0"}
        });
        assert_eq!(
            parse_probe(&webm),
            Some(VideoInfo {
                width: 1920,
                height: 1080,
                fps: FrameRate::whole(25),
                frames: Some(100)
            })
        );
        assert_eq!(parse_probe(&serde_json::json!({"streams": []})), None);
        assert_eq!(parse_probe(&serde_json::json!({})), None);
    }
}
