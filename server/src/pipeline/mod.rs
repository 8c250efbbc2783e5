//! The per-session video pipeline, one file per stage in the order data flows:
//! [`decoder`] (WebM → raw BGR frames) → [`frame_path`] (the one path both the live
//! session and `process` drive: [`scene`] cuts, [`detector`] faces on the newest frame
//! ([`detector::roi`] scans only around known faces between full scans), [`tracker`] smoothing,
//! [`timeline`] boxes per frame, [`overlay`] boxes drawn or faces hidden) →
//! [`encoder`] (raw → H.264 as fragmented MP4, [`fmp4`] reads it) →
//! [`publisher`] (runs the [`packager`]: parts and segments of an LL-HLS [`stream`] in
//! memory; [`playlist`] reads and checks its playlists) →
//! [`recording`] (segments kept on disk for, and remuxed into, the MP4 download).

pub mod decoder;
pub mod detector;
pub mod encoder;
pub mod fmp4;
pub mod frame;
pub mod frame_path;
pub mod overlay;
pub mod packager;
pub mod playlist;
pub mod publisher;
pub mod recording;
pub mod scene;
pub mod stream;
pub mod timeline;
pub mod tracker;
