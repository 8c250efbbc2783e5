//! The LL-HLS packager: the encoder's fMP4 fragments (one per frame) → parts of at most
//! `PART-TARGET` → segments that start with a keyframe → a new [`Stream`] snapshot with its
//! playlist after every part. Pure: the wall clock comes in with each fragment.

use super::fmp4::{Fragment, Init};
use super::stream::{Part, Segment, Stream, Timing};
use crate::error::ServerError;
use bytes::{Bytes, BytesMut};
use std::time::{Duration, SystemTime};

/// How the stream is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackagerSettings {
    /// Nominal segment length in seconds (the encoder's keyframe interval).
    pub segment_seconds: f64,
    /// Longest part in seconds (`PART-TARGET`).
    pub part_seconds: f64,
    /// `PART-HOLD-BACK` in parts.
    pub hold_back_parts: u32,
    /// Complete segments kept in the live window.
    pub window: usize,
    /// Wall-clock time of the stream's first frame when known before the encoder (a camera
    /// channel: when its first video arrived), so PROGRAM-DATE-TIME tells a player how far
    /// behind the source it is; `None`: the first fragment's arrival here.
    pub clock_origin: Option<SystemTime>,
}

impl PackagerSettings {
    /// The timing every playlist of this stream declares.
    pub fn timing(&self) -> Timing {
        Timing {
            target_duration: self.segment_seconds.ceil().max(1.0) as u32,
            part_target: self.part_seconds,
            hold_back_parts: self.hold_back_parts,
            segment_seconds: self.segment_seconds,
        }
    }
}

/// What a fragment changed, for the packager's owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A part was published (the playlist changed).
    Part { msn: u64, index: usize },
    /// Segment `msn` is complete: its bytes (for a recording on disk).
    Segment { msn: u64, bytes: Bytes },
}

/// Builds the stream from the encoder's output.
pub struct Packager {
    settings: PackagerSettings,
    stream: Stream,
    timescale: u64,
    /// Fragments of the part being filled.
    pending: BytesMut,
    pending_ticks: u64,
    pending_independent: bool,
    /// Fragments (frames: the encoder writes one per frame) in the part being filled.
    pending_frames: u64,
    /// Ticks in the closed parts of the open segment.
    segment_ticks: u64,
    /// Decode time and wall-clock time of the first fragment (program date-time anchor).
    anchor: Option<(u64, SystemTime)>,
}

impl Packager {
    pub fn new(settings: PackagerSettings) -> Self {
        Packager {
            stream: Stream::new(settings.timing()),
            settings,
            timescale: 0,
            pending: BytesMut::new(),
            pending_ticks: 0,
            pending_independent: false,
            pending_frames: 0,
            segment_ticks: 0,
            anchor: None,
        }
    }

    /// The current snapshot.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Takes the init segment (once, before any fragment).
    pub fn init(&mut self, init: Init) {
        self.timescale = u64::from(init.timescale);
        self.stream.init = Some(init.bytes);
        self.publish();
    }

    fn ticks(&self, seconds: f64) -> u64 {
        (seconds * self.timescale as f64).round() as u64
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.timescale as f64
    }

    /// Adds one fragment that arrived at `now`.
    pub fn push(&mut self, fragment: Fragment, now: SystemTime) -> Result<Vec<Event>, ServerError> {
        if self.timescale == 0 {
            return Err(ServerError::Fmp4("fragment before the init segment".into()));
        }
        if self.stream.ended {
            return Err(ServerError::Fmp4("fragment after the end".into()));
        }
        let mut events = Vec::new();
        if fragment.independent && self.segment_open() {
            // A keyframe always starts a segment.
            events.extend(self.close_part());
            events.extend(self.close_segment());
        }
        if !self.segment_open() {
            self.open_segment(&fragment, now);
        }
        if self.pending.is_empty() {
            self.pending_independent = fragment.independent;
        }
        self.pending.extend_from_slice(&fragment.bytes);
        self.pending_ticks += fragment.duration;
        self.pending_frames += 1;
        // Close as soon as the next frame (as long as this one) would not fit, so a part
        // leaves with its last frame instead of waiting for the next.
        let next = fragment.duration;
        if self.pending_ticks + next > self.ticks(self.settings.part_seconds) {
            events.extend(self.close_part());
        }
        if self.segment_ticks + self.pending_ticks + next
            > self.ticks(self.settings.segment_seconds)
        {
            // The segment is full: its last part goes out now; the segment itself is
            // completed by the next keyframe, so the playlist that ends a segment also
            // lists the next one's first part and players move on without a round trip.
            events.extend(self.close_part());
        }
        // One rendering per fragment, however many parts and segments it closed.
        if !events.is_empty() {
            self.publish();
        }
        Ok(events)
    }

    /// Publishes what is pending and ends the stream (`#EXT-X-ENDLIST`).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events: Vec<Event> = self.close_part().into_iter().collect();
        events.extend(self.close_segment());
        self.stream.ended = true;
        self.publish();
        events
    }

    /// Marks the stream ended without adding anything (the encoder failed).
    pub fn abandon(&mut self) {
        self.stream.ended = true;
        self.publish();
    }

    /// Whether the newest segment is still growing.
    fn segment_open(&self) -> bool {
        self.stream
            .segments
            .back()
            .is_some_and(|s| s.bytes.is_none())
    }

    fn open_segment(&mut self, fragment: &Fragment, now: SystemTime) {
        let origin = self.settings.clock_origin.unwrap_or(now);
        let (anchor_ticks, anchor_time) =
            *self.anchor.get_or_insert((fragment.decode_time, origin));
        let offset = fragment.decode_time.saturating_sub(anchor_ticks);
        let start = anchor_time + Duration::from_secs_f64(self.seconds(offset));
        let msn = self
            .stream
            .segments
            .back()
            .map_or(self.stream.produced, |s| s.msn + 1);
        if !fragment.independent {
            tracing::warn!("segment {msn} does not start with a keyframe");
        }
        self.stream.segments.push_back(Segment {
            msn,
            parts: Vec::new(),
            part_count: 0,
            duration: 0.0,
            start,
            bytes: None,
            part_ends: Vec::new(),
        });
        self.segment_ticks = 0;
    }

    fn close_part(&mut self) -> Option<Event> {
        if self.pending.is_empty() {
            return None;
        }
        let part = Part {
            bytes: self.pending.split().freeze(),
            duration: self.seconds(self.pending_ticks),
            independent: self.pending_independent,
        };
        self.segment_ticks += self.pending_ticks;
        self.pending_ticks = 0;
        self.stream.frames += std::mem::take(&mut self.pending_frames);
        let duration = self.seconds(self.segment_ticks);
        let segment = self.stream.segments.back_mut()?;
        segment.parts.push(part);
        segment.part_count = segment.parts.len();
        segment.duration = duration;
        let event = Event::Part {
            msn: segment.msn,
            index: segment.part_count - 1,
        };
        Some(event)
    }

    fn close_segment(&mut self) -> Option<Event> {
        let segment = self.stream.segments.back_mut()?;
        if segment.bytes.is_some() {
            return None;
        }
        if segment.parts.is_empty() {
            self.stream.segments.pop_back();
            return None;
        }
        let mut whole = BytesMut::with_capacity(segment.parts.iter().map(|p| p.bytes.len()).sum());
        for part in &segment.parts {
            whole.extend_from_slice(&part.bytes);
            segment.part_ends.push(whole.len());
        }
        let bytes = whole.freeze();
        segment.bytes = Some(bytes.clone());
        let msn = segment.msn;
        self.stream.produced = msn + 1;
        self.trim();
        Some(Event::Segment { msn, bytes })
    }

    /// Drops segments that left the window, and the parts of every segment that reaches
    /// back more than three target durations from the live edge (the spec: no part listed
    /// further back than that; their segment stays).
    fn trim(&mut self) {
        let complete = |s: &Segment| s.bytes.is_some();
        while self.stream.segments.iter().filter(|s| complete(s)).count()
            > self.settings.window.max(1)
        {
            self.stream.segments.pop_front();
        }
        let keep = 3.0 * f64::from(self.stream.timing.target_duration);
        let mut from_end = 0.0;
        // Counted in segments too (the growing one included), as parsers check it: a short
        // first segment must not keep a fourth segment's parts listed.
        for (back, segment) in self.stream.segments.iter_mut().rev().enumerate() {
            from_end += segment.duration;
            if from_end > keep || back >= 3 {
                segment.parts.clear();
            }
        }
    }

    fn publish(&mut self) {
        // Every published state is trimmed: a newly opened segment pushes the oldest listed
        // parts past the three the playlist may list.
        self.trim();
        self.stream.playlist = Bytes::from(self.stream.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::playlist::LlPlaylist;
    use crate::hls::stream::Resource;
    use std::time::UNIX_EPOCH;

    const FRAME: u64 = 512; // ffmpeg's mp4 timescale for 30 fps is 15360

    fn settings() -> PackagerSettings {
        PackagerSettings {
            segment_seconds: 1.0,
            part_seconds: 0.1,
            hold_back_parts: 3,
            window: 3,
            clock_origin: None,
        }
    }

    fn started() -> Packager {
        let mut p = Packager::new(settings());
        p.init(Init {
            bytes: Bytes::from_static(b"init"),
            timescale: 15360,
        });
        p
    }

    fn frame(n: u64, gop: u64) -> Fragment {
        Fragment {
            bytes: Bytes::from(format!("[{n}]")),
            decode_time: n * FRAME,
            duration: FRAME,
            independent: n.is_multiple_of(gop),
        }
    }

    fn clock(n: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_780_800) + Duration::from_millis(n * 33)
    }

    fn feed(p: &mut Packager, frames: std::ops::Range<u64>, gop: u64) -> Vec<Event> {
        frames
            .flat_map(|n| p.push(frame(n, gop), clock(n)).unwrap())
            .collect()
    }

    #[test]
    fn three_frames_make_a_part_and_ten_parts_a_segment() {
        let mut p = started();
        let events = feed(&mut p, 0..3, 30);
        assert_eq!(
            events,
            vec![Event::Part { msn: 0, index: 0 }],
            "part leaves with its 3rd frame"
        );
        let events = feed(&mut p, 3..30, 30);
        assert_eq!(events.len(), 9, "9 more parts: {events:?}");
        assert!(
            !p.stream().is_ready(),
            "complete only when the next keyframe comes"
        );
        assert_eq!(
            p.stream().next_part(),
            (1, 0),
            "but the hint names the next segment"
        );
        let events = feed(&mut p, 30..31, 30);
        let Some(Event::Segment { msn: 0, bytes }) = events.last() else {
            panic!("segment 0 not complete: {events:?}")
        };
        let expected: String = (0..30).map(|n| format!("[{n}]")).collect();
        assert_eq!(
            &bytes[..],
            expected.as_bytes(),
            "a segment is its parts in order"
        );
        let stream = p.stream();
        assert!(stream.is_ready());
        assert_eq!(stream.get(Resource::Part(0, 9)).unwrap(), "[27][28][29]");
        assert_eq!(stream.next_part(), (1, 0));
        assert!(stream.has(0, Some(9)) && stream.has(0, None));
        assert!(!stream.has(0, Some(10)) && !stream.has(1, Some(0)));
    }

    #[test]
    fn the_playlist_text_is_exact() {
        let mut p = started();
        feed(&mut p, 0..34, 30);
        let expected = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.300\n\
            #EXT-X-PART-INF:PART-TARGET=0.100\n#EXT-X-MEDIA-SEQUENCE:0\n\
            #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-27T12:00:00.000Z\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_1.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_2.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_3.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_4.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_5.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_6.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_7.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_8.m4s\"\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00000_9.m4s\"\n\
            #EXTINF:1.00000,\nseg_00000.m4s\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-27T12:00:01.000Z\n\
            #EXT-X-PART:DURATION=0.10000,URI=\"part_00001_0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_00001_1.m4s\"\n";
        assert_eq!(String::from_utf8_lossy(&p.stream().playlist), expected);
        assert!(LlPlaylist::parse(expected).unwrap().violations().is_empty());

        p.finish();
        let ended = String::from_utf8_lossy(&p.stream().playlist).into_owned();
        assert!(
            ended.ends_with(
                "#EXT-X-PART:DURATION=0.03333,URI=\"part_00001_1.m4s\"\n\
             #EXTINF:0.13333,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
            ),
            "{ended}"
        );
        assert!(!ended.contains("PRELOAD-HINT"));
        assert!(LlPlaylist::parse(&ended).unwrap().violations().is_empty());
    }

    #[test]
    fn the_window_slides_and_old_parts_go_first() {
        let mut p = Packager::new(PackagerSettings {
            window: 5,
            clock_origin: None,
            ..settings()
        });
        p.init(Init {
            bytes: Bytes::from_static(b"init"),
            timescale: 15360,
        });
        feed(&mut p, 0..(30 * 7 + 15), 30);
        let stream = p.stream();
        let listed: Vec<u64> = stream.segments.iter().map(|s| s.msn).collect();
        assert_eq!(
            listed,
            vec![2, 3, 4, 5, 6, 7],
            "5 complete segments and the growing one"
        );
        assert_eq!(stream.produced, 7);
        assert_eq!(
            stream.frames,
            30 * 7 + 15,
            "every frame is in a closed part"
        );
        assert!(
            stream.segments[2].parts.is_empty(),
            "reaching back more than 3 s from the edge, and a fourth segment from the end"
        );
        assert_eq!(stream.segments[2].part_count, 10);
        assert_eq!(
            stream.segments[3].parts.len(),
            10,
            "the last three list their parts"
        );
        assert!(
            stream.get(Resource::Segment(1)).is_none(),
            "left the window"
        );
        assert!(stream.get(Resource::Segment(2)).is_some());
        // Parts that left the playlist are still served, cut from their segment, to a
        // player that read an older playlist; not past the last, nor of a segment gone.
        let parts: Vec<Bytes> = (0..10)
            .map(|i| stream.get(Resource::Part(3, i)).expect("an unlisted part"))
            .collect();
        assert!(parts.iter().all(|p| !p.is_empty()));
        assert_eq!(
            Some(parts.concat().into()),
            stream.get(Resource::Segment(3)),
            "the parts, in order, are the segment"
        );
        assert!(stream.get(Resource::Part(3, 10)).is_none());
        assert!(
            stream.get(Resource::Part(1, 0)).is_none(),
            "left the window"
        );
        let text = String::from_utf8_lossy(&stream.playlist).into_owned();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"));
        let parsed = LlPlaylist::parse(&text).unwrap();
        assert_eq!(parsed.violations(), Vec::<String>::new());
    }

    #[test]
    fn other_frame_rates_keep_parts_within_the_target() {
        // 25 fps in ffmpeg's 12800 timescale: parts of 2 frames (0.08 s), never 3 (0.12 s).
        let mut p = Packager::new(settings());
        p.init(Init {
            bytes: Bytes::from_static(b"init"),
            timescale: 12800,
        });
        for n in 0..60 {
            p.push(frame(n, 25), clock(n)).unwrap();
        }
        let text = String::from_utf8_lossy(&p.stream().playlist).into_owned();
        assert!(text.contains("DURATION=0.08000"), "{text}");
        assert_eq!(
            LlPlaylist::parse(&text).unwrap().violations(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut p = Packager::new(settings());
        assert!(p.push(frame(0, 30), clock(0)).is_err(), "before init");
        let mut p = started();
        feed(&mut p, 0..5, 30);
        p.finish();
        assert!(p.push(frame(5, 30), clock(5)).is_err(), "after the end");
        // Finishing an empty stream lists nothing but ends it.
        let mut empty = started();
        empty.finish();
        assert!(empty.stream().ended && !empty.stream().is_ready());
    }
}
