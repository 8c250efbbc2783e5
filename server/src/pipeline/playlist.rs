//! A pure model of the HLS media playlists ffmpeg writes: enough to know when the first
//! segment is complete, how many segments exist, and whether the playlist has ended.

/// What a media playlist says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playlist {
    /// `#EXT-X-MEDIA-SEQUENCE`: number of the first listed segment.
    pub media_sequence: u64,
    /// Listed segments (URI, duration in seconds), in order.
    pub segments: Vec<(String, f64)>,
    /// Whether `#EXT-X-ENDLIST` is present.
    pub ended: bool,
}

impl Playlist {
    /// Parses playlist text; returns `None` if it is not an HLS playlist.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let mut playlist = Playlist::default();
        let mut pending: Option<f64> = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let duration = v.split(',').next()?.trim().parse().ok()?;
                pending = Some(duration);
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !line.starts_with('#') {
                if let Some(duration) = pending.take() {
                    playlist.segments.push((line.to_string(), duration));
                }
            }
        }
        Some(playlist)
    }

    /// Whether a player can start: at least one complete segment is listed.
    pub fn is_ready(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Segments produced since the stream began (including ones that left the window).
    pub fn segments_produced(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }
}

/// The tag that tells players they may ask for the next segment and have the request held
/// until it exists (LL-HLS blocking playlist reload, `_HLS_msn`).
pub const SERVER_CONTROL: &str = "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES";

/// `text` with [`SERVER_CONTROL`] added after `#EXTM3U` (once).
pub fn with_server_control(text: &str) -> String {
    if text.contains("#EXT-X-SERVER-CONTROL") {
        return text.to_string();
    }
    match text.strip_prefix("#EXTM3U") {
        Some(rest) => format!("#EXTM3U\n{SERVER_CONTROL}{rest}"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
        #EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXTINF:1.000000,\nseg_00004.ts\n#EXTINF:1.000000,\nseg_00005.ts\n";

    #[test]
    fn parses_a_live_playlist() {
        let p = Playlist::parse(LIVE).unwrap();
        assert_eq!(p.media_sequence, 4);
        assert_eq!(
            p.segments,
            vec![
                ("seg_00004.ts".to_string(), 1.0),
                ("seg_00005.ts".to_string(), 1.0)
            ]
        );
        assert!(p.is_ready());
        assert!(!p.ended);
        assert_eq!(p.segments_produced(), 6);
    }

    #[test]
    fn a_playlist_without_segments_is_not_ready() {
        let p = Playlist::parse("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n").unwrap();
        assert!(!p.is_ready());
        assert_eq!(p.segments_produced(), 0);
    }

    #[test]
    fn notices_the_end_of_a_recording() {
        let text = format!("{LIVE}#EXT-X-ENDLIST\n");
        assert!(Playlist::parse(&text).unwrap().ended);
    }

    #[test]
    fn adds_the_server_control_tag_once() {
        let out = with_server_control(LIVE);
        assert!(out.starts_with(&format!("#EXTM3U\n{SERVER_CONTROL}\n#EXT-X-VERSION:6")));
        assert_eq!(with_server_control(&out), out);
        assert_eq!(
            Playlist::parse(&out),
            Playlist::parse(LIVE),
            "still the same playlist"
        );
        assert_eq!(with_server_control("junk"), "junk");
    }

    #[test]
    fn rejects_what_is_not_a_playlist() {
        assert_eq!(Playlist::parse(""), None);
        assert_eq!(Playlist::parse("hello"), None);
        assert_eq!(Playlist::parse("#EXTM3U\n#EXTINF:abc,\nx.ts\n"), None);
    }

    #[test]
    fn a_half_written_entry_is_not_a_segment() {
        let p = Playlist::parse("#EXTM3U\n#EXTINF:1.0,\n").unwrap();
        assert!(!p.is_ready());
    }
}
