//! Quick probe: hit rate and cost of the Haar detector over a clip with given settings.
//! `cargo run --release -p server --example haar_probe -- CLIP WIDTH SCALE NEIGHBOURS MINFACE`
use server::pipeline::detector::{FaceDetector, HaarDetector, HaarSettings};
use server::pipeline::frame::Frame;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let clip = &a[1];
    let settings = HaarSettings {
        detect_width: a[2].parse()?,
        scale_factor: a[3].parse()?,
        min_neighbors: a[4].parse()?,
        min_face: a[5].parse()?,
    };
    if let Some(t) = a.get(6) {
        opencv::core::set_num_threads(t.parse()?)?;
    }
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-i",
            clip,
            "-s",
            "640x480",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "pipe:1",
        ])
        .output()?;
    let mut det = HaarDetector::new(
        std::path::Path::new(&std::env::var("CASCADE").unwrap_or(
            "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml".into(),
        )),
        settings,
    )?;
    let (mut hits, mut n, mut multi, mut total_ms) = (0, 0, 0, 0.0);
    for data in out.stdout.chunks_exact(640 * 480 * 3) {
        let f = Frame {
            width: 640,
            height: 480,
            data: data.to_vec(),
        };
        let t = Instant::now();
        let boxes = det.detect(&f)?;
        total_ms += t.elapsed().as_secs_f64() * 1000.0;
        n += 1;
        if !boxes.is_empty() {
            hits += 1;
        }
        if boxes.len() > 1 {
            multi += 1;
        }
    }
    println!(
        "{clip}: {hits}/{n} frames with a face, {multi} with >1, {:.1} ms/frame",
        total_ms / n as f64
    );
    Ok(())
}
