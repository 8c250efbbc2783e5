//! The `/hls/<session-id>/<file>` URL contract both sides rely on: what a session id and a
//! servable file name look like, and the content type of each file kind. Pure, so it is
//! unit-tested and fuzzed (`fuzz/`).

/// Name of the playlist in every session folder.
pub const PLAYLIST: &str = "playlist.m3u8";

/// Name of the downloadable MP4 a stopped session's segments are remuxed into.
pub const RECORDING: &str = "recording.mp4";

/// Length of a session id (and of a session cookie): 128 bits as lowercase hex.
pub const ID_LEN: usize = 32;

/// Whether `text` is exactly [`ID_LEN`] lowercase hex digits.
pub fn is_hex_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Longest node name (`[site] node`).
pub const NODE_MAX: usize = 16;

/// Whether `name` can name a node of a cluster: 1 to [`NODE_MAX`] lowercase ASCII letters
/// and digits (it travels in paths and in nginx's routing pattern).
pub fn is_node_name(name: &str) -> bool {
    (1..=NODE_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `text` is a session id or viewer token: a hex id ([`is_hex_id`]), on a cluster
/// after the name of the node that made it and a `-` (`n2-0123…`), so a proxy can route
/// every request of a session to its node from the path alone.
pub fn is_id(text: &str) -> bool {
    match text.split_once('-') {
        Some((node, id)) => is_node_name(node) && is_hex_id(id),
        None => is_hex_id(text),
    }
}

/// The node a session id or viewer token was made by (`None` on a single server).
pub fn node_of(id: &str) -> Option<&str> {
    id.split_once('-')
        .map(|(node, _)| node)
        .filter(|node| is_node_name(node))
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

/// The URL of a session's recording download.
pub fn recording_url(session_id: &str) -> String {
    format!("/hls/{session_id}/{RECORDING}")
}

/// How far behind the live edge players stay, in seconds: the LL-HLS `PART-HOLD-BACK` the
/// playlist declares, `hold_back_parts` (at least the spec's 2) parts of `part_seconds`.
pub fn live_sync_seconds(part_seconds: f64, hold_back_parts: u32) -> f32 {
    (f64::from(hold_back_parts.max(2)) * part_seconds) as f32
}

/// The page where a viewer link's holder watches a session.
pub fn viewer_page(token: &str) -> String {
    format!("/watch/{token}")
}

/// The playlist a viewer link plays: the session's stream under the viewer's token, so the
/// session id (and its recording) never reaches the viewer.
pub fn viewer_playlist(token: &str) -> String {
    format!("/view/{token}/{PLAYLIST}")
}

/// The viewer link's liveness probe (200 while the session runs, 404 after).
pub fn viewer_status(token: &str) -> String {
    format!("/view/{token}/status")
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
    fn cluster_ids_name_their_node() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(is_id(hex));
        assert_eq!(node_of(hex), None);
        let id = format!("n2-{hex}");
        assert!(is_id(&id));
        assert!(!is_hex_id(&id), "a cookie is never a node's id");
        assert_eq!(node_of(&id), Some("n2"));
        for bad in [
            format!("-{hex}"),
            format!("N2-{hex}"),
            format!("n.2-{hex}"),
            format!("n2-{hex}0"),
            format!("n2--{hex}"),
            format!("{}-{hex}", "a".repeat(NODE_MAX + 1)),
            "n2-".to_string(),
            "../n2".to_string(),
        ] {
            assert!(!is_id(&bad), "{bad}");
        }
        assert!(is_node_name("a"));
        assert!(is_node_name(&"z9".repeat(NODE_MAX / 2)));
        assert!(!is_node_name(""));
        assert!(!is_node_name("a_b"));
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
        assert_eq!(recording_url("ab"), "/hls/ab/recording.mp4");
        assert_eq!(viewer_page("cd"), "/watch/cd");
        assert_eq!(live_sync_seconds(0.1, 3), 0.3);
        assert_eq!(live_sync_seconds(0.2, 3), 0.6);
        assert_eq!(live_sync_seconds(0.05, 2), 0.1);
        assert_eq!(
            live_sync_seconds(0.05, 0),
            0.1,
            "never below the spec's 2 parts"
        );
        assert_eq!(viewer_playlist("cd"), "/view/cd/playlist.m3u8");
        assert_eq!(content_type(RECORDING), Some("video/mp4"));
    }
}
