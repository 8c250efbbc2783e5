//! The live encoder's output: FLV tags, read as they arrive, turned into the fMP4 init
//! segment and one fragment per frame that the packager takes. ffmpeg writes a frame's FLV
//! tag the moment x264 hands it over, where its fMP4 muxer holds each frame back until the
//! next one arrives (it learns a sample's duration from the next one): a frame period of
//! latency (33 ms at 30 fps) that this saves. The frame rate is constant and known, so each
//! frame's duration is too.

use super::fmp4::{Chunk, Fragment, Init};
use crate::error::ServerError;
use crate::video::frame::Shape;
use tokio::io::{AsyncRead, AsyncReadExt};

/// FLV tag types.
const TAG_VIDEO: u8 = 9;
/// `CodecID` of H.264 in a video tag's first byte.
const CODEC_AVC: u8 = 7;
/// `FrameType` of a keyframe.
const FRAME_KEY: u8 = 1;
/// `AVCPacketType`s.
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;
/// Largest tag accepted (the field is 24 bits: 16 MiB; a 4K keyframe is ~2 MB).
const MAX_TAG: usize = 16 << 20;
/// Largest file header accepted (ffmpeg writes the 9 bytes the format defines).
const MAX_HEADER: usize = 1024;

fn bad(reason: impl Into<String>) -> ServerError {
    ServerError::Fmp4(format!("encoder output: {}", reason.into()))
}

fn pipe(e: std::io::Error) -> ServerError {
    bad(format!("reading the pipe: {e}"))
}

/// Reads the encoder's FLV and yields what [`super::fmp4::Fmp4Reader`] yields for fMP4.
pub struct FlvReader<R> {
    reader: R,
    shape: Shape,
    timescale: u32,
    /// Ticks a frame lasts.
    frame_ticks: u64,
    /// The stream's `avcC`, once its sequence header came.
    config: Option<Vec<u8>>,
    header_read: bool,
    frames: u64,
}

impl<R: AsyncRead + Unpin> FlvReader<R> {
    /// A reader of frames of `shape` (their size and constant rate).
    pub fn new(reader: R, shape: Shape) -> Self {
        // Whole ticks a frame, as ffmpeg picks them (30 fps: 15360 a second, 512 a frame);
        // 24000/1001 keeps its fraction (24000 a second, 1001 a frame).
        let num = shape.fps.num.max(1);
        let scale = (15_360 / num).max(1);
        FlvReader {
            reader,
            shape,
            timescale: num * scale,
            frame_ticks: u64::from(shape.fps.den.max(1) * scale),
            config: None,
            header_read: false,
            frames: 0,
        }
    }

    /// The next chunk; `None` at a clean end of stream (between tags).
    pub async fn next(&mut self) -> Result<Option<Chunk>, ServerError> {
        if !self.header_read {
            let mut header = [0u8; 9];
            if !self.read_or_end(&mut header).await? {
                return Ok(None);
            }
            if &header[..3] != b"FLV" {
                return Err(bad("not FLV"));
            }
            let offset = u32::from_be_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
            if !(9..=MAX_HEADER).contains(&offset) {
                return Err(bad(format!("a header of {offset} bytes")));
            }
            // The header's own extra bytes (none from ffmpeg), then PreviousTagSize0.
            self.skip(offset - 9 + 4).await?;
            self.header_read = true;
        }
        loop {
            let mut head = [0u8; 11];
            if !self.read_or_end(&mut head).await? {
                return Ok(None);
            }
            let kind = head[0] & 0x1f;
            let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            if size > MAX_TAG {
                return Err(bad(format!("a tag of {size} bytes")));
            }
            let mut data = vec![0u8; size];
            self.reader.read_exact(&mut data).await.map_err(pipe)?;
            self.skip(4).await?; // PreviousTagSize
            if kind != TAG_VIDEO {
                continue; // onMetaData, and nothing else from this encoder
            }
            if let Some(chunk) = self.video(&data)? {
                return Ok(Some(chunk));
            }
        }
    }

    /// One video tag's body: the sequence header (the init segment) or a frame.
    fn video(&mut self, data: &[u8]) -> Result<Option<Chunk>, ServerError> {
        if data.len() < 5 {
            return Err(bad("a video tag too short"));
        }
        if data[0] & 0x0f != CODEC_AVC {
            return Err(bad(format!("video codec {} is not H.264", data[0] & 0x0f)));
        }
        let key = data[0] >> 4 == FRAME_KEY;
        // Composition time offset, signed 24 bits, in milliseconds.
        let cto_ms = (i32::from_be_bytes([data[2], data[3], data[4], 0])) >> 8;
        let body = &data[5..];
        match data[1] {
            AVC_SEQUENCE_HEADER => match &self.config {
                None => {
                    self.config = Some(body.to_vec());
                    Ok(Some(Chunk::Init(Init {
                        bytes: init_segment(self.shape, self.timescale, body).into(),
                        timescale: self.timescale,
                    })))
                }
                Some(same) if same == body => Ok(None),
                Some(_) => Err(bad("the encoder changed its parameters mid-stream")),
            },
            AVC_NALU => {
                if self.config.is_none() {
                    return Err(bad("a frame before the sequence header"));
                }
                let decode_time = self.frames * self.frame_ticks;
                self.frames += 1;
                let cto = (i64::from(cto_ms) * i64::from(self.timescale) / 1000) as i32;
                Ok(Some(Chunk::Fragment(Fragment {
                    bytes: fragment(
                        self.frames as u32,
                        decode_time,
                        self.frame_ticks as u32,
                        key,
                        cto,
                        body,
                    )
                    .into(),
                    decode_time,
                    duration: self.frame_ticks,
                    independent: key,
                })))
            }
            // End of sequence: the stream ends with the pipe.
            _ => Ok(None),
        }
    }

    /// Fills `buf`; `false` at a clean end before its first byte.
    async fn read_or_end(&mut self, buf: &mut [u8]) -> Result<bool, ServerError> {
        match self.reader.read_exact(&mut buf[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(pipe(e)),
        }
        self.reader.read_exact(&mut buf[1..]).await.map_err(pipe)?;
        Ok(true)
    }

    async fn skip(&mut self, mut n: usize) -> Result<(), ServerError> {
        let mut scratch = [0u8; 64];
        while n > 0 {
            let step = n.min(scratch.len());
            self.reader
                .read_exact(&mut scratch[..step])
                .await
                .map_err(pipe)?;
            n -= step;
        }
        Ok(())
    }
}

/// A box: size, type, body.
fn boxed(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A full box: version and flags first.
fn full(kind: &[u8; 4], version: u8, flags: u32, parts: &[&[u8]]) -> Vec<u8> {
    let mut vf = flags.to_be_bytes();
    vf[0] = version;
    let mut all: Vec<&[u8]> = vec![&vf];
    all.extend_from_slice(parts);
    boxed(kind, &all)
}

/// The identity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn be32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `ftyp` + `moov` for one H.264 track of `shape` with the `avcC` record `config`.
pub fn init_segment(shape: Shape, timescale: u32, config: &[u8]) -> Vec<u8> {
    let ftyp = boxed(
        b"ftyp",
        &[b"isom", &0x200u32.to_be_bytes(), b"isomiso6avc1mp41"],
    );
    let mvhd = full(
        b"mvhd",
        0,
        0,
        &[
            &be32(&[0, 0, 1000, 0, 0x0001_0000]),
            &0x0100u16.to_be_bytes(),
            &[0u8; 10],
            &be32(&MATRIX),
            &[0u8; 24],
            &2u32.to_be_bytes(),
        ],
    );
    let tkhd = full(
        b"tkhd",
        0,
        0x3, // enabled, in the movie
        &[
            &be32(&[0, 0, 1, 0, 0, 0, 0]),
            &[0u8; 8], // layer, alternate group, volume, reserved
            &be32(&MATRIX),
            &be32(&[shape.width << 16, shape.height << 16]),
        ],
    );
    let mdhd = full(
        b"mdhd",
        0,
        0,
        &[&be32(&[0, 0, timescale, 0]), &[0x55, 0xc4, 0, 0]], // "und"
    );
    let hdlr = full(
        b"hdlr",
        0,
        0,
        &[&[0u8; 4], b"vide", &[0u8; 12], b"VideoHandler\0"],
    );
    let vmhd = full(b"vmhd", 0, 1, &[&[0u8; 8]]);
    let dinf = boxed(
        b"dinf",
        &[&full(
            b"dref",
            0,
            0,
            &[&1u32.to_be_bytes(), &full(b"url ", 0, 1, &[])],
        )],
    );
    let avc1 = boxed(
        b"avc1",
        &[
            &[0, 0, 0, 0, 0, 0, 0, 1], // reserved, data reference 1
            &[0u8; 16],                // pre-defined, reserved
            &(shape.width as u16).to_be_bytes(),
            &(shape.height as u16).to_be_bytes(),
            &be32(&[0x0048_0000, 0x0048_0000, 0]), // 72 dpi, reserved
            &1u16.to_be_bytes(),                   // one frame a sample
            &[0u8; 32],                            // compressor name
            &[0x00, 0x18, 0xff, 0xff],             // depth 24, pre-defined -1
            &boxed(b"avcC", &[config]),
        ],
    );
    let stsd = full(b"stsd", 0, 0, &[&1u32.to_be_bytes(), &avc1]);
    let empty = 0u32.to_be_bytes();
    let stbl = boxed(
        b"stbl",
        &[
            &stsd,
            &full(b"stts", 0, 0, &[&empty]),
            &full(b"stsc", 0, 0, &[&empty]),
            &full(b"stsz", 0, 0, &[&empty, &empty]),
            &full(b"stco", 0, 0, &[&empty]),
        ],
    );
    let minf = boxed(b"minf", &[&vmhd, &dinf, &stbl]);
    let mdia = boxed(b"mdia", &[&mdhd, &hdlr, &minf]);
    let trak = boxed(b"trak", &[&tkhd, &mdia]);
    let trex = full(b"trex", 0, 0, &[&be32(&[1, 1, 0, 0, 0])]);
    let mvex = boxed(b"mvex", &[&trex]);
    let moov = boxed(b"moov", &[&mvhd, &trak, &mvex]);
    let mut out = ftyp;
    out.extend(moov);
    out
}

/// `moof` + `mdat` of one sample: fragment number `sequence`, decoded at `decode_time`,
/// lasting `duration` ticks, shown `cto` ticks after it is decoded.
pub fn fragment(
    sequence: u32,
    decode_time: u64,
    duration: u32,
    key: bool,
    cto: i32,
    sample: &[u8],
) -> Vec<u8> {
    // Sample flags: a keyframe depends on no other; any other frame does, and is no sync
    // sample.
    let flags: u32 = if key { 0x0200_0000 } else { 0x0101_0000 };
    let mfhd = full(b"mfhd", 0, 0, &[&sequence.to_be_bytes()]);
    let tfhd = full(b"tfhd", 0, 0x02_0000, &[&1u32.to_be_bytes()]); // default base is moof
    let tfdt = full(b"tfdt", 1, 0, &[&decode_time.to_be_bytes()]);
    // moof (8) + mfhd (16) + traf (8) + tfhd (16) + tfdt (20) + trun (12 + 4 + 4 + 16).
    let moof_len: u32 = 8 + 16 + 8 + 16 + 20 + 36;
    let trun = full(
        b"trun",
        1,
        0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800, // offset, duration, size, flags, cto
        &[
            &1u32.to_be_bytes(),
            &(moof_len + 8).to_be_bytes(), // the sample starts after mdat's header
            &be32(&[duration, sample.len() as u32, flags]),
            &cto.to_be_bytes(),
        ],
    );
    let traf = boxed(b"traf", &[&tfhd, &tfdt, &trun]);
    let moof = boxed(b"moof", &[&mfhd, &traf]);
    debug_assert_eq!(moof.len() as u32, moof_len);
    let mut out = moof;
    out.extend(boxed(b"mdat", &[sample]));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hls::fmp4::Fmp4Reader;
    use crate::video::frame::FrameRate;

    /// The FLV header and PreviousTagSize0.
    pub(crate) fn header() -> Vec<u8> {
        let mut out = b"FLV\x01\x01".to_vec();
        out.extend(9u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out
    }

    /// One tag of `kind` with `body`, and its PreviousTagSize.
    fn tag(kind: u8, millis: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend(&millis.to_be_bytes()[1..]);
        out.push((millis >> 24) as u8);
        out.extend([0, 0, 0]);
        out.extend(body);
        out.extend((11 + body.len() as u32).to_be_bytes());
        out
    }

    /// An `avcC`-shaped record (the reader does not look inside).
    pub(crate) const CONFIG: &[u8] = &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 0x00];

    /// The sequence header tag.
    pub(crate) fn sequence() -> Vec<u8> {
        let mut body = vec![0x17, AVC_SEQUENCE_HEADER, 0, 0, 0];
        body.extend(CONFIG);
        tag(TAG_VIDEO, 0, &body)
    }

    /// A frame's tag carrying `payload`.
    pub(crate) fn frame(millis: u32, key: bool, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![if key { 0x17 } else { 0x27 }, AVC_NALU, 0, 0, 0];
        body.extend(payload);
        tag(TAG_VIDEO, millis, &body)
    }

    fn shape() -> Shape {
        Shape {
            width: 640,
            height: 480,
            fps: FrameRate::whole(30),
        }
    }

    async fn chunks(bytes: Vec<u8>, shape: Shape) -> Result<Vec<Chunk>, ServerError> {
        let mut reader = FlvReader::new(std::io::Cursor::new(bytes), shape);
        let mut out = Vec::new();
        while let Some(c) = reader.next().await? {
            out.push(c);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn frames_become_fragments_that_read_back_as_the_encoder_wrote_them() {
        let mut flv = header();
        flv.extend(tag(18, 0, b"onMetaData-ish")); // skipped
        flv.extend(sequence());
        for n in 0..4u32 {
            flv.extend(frame(n * 33, n == 0, &[0, 0, 0, 2, 0x65, n as u8]));
        }
        let out = chunks(flv, shape()).await.unwrap();
        assert_eq!(out.len(), 5);
        // What this module writes, read back by the fMP4 reader, gives the same facts.
        let written: Vec<u8> = out
            .iter()
            .flat_map(|c| match c {
                Chunk::Init(i) => i.bytes.to_vec(),
                Chunk::Fragment(f) => f.bytes.to_vec(),
            })
            .collect();
        let mut again = Fmp4Reader::new(std::io::Cursor::new(written));
        for c in &out {
            let read = again.next().await.unwrap().unwrap();
            assert_eq!(&read, c);
        }
        let Chunk::Fragment(second) = &out[2] else {
            panic!("not a fragment")
        };
        assert_eq!((second.decode_time, second.duration), (512, 512));
        assert!(!second.independent);
        let Chunk::Init(init) = &out[0] else {
            panic!("no init")
        };
        assert_eq!(init.timescale, 15360);
    }

    #[tokio::test]
    async fn a_fractional_rate_keeps_whole_ticks() {
        let shape = Shape {
            fps: FrameRate {
                num: 30000,
                den: 1001,
            },
            ..shape()
        };
        let mut flv = header();
        flv.extend(sequence());
        flv.extend(frame(0, true, b"a"));
        flv.extend(frame(33, false, b"b"));
        let out = chunks(flv, shape).await.unwrap();
        let Chunk::Fragment(f) = &out[2] else {
            panic!("not a fragment")
        };
        assert_eq!((f.decode_time, f.duration), (1001, 1001));
    }

    #[tokio::test]
    async fn what_the_encoder_never_writes_is_an_error() {
        let mut no_header = header();
        no_header.extend(frame(0, true, b"a"));
        assert!(chunks(no_header, shape()).await.is_err());
        assert!(chunks(b"not flv at all".to_vec(), shape()).await.is_err());
        let mut huge_header = header();
        huge_header[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(chunks(huge_header, shape()).await.is_err(), "no 4 GB skip");
        let mut other_codec = header();
        other_codec.extend(tag(TAG_VIDEO, 0, &[0x12, 0, 0, 0, 0, 1]));
        assert!(chunks(other_codec, shape()).await.is_err());
        let mut cut = header();
        cut.extend(sequence());
        cut.extend(&frame(0, true, b"abc")[..8]);
        assert!(chunks(cut, shape()).await.is_err(), "a tag cut short");
        assert!(chunks(Vec::new(), shape()).await.unwrap().is_empty());
    }
}
