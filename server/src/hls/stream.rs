//! A live session's LL-HLS stream as published: the init segment, the segments of the live
//! window with their parts, and the media playlist text rendered once per change, so any
//! number of readers share one snapshot. Pure data; the [`super::packager`] builds it.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use app::hls_path::PLAYLIST;

/// The init segment's name (`#EXT-X-MAP`).
pub const INIT: &str = "init.mp4";

/// The name of complete segment `msn`.
pub fn segment_name(msn: u64) -> String {
    format!("seg_{msn:05}.m4s")
}

/// The name of part `index` of segment `msn`.
pub fn part_name(msn: u64, index: usize) -> String {
    format!("part_{msn:05}_{index}.m4s")
}

/// What a file name of the stream refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Playlist,
    Init,
    Segment(u64),
    Part(u64, usize),
}

impl Resource {
    /// Parses a name [`segment_name`], [`part_name`], [`INIT`] or [`PLAYLIST`] wrote.
    pub fn parse(name: &str) -> Option<Self> {
        if name == PLAYLIST {
            return Some(Resource::Playlist);
        }
        if name == INIT {
            return Some(Resource::Init);
        }
        let number = |digits: &str| -> Option<u64> {
            (digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        };
        if let Some(digits) = name
            .strip_prefix("seg_")
            .and_then(|n| n.strip_suffix(".m4s"))
        {
            return number(digits).map(Resource::Segment);
        }
        let rest = name.strip_prefix("part_")?.strip_suffix(".m4s")?;
        let (msn, index) = rest.split_once('_')?;
        let index_ok = !index.is_empty()
            && index.len() <= 4
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        index_ok.then_some(())?;
        Some(Resource::Part(number(msn)?, index.parse().ok()?))
    }
}

/// The stream's fixed timing, declared in every playlist.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// `#EXT-X-TARGETDURATION`: whole seconds, at least every segment's duration.
    pub target_duration: u32,
    /// `PART-TARGET`: the longest part, in seconds.
    pub part_target: f64,
    /// `PART-HOLD-BACK` in part targets (at least 2, the spec's least).
    pub hold_back_parts: u32,
    /// Nominal segment length (the keyframe interval), in seconds.
    pub segment_seconds: f64,
}

impl Timing {
    /// `PART-HOLD-BACK`: how far behind the live edge players stay, in seconds (the spec
    /// asks for at least 2 part targets and suggests 3).
    pub fn part_hold_back(&self) -> f64 {
        // The page's player aims at the same figure: one formula for both.
        f64::from(app::hls_path::live_sync_seconds(
            self.part_target,
            self.hold_back_parts,
        ))
    }
}

/// A part: one or more fragments, at most `PART-TARGET` long.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub bytes: Bytes,
    pub duration: f64,
    /// It starts with a keyframe.
    pub independent: bool,
}

/// A segment of the live window: its parts so far (dropped once far from the live edge)
/// and, once complete, its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Part>,
    /// Parts it was made of (kept when the parts themselves are dropped).
    pub part_count: usize,
    pub duration: f64,
    /// Wall-clock time of its first frame (`#EXT-X-PROGRAM-DATE-TIME`).
    pub start: SystemTime,
    /// The whole segment, once its last part is in.
    pub bytes: Option<Bytes>,
    /// Where each part ends in `bytes`, once complete: a part that has left the playlist
    /// (only the last three segments list theirs) is still served, cut from the segment,
    /// to a player that read an older playlist (a slow one, or one behind a burst).
    pub part_ends: Vec<usize>,
}

impl Segment {
    /// Part `i`'s bytes: kept as published, or cut from the complete segment.
    fn part(&self, i: usize) -> Option<Bytes> {
        if let Some(p) = self.parts.get(i) {
            return Some(p.bytes.clone());
        }
        let end = *self.part_ends.get(i)?;
        let start = if i == 0 { 0 } else { self.part_ends[i - 1] };
        let bytes = self.bytes.as_ref()?;
        (start < end && end <= bytes.len()).then(|| bytes.slice(start..end))
    }
}

/// One published state of the stream.
#[derive(Debug, Clone)]
pub struct Stream {
    pub timing: Timing,
    pub init: Option<Bytes>,
    /// The live window, oldest first; the last one may still be growing.
    pub segments: VecDeque<Segment>,
    /// `#EXT-X-ENDLIST`: nothing more will come.
    pub ended: bool,
    /// Complete segments produced since the start (including those that left the window).
    pub produced: u64,
    /// Frames published in parts since the start (the encoder writes a fragment a frame).
    pub frames: u64,
    /// The playlist text for this state (see [`Stream::render`]).
    pub playlist: Bytes,
}

impl Stream {
    /// An empty stream (no playlist yet).
    pub fn new(timing: Timing) -> Self {
        Stream {
            timing,
            init: None,
            segments: VecDeque::new(),
            ended: false,
            produced: 0,
            frames: 0,
            playlist: Bytes::new(),
        }
    }

    /// This state, ended as it is (`#EXT-X-ENDLIST`, no preload hint): for readers of a
    /// session that ended without finishing its stream.
    pub fn ended_copy(&self) -> Self {
        let mut ended = self.clone();
        ended.ended = true;
        ended.playlist = Bytes::from(ended.render());
        ended
    }

    /// Whether a player can start: one complete segment is listed (every client, also one
    /// that ignores parts, finds something to play).
    pub fn is_ready(&self) -> bool {
        self.produced > 0
    }

    /// The last position published: (segment, parts in it) of the newest segment.
    pub fn last_position(&self) -> Option<(u64, usize)> {
        self.segments.back().map(|s| (s.msn, s.part_count))
    }

    /// Whether a blocking reload for `_HLS_msn=msn` (and `_HLS_part=part`) can be
    /// answered: that segment is complete, or has that part; a part past the end of a
    /// complete segment is the next segment's first part. Segments that left the window
    /// count as there.
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        let Some(p) = part else {
            return self.produced > msn;
        };
        match self.segment(msn) {
            Some(s) if p < s.part_count => true,
            Some(s) if s.bytes.is_some() => self.has(msn + 1, Some(0)),
            Some(_) => false,
            None => self.segments.front().is_some_and(|first| msn < first.msn),
        }
    }

    /// The bytes of a resource that exists now.
    pub fn get(&self, resource: Resource) -> Option<Bytes> {
        match resource {
            // Not before a complete segment exists: a client that ignores parts would
            // find nothing to play and give up.
            Resource::Playlist => ((self.is_ready() || self.ended) && !self.playlist.is_empty())
                .then(|| self.playlist.clone()),
            Resource::Init => self.init.clone(),
            Resource::Segment(msn) => self.segment(msn)?.bytes.clone(),
            Resource::Part(msn, i) => self.segment(msn)?.part(i),
        }
    }

    /// Whether `resource` will exist soon: the part the preload hint names, or the
    /// segment it belongs to (a client may wait for it instead of getting 404).
    pub fn is_upcoming(&self, resource: Resource) -> bool {
        if self.ended {
            return false;
        }
        let (next_msn, next_part) = self.next_part();
        match resource {
            Resource::Part(msn, i) => msn == next_msn && i == next_part,
            Resource::Segment(msn) => msn == next_msn,
            _ => false,
        }
    }

    /// The part the preload hint names: the next part of the growing segment, or the
    /// first of the next segment once the growing one has its full length (it is completed
    /// by the next keyframe, which starts the next segment).
    pub fn next_part(&self) -> (u64, usize) {
        // Half a 30 fps frame of slack for durations summed from ticks.
        let full = |s: &Segment| s.duration + 0.016 >= self.timing.segment_seconds;
        match self.segments.back() {
            Some(s) if s.bytes.is_none() && !full(s) => (s.msn, s.part_count),
            Some(s) => (s.msn + 1, 0),
            None => (0, 0),
        }
    }

    fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// The media playlist for this state (RFC 8216bis, with LL-HLS parts): parts are
    /// listed for the segments still holding them, the preload hint names the next part,
    /// and `#EXT-X-ENDLIST` closes an ended stream. Empty until the init segment exists.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        if self.init.is_none() {
            return out;
        }
        let t = self.timing;
        let first = self.segments.front().map_or(0, |s| s.msn);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT}\"\n",
            t.target_duration,
            t.part_hold_back(),
            t.part_target,
        );
        for segment in &self.segments {
            if segment.parts.is_empty() && segment.bytes.is_none() {
                continue; // opened, nothing to list yet
            }
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(segment.start));
            for (i, part) in segment.parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
                    part.duration,
                    part_name(segment.msn, i)
                );
                out.push_str(if part.independent {
                    ",INDEPENDENT=YES\n"
                } else {
                    "\n"
                });
            }
            if segment.bytes.is_some() {
                let _ = writeln!(
                    out,
                    "#EXTINF:{:.5},\n{}",
                    segment.duration,
                    segment_name(segment.msn)
                );
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else {
            let (msn, part) = self.next_part();
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                part_name(msn, part)
            );
        }
        out
    }
}

/// `time` as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T10:00:00.250Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        assert_eq!(segment_name(7), "seg_00007.m4s");
        assert_eq!(part_name(7, 3), "part_00007_3.m4s");
        assert_eq!(Resource::parse("seg_00007.m4s"), Some(Resource::Segment(7)));
        assert_eq!(
            Resource::parse("part_123456_12.m4s"),
            Some(Resource::Part(123456, 12))
        );
        assert_eq!(Resource::parse(INIT), Some(Resource::Init));
        assert_eq!(Resource::parse(PLAYLIST), Some(Resource::Playlist));
        for other in [
            "seg_7.m4s",
            "seg_00007.ts",
            "part_00007_.m4s",
            "part_00007_01.m4s",
            "part_00007_99999.m4s",
            "part_00007.m4s",
            "part_0000x_1.m4s",
            "recording.mp4",
            "",
        ] {
            assert_eq!(Resource::parse(other), None, "{other}");
        }
    }

    #[test]
    fn dates_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_780_800_250); // 2026-11-27
        assert_eq!(rfc3339(t), "2026-11-27T12:00:00.250Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
