//! Fragmented MP4 as the encoder writes it to its pipe: the init segment (`ftyp` + `moov`),
//! then fragments (`moof` + `mdat`, one per frame), read box by box with the three facts the
//! packager needs of each fragment: when it starts, how long it lasts, and whether a
//! player can start decoding there.

use crate::error::ServerError;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest box accepted from the encoder (a 640×480 keyframe is ~50 KB; 4K ~2 MB).
const MAX_BOX: u64 = 64 << 20;
/// `sample_is_non_sync_sample` in ISO/IEC 14496-12 sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// The stream's init segment and its media timescale (ticks per second).
#[derive(Debug, Clone, PartialEq)]
pub struct Init {
    pub bytes: Bytes,
    pub timescale: u32,
}

/// One `moof` + `mdat` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    pub bytes: Bytes,
    /// Decode time of its first sample, in timescale ticks.
    pub decode_time: u64,
    /// Sum of its samples' durations, in timescale ticks.
    pub duration: u64,
    /// Its first sample is a sync sample (a keyframe): decoding can start here.
    pub independent: bool,
}

/// What the reader yields, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Init(Init),
    Fragment(Fragment),
}

/// Defaults from `moov/mvex/trex` that fragments may rely on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct TrackDefaults {
    duration: u32,
    flags: u32,
}

/// Reads [`Chunk`]s from a byte stream.
pub struct Fmp4Reader<R> {
    reader: R,
    ftyp: Option<Vec<u8>>,
    moof: Option<Vec<u8>>,
    defaults: TrackDefaults,
    init_seen: bool,
}

fn bad(reason: impl Into<String>) -> ServerError {
    ServerError::Fmp4(reason.into())
}

impl<R: AsyncRead + Unpin> Fmp4Reader<R> {
    pub fn new(reader: R) -> Self {
        Fmp4Reader {
            reader,
            ftyp: None,
            moof: None,
            defaults: TrackDefaults::default(),
            init_seen: false,
        }
    }

    /// The next chunk; `None` at a clean end of stream (between boxes).
    pub async fn next(&mut self) -> Result<Option<Chunk>, ServerError> {
        loop {
            let Some((kind, data)) = self.read_box().await? else {
                return Ok(None);
            };
            match &kind {
                b"ftyp" => self.ftyp = Some(data),
                b"moov" => {
                    let (timescale, defaults) = parse_moov(&data[8..])?;
                    self.defaults = defaults;
                    self.init_seen = true;
                    let mut bytes = self.ftyp.take().unwrap_or_default();
                    bytes.extend_from_slice(&data);
                    return Ok(Some(Chunk::Init(Init {
                        bytes: bytes.into(),
                        timescale,
                    })));
                }
                b"moof" => self.moof = Some(data),
                b"mdat" => {
                    let Some(mut moof) = self.moof.take() else {
                        return Err(bad("mdat without moof"));
                    };
                    if !self.init_seen {
                        return Err(bad("fragment before the init segment"));
                    }
                    let info = parse_moof(&moof[8..], self.defaults)?;
                    moof.extend_from_slice(&data);
                    return Ok(Some(Chunk::Fragment(Fragment {
                        bytes: moof.into(),
                        decode_time: info.decode_time,
                        duration: info.duration,
                        independent: info.independent,
                    })));
                }
                // mfra, free, sidx, styp, …: not needed for HLS.
                _ => {}
            }
        }
    }

    /// One whole top-level box (header included) and its type.
    async fn read_box(&mut self) -> Result<Option<([u8; 4], Vec<u8>)>, ServerError> {
        let mut header = [0u8; 8];
        match self.reader.read_exact(&mut header[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(pipe(e)),
        }
        self.reader
            .read_exact(&mut header[1..])
            .await
            .map_err(pipe)?;
        let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
        let mut size = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4")));
        let mut data = header.to_vec();
        if size == 1 {
            let mut large = [0u8; 8];
            self.reader.read_exact(&mut large).await.map_err(pipe)?;
            size = u64::from_be_bytes(large);
            data.extend_from_slice(&large);
        }
        if size < data.len() as u64 || size > MAX_BOX {
            return Err(bad(format!(
                "box {} of {size} bytes",
                String::from_utf8_lossy(&kind)
            )));
        }
        let start = data.len();
        data.resize(size as usize, 0);
        self.reader
            .read_exact(&mut data[start..])
            .await
            .map_err(pipe)?;
        Ok(Some((kind, data)))
    }
}

fn pipe(source: std::io::Error) -> ServerError {
    ServerError::Pipe {
        role: crate::error::Role::Encoder,
        source,
    }
}

/// Iterates the child boxes of a box body: (type, body).
fn children(mut body: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), ServerError>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        if body.len() < 8 {
            return Some(Err(bad("truncated box header")));
        }
        let size = u32::from_be_bytes(body[..4].try_into().expect("4")) as usize;
        let kind: [u8; 4] = body[4..8].try_into().expect("4");
        if size < 8 || size > body.len() {
            body = &[];
            return Some(Err(bad("box larger than its parent")));
        }
        let child = &body[8..size];
        body = &body[size..];
        Some(Ok((kind, child)))
    })
}

/// The body of the first child of type `kind` along `path` under `body`.
fn find<'a>(body: &'a [u8], path: &[&[u8; 4]]) -> Result<Option<&'a [u8]>, ServerError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Some(body));
    };
    for child in children(body) {
        let (kind, child) = child?;
        if &kind == *first {
            return find(child, rest);
        }
    }
    Ok(None)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ServerError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes(s.try_into().expect("4")))
        .ok_or_else(|| bad("truncated box"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ServerError> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8")))
        .ok_or_else(|| bad("truncated box"))
}

/// Timescale of the (single) video track and its fragment defaults, from a `moov` body.
fn parse_moov(moov: &[u8]) -> Result<(u32, TrackDefaults), ServerError> {
    let mdhd = find(moov, &[b"trak", b"mdia", b"mdhd"])?.ok_or_else(|| bad("no mdhd"))?;
    let version = *mdhd.first().ok_or_else(|| bad("empty mdhd"))?;
    let timescale = u32_at(mdhd, if version == 1 { 20 } else { 12 })?;
    if timescale == 0 {
        return Err(bad("timescale 0"));
    }
    let defaults = match find(moov, &[b"mvex", b"trex"])? {
        // version/flags, track_ID, default_sample_description_index, duration, size, flags
        Some(trex) => TrackDefaults {
            duration: u32_at(trex, 12)?,
            flags: u32_at(trex, 20)?,
        },
        None => TrackDefaults::default(),
    };
    Ok((timescale, defaults))
}

#[derive(Debug, PartialEq)]
struct FragmentInfo {
    decode_time: u64,
    duration: u64,
    independent: bool,
}

/// Decode time, duration and sync flag of a `moof` body (one track, as ffmpeg writes it).
fn parse_moof(moof: &[u8], trex: TrackDefaults) -> Result<FragmentInfo, ServerError> {
    let traf = find(moof, &[b"traf"])?.ok_or_else(|| bad("no traf"))?;
    let tfhd = find(traf, &[b"tfhd"])?.ok_or_else(|| bad("no tfhd"))?;
    let tfhd_flags = u32_at(tfhd, 0)? & 0x00ff_ffff;
    let mut at = 8; // version/flags, track_ID
    if tfhd_flags & 0x01 != 0 {
        at += 8; // base_data_offset
    }
    if tfhd_flags & 0x02 != 0 {
        at += 4; // sample_description_index
    }
    let mut default_duration = trex.duration;
    if tfhd_flags & 0x08 != 0 {
        default_duration = u32_at(tfhd, at)?;
        at += 4;
    }
    if tfhd_flags & 0x10 != 0 {
        at += 4; // default_sample_size
    }
    let mut default_flags = trex.flags;
    if tfhd_flags & 0x20 != 0 {
        default_flags = u32_at(tfhd, at)?;
    }
    let tfdt = find(traf, &[b"tfdt"])?.ok_or_else(|| bad("no tfdt"))?;
    let decode_time = if tfdt.first() == Some(&1) {
        u64_at(tfdt, 4)?
    } else {
        u64::from(u32_at(tfdt, 4)?)
    };

    let mut duration = 0u64;
    let mut first_flags = None;
    for child in children(traf) {
        let (kind, trun) = child?;
        if &kind != b"trun" {
            continue;
        }
        let flags = u32_at(trun, 0)? & 0x00ff_ffff;
        let count = u32_at(trun, 4)?;
        let mut at = 8;
        if flags & 0x001 != 0 {
            at += 4; // data_offset
        }
        let mut first_sample_flags = None;
        if flags & 0x004 != 0 {
            first_sample_flags = Some(u32_at(trun, at)?);
            at += 4;
        }
        let per_sample = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|f| flags & **f != 0)
            .count();
        if count as usize > trun.len() / 4 + 1 {
            return Err(bad("trun sample count"));
        }
        for i in 0..count as usize {
            let sample = at + i * per_sample * 4;
            let mut field = sample;
            let sample_duration = if flags & 0x100 != 0 {
                let d = u32_at(trun, field)?;
                field += 4;
                d
            } else {
                default_duration
            };
            if flags & 0x200 != 0 {
                field += 4;
            }
            let sample_flags = if flags & 0x400 != 0 {
                Some(u32_at(trun, field)?)
            } else {
                None
            };
            if i == 0 && first_flags.is_none() {
                first_flags = Some(sample_flags.or(first_sample_flags).unwrap_or(default_flags));
            }
            duration += u64::from(sample_duration);
        }
    }
    let first = first_flags.ok_or_else(|| bad("fragment without samples"))?;
    Ok(FragmentInfo {
        decode_time,
        duration,
        independent: first & NON_SYNC == 0,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn full(version_flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = version_flags.to_be_bytes().to_vec();
        b.extend_from_slice(rest);
        b
    }

    /// An init segment with `timescale` and trex defaults (duration 512, non-sync).
    pub(crate) fn init(timescale: u32) -> Vec<u8> {
        let mut mdhd = vec![0u8; 8];
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&[0; 8]);
        let mdhd = mp4_box(b"mdhd", &full(0, &mdhd));
        let trak = mp4_box(b"trak", &mp4_box(b"mdia", &mdhd));
        let mut trex = Vec::new();
        for v in [1u32, 1, 512, 0, NON_SYNC] {
            trex.extend_from_slice(&v.to_be_bytes());
        }
        let mvex = mp4_box(b"mvex", &mp4_box(b"trex", &full(0, &trex)));
        let mut out = mp4_box(b"ftyp", b"iso5\0\0\0\0");
        out.extend(mp4_box(b"moov", &[trak, mvex].concat()));
        out
    }

    /// A one-sample fragment at `decode_time`, written the way ffmpeg does: a keyframe
    /// carries `first_sample_flags`, other frames rely on the tfhd default.
    pub(crate) fn fragment(decode_time: u64, keyframe: bool, payload: &[u8]) -> Vec<u8> {
        let mut tfhd = 1u32.to_be_bytes().to_vec(); // track 1
        tfhd.extend_from_slice(&512u32.to_be_bytes()); // default duration
        tfhd.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        tfhd.extend_from_slice(&0x0101_0000u32.to_be_bytes()); // non-sync default
        let tfhd = mp4_box(b"tfhd", &full(0x02_0038, &tfhd));
        let tfdt = mp4_box(b"tfdt", &full(0x0100_0000, &decode_time.to_be_bytes()));
        let mut trun = 1u32.to_be_bytes().to_vec();
        trun.extend_from_slice(&0u32.to_be_bytes()); // data offset
        let trun = if keyframe {
            trun.extend_from_slice(&0x0200_0000u32.to_be_bytes());
            mp4_box(b"trun", &full(0x05, &trun))
        } else {
            mp4_box(b"trun", &full(0x01, &trun))
        };
        let mfhd = mp4_box(b"mfhd", &full(0, &1u32.to_be_bytes()));
        let traf = mp4_box(b"traf", &[tfhd, tfdt, trun].concat());
        let mut out = mp4_box(b"moof", &[mfhd, traf].concat());
        out.extend(mp4_box(b"mdat", payload));
        out
    }

    async fn read_all(bytes: Vec<u8>) -> Result<Vec<Chunk>, ServerError> {
        let mut reader = Fmp4Reader::new(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await? {
            out.push(chunk);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_the_init_segment_then_one_fragment_per_frame() {
        let mut stream = init(15360);
        let first = fragment(0, true, b"key");
        let second = fragment(512, false, b"delta");
        stream.extend(&first);
        stream.extend(&second);
        stream.extend(mp4_box(b"mfra", b"index")); // written at the end; ignored
        let chunks = read_all(stream).await.unwrap();
        assert_eq!(chunks.len(), 3);
        let Chunk::Init(i) = &chunks[0] else {
            panic!("not init")
        };
        assert_eq!(i.timescale, 15360);
        assert_eq!(&i.bytes[..], &init(15360)[..]);
        assert_eq!(
            chunks[1],
            Chunk::Fragment(Fragment {
                bytes: first.into(),
                decode_time: 0,
                duration: 512,
                independent: true
            })
        );
        let Chunk::Fragment(f) = &chunks[2] else {
            panic!("not a fragment")
        };
        assert_eq!(
            (f.decode_time, f.duration, f.independent),
            (512, 512, false)
        );
    }

    #[tokio::test]
    async fn broken_streams_are_errors_not_panics() {
        // A fragment before any init segment.
        assert!(read_all(fragment(0, true, b"x")).await.is_err());
        // A box that claims more than the limit.
        let mut huge = init(90000);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, b'm', b'd', b'a', b't']);
        assert!(read_all(huge).await.is_err());
        // Cut in the middle of a box.
        let mut cut = init(90000);
        cut.extend(&fragment(0, true, b"abcdef")[..30]);
        assert!(read_all(cut).await.is_err());
        // A box size smaller than its header.
        assert!(read_all(vec![0, 0, 0, 4, b'f', b't', b'y', b'p'])
            .await
            .is_err());
        // Garbage inside the moov.
        let mut garbage = mp4_box(b"moov", &[0, 0, 0, 99, b't', b'r', b'a', b'k']);
        garbage.extend(fragment(0, true, b"x"));
        assert!(read_all(garbage).await.is_err());
        // Nothing at all is a clean end.
        assert!(read_all(Vec::new()).await.unwrap().is_empty());
    }
}
