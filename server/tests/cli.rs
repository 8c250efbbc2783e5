//! The `hls-face process` command, run as a user would.

mod common;

use anyhow::{ensure, Result};
use common::*;
use std::process::Command;

fn hls_face(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("running hls-face")
}

/// Runs `process` on the face clip into `out` with `extra` flags; fails unless it succeeds.
fn process_face_clip(out: &std::path::Path, extra: &[&str]) -> Result<std::process::Output> {
    let input = media("face.webm");
    let mut args = vec![
        "process",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = hls_face(&args);
    ensure!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(run)
}

/// Runs `process --json` on `input` into `out`; its summary.
fn process_json(input: &std::path::Path, out: &std::path::Path) -> Result<serde_json::Value> {
    let run = hls_face(&[
        "process",
        input.to_str().unwrap_or_default(),
        "--out",
        out.to_str().unwrap_or_default(),
        "--json",
    ]);
    ensure!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(serde_json::from_slice(&run.stdout)?)
}

fn decode_all(dir: &std::path::Path, playlist: &str) -> Result<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    for seg in playlist.lines().filter(|l| l.ends_with(".ts")) {
        frames.extend(decode_frames(&std::fs::read(dir.join(seg))?, 640, 480)?);
    }
    Ok(frames)
}

#[test]
fn process_writes_a_vod_playlist_with_boxed_faces() -> Result<()> {
    let out = tempdir("cli")?;
    // A folder an earlier, longer run wrote into: its segments go, other files stay.
    std::fs::write(out.join("seg_00099.ts"), b"stale")?;
    std::fs::write(out.join("notes.txt"), b"mine")?;
    let run = process_face_clip(&out, &["--json"])?;
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    ensure!(summary["frames"] == 180, "{summary}");
    ensure!(summary["mediaSeconds"] == 6.0, "{summary}");
    ensure!(
        !out.join("seg_00099.ts").exists(),
        "a stale segment was left"
    );
    ensure!(
        out.join("notes.txt").exists(),
        "a file process did not write was removed"
    );
    ensure!(
        summary["framesWithFaces"].as_u64().unwrap() > 170,
        "{summary}"
    );
    let playlist = std::fs::read_to_string(out.join("playlist.m3u8"))?;
    ensure!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.ends_with("#EXT-X-ENDLIST\n"),
        "{playlist}"
    );
    let frames = decode_all(&out, &playlist)?;
    ensure!(
        frames.len() == 180,
        "{} frames in the segments",
        frames.len()
    );
    let boxed = frames
        .iter()
        .filter(|f| green_pixels(f, 640).0 > 200)
        .count();
    ensure!(boxed > 170, "only {boxed} frames boxed");
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

#[test]
fn process_blur_hides_faces_without_boxes() -> Result<()> {
    let out = tempdir("cli-blur")?;
    let run = process_face_clip(&out, &["--blur"])?;
    let line = String::from_utf8(run.stdout)?;
    ensure!(
        line.starts_with("180 frames (6.0 s of video), ")
            && line.contains(", processed in ")
            && line.lines().count() == 1,
        "{line}"
    );
    let playlist = std::fs::read_to_string(out.join("playlist.m3u8"))?;
    for f in decode_all(&out, &playlist)? {
        ensure!(green_pixels(&f, 640).0 < 50, "a box was drawn in blur mode");
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

#[test]
fn bad_input_exits_non_zero_with_one_line() -> Result<()> {
    let out = tempdir("cli-bad")?;
    let not_video = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let face = media("face.webm");
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "missing",
            vec![
                "process",
                "/nonexistent/video.webm",
                "--out",
                out.to_str().unwrap(),
            ],
        ),
        (
            "not a video",
            vec!["process", not_video, "--out", out.to_str().unwrap()],
        ),
        (
            "unwritable",
            vec![
                "process",
                face.to_str().unwrap(),
                "--out",
                "/proc/hls-face-out",
            ],
        ),
    ];
    for (what, args) in cases {
        let run = hls_face(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        ensure!(!run.status.success(), "{what}: should fail");
        ensure!(
            err.trim().lines().count() == 1 && err.starts_with("hls-face: "),
            "{what}: {err:?}"
        );
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

#[test]
fn process_can_use_the_centerface_detector() -> Result<()> {
    let out = tempdir("cli-dnn")?;
    let run = process_face_clip(&out, &["--json", "--detector", "centerface"])?;
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    ensure!(
        summary["framesWithFaces"].as_u64().unwrap() > 170,
        "{summary}"
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

#[test]
fn logs_can_be_json_lines() -> Result<()> {
    let out = tempdir("cli-json")?;
    let input = media("face.webm");
    let run = Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .args(["--log-format", "json", "process"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "server=debug")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()?;
    ensure!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    let logs = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?;
    let start = logs
        .iter()
        .find(|v| v["fields"]["message"] == "processing")
        .ok_or_else(|| anyhow::anyhow!("no JSON processing line in: {stderr:?}"))?;
    ensure!(start["level"] == "DEBUG" && start["fields"]["width"] == 640);
    ensure!(
        !String::from_utf8_lossy(&run.stdout).contains("\"level\""),
        "logs stay off stdout"
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

/// The largest resident set of any finished child of this test binary (and theirs), MiB.
fn children_peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// Runs `process input --out out` and expects a failure told in one `hls-face: ` line.
fn refused_in_one_line(input: &std::path::Path, out: &std::path::Path, what: &str) -> Result<()> {
    let run = hls_face(&[
        "process",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    ensure!(!run.status.success(), "{what}: {err}");
    ensure!(
        err.trim().lines().count() == 1 && err.starts_with("hls-face: "),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_sample_table_bomb_fails_inside_the_childrens_memory_cap() -> Result<()> {
    let out = tempdir("cli-bomb")?;
    let bomb = out.join("bomb.mp4");
    // 3 tracks × 40 M samples: ~2.9 GB of index in an uncapped ffprobe or decoder.
    std::fs::write(&bomb, sample_table_bomb(3, 40_000_000))?;
    ensure!(std::fs::metadata(&bomb)?.len() < 16 * 1024);
    refused_in_one_line(&bomb, &out.join("out"), "the bomb was processed")?;
    // Every child ran under the 1 GiB address-space cap (other tests' children included).
    let peak = children_peak_rss_mb();
    ensure!(peak < 1100.0, "a child reached {peak:.0} MiB");
    std::fs::remove_dir_all(&out)?;
    Ok(())
}

#[test]
fn process_reads_plain_media_files_only_whatever_their_name() -> Result<()> {
    let out = tempdir("cli-playlist")?;
    // An HLS playlist named like a video, pointing at a file elsewhere on the machine (an
    // MPEG-TS segment, which ffmpeg's HLS reader follows when nothing stops it).
    let elsewhere = tempdir("cli-elsewhere")?;
    let outside = elsewhere.join("private.ts");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(media("face.webm"))
        .args([
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "mpegts",
        ])
        .arg(&outside)
        .status()?;
    ensure!(made.success(), "making the outside file");
    let innocent = out.join("innocent.mp4");
    std::fs::write(
        &innocent,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{}\n#EXT-X-ENDLIST\n",
            outside.display()
        ),
    )?;
    refused_in_one_line(&innocent, &out.join("out"), "the playlist was followed")?;
    ensure!(!out.join("out").join("playlist.m3u8").exists());
    std::fs::remove_dir_all(&out)?;
    std::fs::remove_dir_all(&elsewhere)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_flags_serve_https_and_logs_to_a_pipe_carry_no_colour_codes() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (cert, key) = certificate()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hls-face"))
        .args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("LEPTOS_SITE_ROOT", stub_site()?)
        .env("HLS_FACE_PIPELINE_RUNTIME_DIR", tempdir("cli-tls")?)
        .env("RUST_LOG", "server=info,hls_face=info")
        .env_remove("NO_COLOR")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let listening = loop {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("server exited: {seen:?}"))?;
        let found = line.contains("listening on https://");
        seen.push(line.clone());
        if found {
            break line;
        }
    };
    ensure!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {seen:?}"
    );
    ensure!(listening.contains("https://127.0.0.1:"), "{listening}");
    Ok(())
}

/// The log lines of the binary serving on `addr` up to the line containing `until`.
async fn serve_log_until(addr: &str, env: &[(&str, &str)], until: &str) -> Result<Vec<String>> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hls-face"));
    command
        .args(["serve", "--addr", addr])
        .env("LEPTOS_SITE_ROOT", stub_site()?)
        .env("HLS_FACE_PIPELINE_RUNTIME_DIR", tempdir("cli-warn")?)
        .env("RUST_LOG", "server=info,hls_face=info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("server exited: {seen:?}"))?;
        let done = line.contains(until);
        seen.push(line);
        if done {
            return Ok(seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_every_address_without_auth_says_so_and_with_a_passphrase_does_not() -> Result<()> {
    let open = serve_log_until("0.0.0.0:0", &[], "listening on").await?;
    ensure!(
        open.iter()
            .any(|l| l.contains("WARN") && l.contains("anyone who can reach this address")),
        "{open:?}"
    );
    let hash = server::auth::hash_passphrase("a long passphrase")?;
    let guarded = serve_log_until(
        "0.0.0.0:0",
        &[
            ("HLS_FACE_AUTH_MODE", "passphrase"),
            ("HLS_FACE_AUTH_PASSPHRASE_HASH", &hash),
        ],
        "listening on http://localhost",
    )
    .await?;
    ensure!(
        guarded.iter().all(|l| !l.contains("without [auth]")),
        "{guarded:?}"
    );
    let local = serve_log_until("127.0.0.1:0", &[], "listening on").await?;
    ensure!(
        local.iter().all(|l| !l.contains("without [auth]")),
        "{local:?}"
    );
    Ok(())
}

#[test]
fn process_keeps_a_film_rate_of_23_976_fps() -> Result<()> {
    let dir = tempdir("cli-film")?;
    // The face clip retimed to film rate (24000/1001), as cameras and films record it.
    let input = dir.join("film.mkv");
    let clip = media("real-face-h264.mkv");
    ffmpeg_make(
        &[
            "-i",
            clip.to_str().unwrap_or_default(),
            "-t",
            "4",
            "-vf",
            "fps=24000/1001",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &input,
    )?;
    let out = dir.join("out");
    let summary = process_json(&input, &out)?;
    let probe = |what: &str, file: &std::path::Path| -> Result<String> {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                what,
                "-of",
                "csv=p=0",
            ])
            .arg(file)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let rate = probe("stream=r_frame_rate", &out.join("playlist.m3u8"))?;
    ensure!(
        rate.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l == "24000/1001"),
        "output rate {rate}, summary {summary}"
    );
    // The same number of frames over the same time: nothing resampled to 24.
    let frames_in: u64 = probe("stream=nb_frames", &input)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let seconds = summary["mediaSeconds"].as_f64().unwrap_or_default();
    let frames = summary["frames"].as_u64().unwrap_or_default();
    ensure!(
        (frames as f64 / seconds - 23.976).abs() < 0.01,
        "{frames} frames over {seconds} s: {summary}"
    );
    if frames_in > 0 {
        ensure!(frames == frames_in, "{frames} out of {frames_in}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn process_keeps_the_sound() -> Result<()> {
    let dir = tempdir("cli-audio")?;
    // The face clip with a tone beside it, as a camera or phone file has sound.
    let input = dir.join("with-sound.mkv");
    let clip = media("real-face-h264.mkv");
    ffmpeg_make(
        &[
            "-i",
            clip.to_str().unwrap_or_default(),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=10",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "copy",
            "-c:a",
            "libopus",
            "-shortest",
        ],
        &input,
    )?;
    let out = dir.join("out");
    let summary = process_json(&input, &out)?;
    ensure!(summary["frames"] == 240, "{summary}");
    let streams = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(out.join("playlist.m3u8"))
        .output()?;
    let streams = String::from_utf8_lossy(&streams.stdout).to_string();
    ensure!(
        streams.contains("aac,audio") && streams.contains("h264,video"),
        "{streams}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
