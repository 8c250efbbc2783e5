//! A reader for the LL-HLS media playlists the [`super::stream`] renders, and the spec's
//! rules a native player (Safari) holds them to, checked on any playlist text: unit tests
//! check rendered playlists, integration tests the ones the running server serves.

use super::stream::Resource;

/// Rounding allowed when comparing durations: they are printed with 5 decimals.
const SLACK: f64 = 0.0005;

/// A part as listed (`#EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// A segment as listed: its parts (if still listed) and `#EXTINF` duration.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub uri: String,
    pub duration: f64,
    pub parts: Vec<ListedPart>,
    pub date_time: Option<String>,
}

/// What a media playlist says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlPlaylist {
    pub target_duration: Option<f64>,
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_block_reload: bool,
    pub media_sequence: u64,
    pub map: Option<String>,
    pub segments: Vec<ListedSegment>,
    /// Parts of the segment still growing (after the last `#EXTINF`).
    pub growing: Vec<ListedPart>,
    /// `#EXT-X-PROGRAM-DATE-TIME` of the growing segment.
    pub growing_date_time: Option<String>,
    pub preload_hint: Option<String>,
    pub ended: bool,
}

/// The value of `NAME=` in an attribute list (quotes removed).
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let (v, n) = quoted.split_once('"')?;
            (v, n.strip_prefix(',').unwrap_or(n))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

impl LlPlaylist {
    /// Parses playlist text; `None` if it is not an HLS playlist or a tag is malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let mut p = LlPlaylist::default();
        let mut duration: Option<f64> = None;
        let mut date_time = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = Some(v.parse().ok()?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                p.can_block_reload = attribute(v, "CAN-BLOCK-RELOAD") == Some("YES");
                p.part_hold_back = attribute(v, "PART-HOLD-BACK").and_then(|s| s.parse().ok());
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                p.part_target = Some(attribute(v, "PART-TARGET")?.parse().ok()?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                p.map = Some(attribute(v, "URI")?.to_string());
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                date_time = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                p.growing.push(ListedPart {
                    uri: attribute(v, "URI")?.to_string(),
                    duration: attribute(v, "DURATION")?.parse().ok()?,
                    independent: attribute(v, "INDEPENDENT") == Some("YES"),
                });
            } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                p.preload_hint = Some(attribute(v, "URI")?.to_string());
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = Some(v.split(',').next()?.trim().parse().ok()?);
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !line.starts_with('#') {
                p.segments.push(ListedSegment {
                    uri: line.to_string(),
                    duration: duration.take()?,
                    parts: std::mem::take(&mut p.growing),
                    date_time: date_time.take(),
                });
            }
        }
        p.growing_date_time = date_time;
        Some(p)
    }

    /// Whether a player can start: at least one complete segment is listed.
    pub fn is_ready(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Segments produced since the stream began (including ones that left the window).
    pub fn segments_produced(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Where this playlist breaks the LL-HLS rules (RFC 8216bis, Apple's low-latency
    /// guide) that our streams must keep; empty when it keeps them all.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let (Some(target), Some(part_target)) = (self.target_duration, self.part_target) else {
            return vec!["no TARGETDURATION or PART-INF".into()];
        };
        if !self.can_block_reload {
            v.push("SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES".into());
        }
        match self.part_hold_back {
            Some(h) if h + SLACK >= 2.0 * part_target => {}
            other => v.push(format!(
                "PART-HOLD-BACK {other:?} < 2 × PART-TARGET {part_target}"
            )),
        }
        if self.map.is_none() {
            v.push("no EXT-X-MAP".into());
        }
        if self.segments.first().is_some_and(|s| s.date_time.is_none()) {
            v.push("no PROGRAM-DATE-TIME on the first segment".into());
        }
        let mut listing_parts = false;
        for (i, s) in self.segments.iter().enumerate() {
            let msn = self.media_sequence + i as u64;
            if Resource::parse(&s.uri) != Some(Resource::Segment(msn)) {
                v.push(format!("segment {} is not media sequence {msn}", s.uri));
            }
            if s.duration.round() > target {
                v.push(format!(
                    "segment {} lasts {} > TARGETDURATION {target}",
                    s.uri, s.duration
                ));
            }
            if s.parts.is_empty() {
                if listing_parts {
                    v.push(format!(
                        "segment {} lists no parts after one that did",
                        s.uri
                    ));
                }
                continue;
            }
            listing_parts = true;
            let sum: f64 = s.parts.iter().map(|p| p.duration).sum();
            if (sum - s.duration).abs() > 0.001 * s.parts.len() as f64 {
                v.push(format!(
                    "segment {} lasts {} but its parts {sum}",
                    s.uri, s.duration
                ));
            }
            v.extend(part_violations(&s.parts, msn, part_target));
        }
        let next_msn = self.media_sequence + self.segments.len() as u64;
        v.extend(part_violations(&self.growing, next_msn, part_target));
        match (&self.preload_hint, self.ended) {
            (Some(_), true) => v.push("PRELOAD-HINT after ENDLIST".into()),
            (None, false) => v.push("a live playlist without PRELOAD-HINT".into()),
            (Some(hint), false) => {
                // The next part of the growing segment, or, once that segment is full
                // (it ends at the next keyframe), the first part of the one after.
                let next = Resource::Part(next_msn, self.growing.len());
                let after = Resource::Part(next_msn + 1, 0);
                let hinted = Resource::parse(hint);
                if hinted != Some(next) && (self.growing.is_empty() || hinted != Some(after)) {
                    v.push(format!("PRELOAD-HINT {hint} is not the next part {next:?}"));
                }
            }
            (None, true) => {}
        }
        if self.ended && !self.growing.is_empty() {
            v.push("parts after the last segment of an ended playlist".into());
        }
        v
    }
}

/// Rules for the parts of segment `msn`: numbered 0, 1, … in order, each at most
/// PART-TARGET, the first one independent.
fn part_violations(parts: &[ListedPart], msn: u64, part_target: f64) -> Vec<String> {
    let mut v = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if Resource::parse(&part.uri) != Some(Resource::Part(msn, i)) {
            v.push(format!(
                "part {} is not part {i} of segment {msn}",
                part.uri
            ));
        }
        if part.duration > part_target + SLACK {
            v.push(format!(
                "part {} lasts {} > PART-TARGET {part_target}",
                part.uri, part.duration
            ));
        }
        if i == 0 && !part.independent {
            v.push(format!("segment {msn} starts with a dependent part"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.300\n\
        #EXT-X-PART-INF:PART-TARGET=0.100\n#EXT-X-MEDIA-SEQUENCE:4\n\
        #EXT-X-MAP:URI=\"init.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-27T12:00:00.000Z\n\
        #EXTINF:1.00000,\nseg_00004.m4s\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-27T12:00:01.000Z\n\
        #EXT-X-PART:DURATION=0.10000,URI=\"part_00005_0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.10000,URI=\"part_00005_1.m4s\"\n\
        #EXTINF:0.20000,\nseg_00005.m4s\n\
        #EXT-X-PART:DURATION=0.10000,URI=\"part_00006_0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_00006_1.m4s\"\n";

    #[test]
    fn reads_segments_parts_and_the_hint() {
        let p = LlPlaylist::parse(LIVE).unwrap();
        assert_eq!(p.media_sequence, 4);
        assert_eq!(p.segments.len(), 2);
        assert!(p.segments[0].parts.is_empty());
        assert_eq!(p.segments[1].parts.len(), 2);
        assert_eq!(p.growing.len(), 1);
        assert_eq!(p.preload_hint.as_deref(), Some("part_00006_1.m4s"));
        assert_eq!(p.part_hold_back, Some(0.3));
        assert_eq!(p.segments_produced(), 6);
        assert!(p.is_ready() && !p.ended);
        assert_eq!(p.violations(), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_checked() {
        let broken = |from: &str, to: &str| {
            let text = LIVE.replacen(from, to, 1);
            assert_ne!(text, LIVE, "{from} not found");
            LlPlaylist::parse(&text).unwrap().violations()
        };
        let cases = [
            (
                "PART-HOLD-BACK=0.300",
                "PART-HOLD-BACK=0.150",
                "PART-HOLD-BACK",
            ),
            (
                "CAN-BLOCK-RELOAD=YES",
                "CAN-BLOCK-RELOAD=NO",
                "CAN-BLOCK-RELOAD",
            ),
            (
                "DURATION=0.10000,URI=\"part_00005_1",
                "DURATION=0.12000,URI=\"part_00005_1",
                "> PART-TARGET",
            ),
            ("part_00005_1.m4s", "part_00005_2.m4s", "is not part 1"),
            ("#EXTINF:0.20000", "#EXTINF:0.30000", "but its parts"),
            ("seg_00005.m4s", "seg_00007.m4s", "not media sequence 5"),
            ("#EXTINF:1.00000", "#EXTINF:2.00000", "> TARGETDURATION"),
            (
                "URI=\"part_00006_1.m4s\"",
                "URI=\"part_00006_3.m4s\"",
                "not the next part",
            ),
            (
                "URI=\"part_00006_1.m4s\"",
                "URI=\"part_00008_0.m4s\"",
                "not the next part",
            ),
            (
                ",INDEPENDENT=YES\n#EXT-X-PRELOAD",
                "\n#EXT-X-PRELOAD",
                "dependent part",
            ),
            ("#EXT-X-MAP:URI=\"init.mp4\"\n", "", "EXT-X-MAP"),
        ];
        for (from, to, expected) in cases {
            let v = broken(from, to);
            assert!(v.iter().any(|m| m.contains(expected)), "{expected}: {v:?}");
        }
        let ended = LIVE.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_00006_1.m4s\"\n",
            "#EXT-X-ENDLIST\n",
        );
        let v = LlPlaylist::parse(&ended).unwrap().violations();
        assert!(v.iter().any(|m| m.contains("ended playlist")), "{v:?}");
        let no_hint = LIVE.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_00006_1.m4s\"\n",
            "",
        );
        let v = LlPlaylist::parse(&no_hint).unwrap().violations();
        assert!(
            v.iter().any(|m| m.contains("without PRELOAD-HINT")),
            "{v:?}"
        );
    }

    #[test]
    fn rejects_what_is_not_a_playlist() {
        assert_eq!(LlPlaylist::parse(""), None);
        assert_eq!(LlPlaylist::parse("hello"), None);
        assert_eq!(LlPlaylist::parse("#EXTM3U\n#EXTINF:abc,\nx.m4s\n"), None);
        assert_eq!(
            LlPlaylist::parse("#EXTM3U\nseg.m4s\n"),
            None,
            "a URI without EXTINF"
        );
        assert_eq!(LlPlaylist::parse("#EXTM3U\n#EXT-X-PART:URI=\"a\"\n"), None);
    }

    #[test]
    fn attributes_may_be_quoted_and_in_any_order() {
        let list = "URI=\"a,b.m4s\",DURATION=0.1,INDEPENDENT=YES";
        assert_eq!(attribute(list, "URI"), Some("a,b.m4s"));
        assert_eq!(attribute(list, "DURATION"), Some("0.1"));
        assert_eq!(attribute(list, "INDEPENDENT"), Some("YES"));
        assert_eq!(attribute(list, "GAP"), None);
    }
}
