//! The `/hls/<session-id>/<file>` URL contract both sides rely on: what a session id and a
//! servable file name look like, and the content type of each file kind. Pure, so it is
//! unit-tested and fuzzed (`fuzz/`).

/// Name of the playlist in every session folder.
pub const PLAYLIST: &str = "playlist.m3u8";

/// Length of a session id (and of a session cookie): 128 bits as lowercase hex.
pub const ID_LEN: usize = 32;

/// Whether `text` is exactly [`ID_LEN`] lowercase hex digits.
pub fn is_hex_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The content type of a servable file name, or `None` if the name is not servable.
///
/// Servable: one path component of ASCII letters, digits, `_` and `-` (at most 64), one
/// `.`, and a known extension. This rules out `..`, separators, percent-encodings, hidden
/// and temporary files.
pub fn content_type(file: &str) -> Option<&'static str> {
    let (stem, ext) = file.rsplit_once('.')?;
    let stem_ok = !stem.is_empty()
        && stem.len() <= 64
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !stem_ok {
        return None;
    }
    match ext {
        "m3u8" => Some("application/vnd.apple.mpegurl"),
        "ts" => Some("video/mp2t"),
        "m4s" => Some("video/iso.segment"),
        "mp4" => Some("video/mp4"),
        _ => None,
    }
}

/// The URL of a session's playlist.
pub fn playlist_url(session_id: &str) -> String {
    format!("/hls/{session_id}/{PLAYLIST}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hls_names_are_servable() {
        assert_eq!(
            content_type("playlist.m3u8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(content_type("seg_00001.ts"), Some("video/mp2t"));
        assert_eq!(content_type("init.mp4"), Some("video/mp4"));
        for bad in [
            "",
            ".m3u8",
            "..",
            "../playlist.m3u8",
            "a/b.ts",
            "/etc/passwd",
            "..%2F..%2Fetc",
            "%2e%2e.ts",
            "seg.ts.tmp",
            "playlist.m3u8.tmp",
            ".hidden.ts",
            "a b.ts",
            "x.html",
            "seg\\1.ts",
            "seg..ts",
            "é.ts",
        ] {
            assert_eq!(content_type(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_are_exactly_32_lowercase_hex_digits() {
        assert!(is_hex_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "..",
            "../etc",
            "ABCDEF0123456789abcdef0123456789",
            "0123456789abcdef0123456789abcde/",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert!(!is_hex_id(bad), "{bad}");
        }
        assert_eq!(playlist_url("ab"), "/hls/ab/playlist.m3u8");
    }
}
