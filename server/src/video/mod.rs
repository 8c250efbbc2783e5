//! The video path, one file per stage in the order frames flow: [`decoder`] (encoded media
//! → raw frames) → [`frame_path`] (the one path every source drives: [`scene`] cuts,
//! [`detector`] faces on the newest frame ([`detector::roi`] scans only around known faces
//! between full scans), [`tracker`] smoothing, [`timeline`] boxes per frame, [`overlay`]
//! boxes drawn or faces hidden) → [`encoder`] (raw frames → H.264 as fragmented MP4).
//! The encoder's fMP4 byte stream is the only thing it hands on, to [`crate::hls`].

pub mod decoder;
pub mod detector;
pub mod encoder;
pub mod follower;
pub mod frame;
pub mod frame_path;
pub mod overlay;
pub mod scene;
pub mod thumbnail;
pub mod timeline;
pub mod tracker;
