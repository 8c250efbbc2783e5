//! The shape a live fragmented MP4 from a browser's recorder must have, checked box by box as
//! its bytes arrive: one video track, a `moov` with empty sample tables (the samples come in
//! `moof`/`mdat` fragments), sane box sizes. What a recorder never sends (a `moov` declaring
//! millions of samples makes ffmpeg's demuxer build an index of gigabytes) is refused before
//! the decoder sees it.

use std::fmt;

/// Largest `moov` a recorder sends (Safari's is ~1 KiB): it is buffered to be read.
const MAX_MOOV: u64 = 64 * 1024;
/// Largest top-level box: a fragment of a few frames is well below it.
const MAX_BOX: u64 = 32 * 1024 * 1024;
/// Nesting the walk follows inside `moov`.
const MAX_DEPTH: usize = 8;

/// Why a live MP4 was refused (for the log; the page hears "bad media").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A box whose size field is impossible (smaller than its header, "to the end of the
    /// file", or past [`MAX_BOX`]).
    BoxSize { kind: [u8; 4], size: u64 },
    /// A `moov` larger than [`MAX_MOOV`], or a second one.
    Moov(&'static str),
    /// A sample table that lists samples: a live fragmented stream has none there.
    SampleTable { kind: [u8; 4], entries: u32 },
    /// Not exactly one video track.
    VideoTracks(usize),
    /// Media data before the `moov`.
    NoMoov([u8; 4]),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |k: &[u8; 4]| String::from_utf8_lossy(k).into_owned();
        match self {
            Refusal::BoxSize { kind, size } => write!(f, "box {} of size {size}", name(kind)),
            Refusal::Moov(why) => write!(f, "moov {why}"),
            Refusal::SampleTable { kind, entries } => {
                write!(f, "{} lists {entries} entries in a live moov", name(kind))
            }
            Refusal::VideoTracks(n) => write!(f, "{n} video tracks (one expected)"),
            Refusal::NoMoov(kind) => write!(f, "{} before the moov", name(kind)),
        }
    }
}

/// Follows the top-level boxes of one live stream across its chunks.
#[derive(Debug, Default)]
pub struct LiveMp4 {
    /// Bytes of the next box header read so far.
    header: Vec<u8>,
    /// Bytes of the current box still to come (0: a header is next).
    remaining: u64,
    /// The `moov` being collected.
    moov: Option<Vec<u8>>,
    seen_moov: bool,
}

impl LiveMp4 {
    /// Takes the stream's next chunk; an error refuses the stream.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), Refusal> {
        while !data.is_empty() {
            if self.remaining == 0 {
                let need = self.header_len().saturating_sub(self.header.len());
                let take = need.min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() < self.header_len() {
                    continue;
                }
                self.open_box()?;
                continue;
            }
            let take = (self.remaining.min(data.len() as u64)) as usize;
            if let Some(moov) = &mut self.moov {
                moov.extend_from_slice(&data[..take]);
            }
            self.remaining -= take as u64;
            data = &data[take..];
            if self.remaining == 0 {
                if let Some(moov) = self.moov.take() {
                    check_moov(&moov)?;
                }
            }
        }
        Ok(())
    }

    /// Header bytes needed: 8, or 16 once the size field says a 64-bit size follows.
    fn header_len(&self) -> usize {
        if self.header.len() >= 4 && self.header[..4] == [0, 0, 0, 1] {
            16
        } else {
            8
        }
    }

    /// The header is complete: checks the box and starts on its body.
    fn open_box(&mut self) -> Result<(), Refusal> {
        let header = std::mem::take(&mut self.header);
        let (kind, size, header_len) = parse_header(&header).ok_or(Refusal::BoxSize {
            kind: *b"????",
            size: 0,
        })?;
        if size < header_len as u64 || size > MAX_BOX {
            return Err(Refusal::BoxSize { kind, size });
        }
        let body = size - header_len as u64;
        match &kind {
            b"moov" if self.seen_moov => return Err(Refusal::Moov("twice")),
            b"moov" if size > MAX_MOOV => return Err(Refusal::Moov("too large")),
            b"moov" => {
                self.seen_moov = true;
                self.moov = Some(Vec::with_capacity(body as usize));
                if body == 0 {
                    return Err(Refusal::VideoTracks(0));
                }
            }
            b"moof" | b"mdat" if !self.seen_moov => return Err(Refusal::NoMoov(kind)),
            _ => {}
        }
        self.remaining = body;
        Ok(())
    }
}

/// A box header's type, total size and header length.
fn parse_header(bytes: &[u8]) -> Option<([u8; 4], u64, usize)> {
    let size32 = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
    let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    match size32 {
        // "To the end of the file": a live stream has no end to reach.
        0 => Some((kind, 0, 8)),
        1 => {
            let size = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
            Some((kind, size, 16))
        }
        n => Some((kind, u64::from(n), 8)),
    }
}

/// A box inside a buffered one: its type and body.
type Child<'a> = ([u8; 4], &'a [u8]);

/// What [`walk`] calls for every box.
type Visit<'v> = dyn FnMut([u8; 4], &[u8]) -> Result<(), Refusal> + 'v;

/// The boxes directly inside `body`.
fn children(body: &[u8]) -> Result<Vec<Child<'_>>, Refusal> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let bad = |kind, size| Refusal::BoxSize { kind, size };
        let (kind, size, header_len) = parse_header(rest).ok_or(bad(*b"????", 0))?;
        if size < header_len as u64 || size > rest.len() as u64 {
            return Err(bad(kind, size));
        }
        out.push((kind, &rest[header_len..size as usize]));
        rest = &rest[size as usize..];
    }
    Ok(out)
}

/// Reads a complete `moov` body: one video track, and no samples listed in any table.
fn check_moov(moov: &[u8]) -> Result<(), Refusal> {
    let mut video_tracks = 0;
    for (kind, body) in children(moov)? {
        if &kind == b"trak" {
            let mut handler = None;
            walk(body, 1, &mut |kind, body| {
                if &kind == b"hdlr" {
                    handler = body.get(8..12).map(|h| h == b"vide");
                }
                sample_table(kind, body)
            })?;
            if handler == Some(true) {
                video_tracks += 1;
            }
        }
    }
    if video_tracks != 1 {
        return Err(Refusal::VideoTracks(video_tracks));
    }
    Ok(())
}

/// Visits every box under `body` (containers opened), up to [`MAX_DEPTH`].
fn walk(body: &[u8], depth: usize, visit: &mut Visit<'_>) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for (kind, inner) in children(body)? {
        visit(kind, inner)?;
        if matches!(&kind, b"mdia" | b"minf" | b"stbl" | b"edts" | b"dinf") {
            walk(inner, depth + 1, visit)?;
        }
    }
    Ok(())
}

/// A sample table box that lists samples or chunks (`stts`, `stsc`, `stco`, `co64`, `stss`
/// and `ctts` count entries; `stsz`/`stz2` count samples): a live stream's are empty.
fn sample_table(kind: [u8; 4], body: &[u8]) -> Result<(), Refusal> {
    // Full box: version and flags (4 bytes) first.
    let count_at = match &kind {
        b"stts" | b"stsc" | b"stco" | b"co64" | b"stss" | b"ctts" => 4,
        // sample_size (or reserved + field size), then sample_count.
        b"stsz" | b"stz2" => 8,
        _ => return Ok(()),
    };
    let entries = body
        .get(count_at..count_at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if entries > 0 {
        return Err(Refusal::SampleTable { kind, entries });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], fields: &[u32]) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        for f in fields {
            body.extend_from_slice(&f.to_be_bytes());
        }
        boxed(kind, &body)
    }

    fn track(handler: &[u8; 4], samples: u32) -> Vec<u8> {
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 12]);
        let stbl = [
            full(b"stts", &[0]),
            full(b"stsc", &[0]),
            full(b"stsz", &[0, samples]),
            full(b"stco", &[0]),
        ]
        .concat();
        let minf = boxed(b"minf", &boxed(b"stbl", &stbl));
        let mdia = boxed(b"mdia", &[boxed(b"hdlr", &hdlr), minf].concat());
        boxed(b"trak", &mdia)
    }

    fn stream(tracks: &[Vec<u8>]) -> Vec<u8> {
        let ftyp = boxed(b"ftyp", b"iso5\0\0\0\0iso5");
        let moov = boxed(
            b"moov",
            &[boxed(b"mvhd", &[0u8; 100]), tracks.concat()].concat(),
        );
        let moof = boxed(b"moof", &[0u8; 40]);
        let mdat = boxed(b"mdat", &[7u8; 3000]);
        [ftyp, moov, moof, mdat].concat()
    }

    #[test]
    fn a_recorders_stream_passes_in_chunks_of_any_size() {
        let bytes = stream(&[track(b"vide", 0)]);
        for chunk in [1, 7, 100, bytes.len()] {
            let mut guard = LiveMp4::default();
            for piece in bytes.chunks(chunk) {
                guard.push(piece).unwrap();
            }
        }
        let mut guard = LiveMp4::default();
        guard.push(&bytes).unwrap();
        guard.push(&boxed(b"moof", &[0u8; 20])).unwrap();
    }

    #[test]
    fn a_moov_that_lists_samples_is_refused() {
        let bytes = stream(&[track(b"vide", 20_000_000)]);
        let err = LiveMp4::default().push(&bytes).unwrap_err();
        assert_eq!(
            err,
            Refusal::SampleTable {
                kind: *b"stsz",
                entries: 20_000_000
            }
        );
        assert!(err.to_string().contains("stsz lists 20000000"));
    }

    #[test]
    fn anything_but_one_video_track_is_refused() {
        let two = stream(&[track(b"vide", 0), track(b"vide", 0)]);
        assert_eq!(LiveMp4::default().push(&two), Err(Refusal::VideoTracks(2)));
        let sound_only = stream(&[track(b"soun", 0)]);
        assert_eq!(
            LiveMp4::default().push(&sound_only),
            Err(Refusal::VideoTracks(0))
        );
        // Sound beside the video is what a recorder with a microphone sends.
        LiveMp4::default()
            .push(&stream(&[track(b"vide", 0), track(b"soun", 0)]))
            .unwrap();
    }

    #[test]
    fn impossible_sizes_and_order_are_refused() {
        let mut guard = LiveMp4::default();
        let huge = [
            &(1u32.to_be_bytes())[..],
            b"mdat",
            &(1u64 << 40).to_be_bytes(),
        ]
        .concat();
        guard.push(&boxed(b"ftyp", b"iso5")).unwrap();
        assert!(matches!(guard.push(&huge), Err(Refusal::BoxSize { .. })));
        let to_end = [&0u32.to_be_bytes()[..], b"mdat"].concat();
        assert!(LiveMp4::default().push(&to_end).is_err());
        let tiny = [&3u32.to_be_bytes()[..], b"free"].concat();
        assert!(LiveMp4::default().push(&tiny).is_err());
        assert_eq!(
            LiveMp4::default().push(&boxed(b"mdat", &[0; 8])),
            Err(Refusal::NoMoov(*b"mdat"))
        );
        let big_moov = boxed(b"moov", &vec![0u8; MAX_MOOV as usize]);
        assert_eq!(
            LiveMp4::default().push(&big_moov),
            Err(Refusal::Moov("too large"))
        );
        let bytes = stream(&[track(b"vide", 0)]);
        let moov_again = boxed(b"moov", &[0u8; 8]);
        let mut guard = LiveMp4::default();
        guard.push(&bytes).unwrap();
        assert_eq!(guard.push(&moov_again), Err(Refusal::Moov("twice")));
    }

    #[test]
    fn a_broken_moov_inside_is_refused_not_trusted() {
        let lying = boxed(
            b"moov",
            &[&500u32.to_be_bytes()[..], b"trak", &[0u8; 8]].concat(),
        );
        assert!(matches!(
            LiveMp4::default().push(&lying),
            Err(Refusal::BoxSize { .. })
        ));
    }
}
