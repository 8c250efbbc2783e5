//! A self-contained LL-HLS packager: it reads a fragmented MP4 byte stream (a fragment per
//! frame) and serves nothing itself. [`fmp4`] reads boxes → [`packager`] groups fragments
//! into parts and segments → [`stream`] holds the live playlist and its resources in
//! memory → [`publisher`] runs the packager on a byte stream and hands each finished
//! segment to [`recording`] (kept on disk, remuxed into an MP4 download).
//! [`playlist`] parses playlists back, for tests and tools only (feature `playlist-parser`).

pub mod flv;
pub mod fmp4;
pub mod packager;
#[cfg(any(test, feature = "playlist-parser"))]
pub mod playlist;
pub mod publisher;
pub mod recording;
pub mod stream;
