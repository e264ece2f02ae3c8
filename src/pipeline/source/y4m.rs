//! YUV4MPEG2 (`.y4m`) video: from a file, or from stdin (`y4m:-`) so that
//! `rpicam-vid ... -o -` or `ffmpeg ... -f yuv4mpegpipe -` can feed the loop.
//!
//! Supports 4:2:0 (`C420`, `C420jpeg`, `C420paldv`, `C420mpeg2`), 4:4:4 and `Cmono`, 8 bits.
//! Colours are converted with BT.601 limited range (what cameras and ffmpeg emit by default).

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use std::io::{BufRead, Read};
use std::time::Instant;

use super::Source;
use crate::pipeline::frame::Frame;

/// Chroma layout of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    C420,
    C444,
    Mono,
}

/// A stream header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    pub chroma: Chroma,
}

/// Parse the header line (without its newline).
pub fn parse_header(line: &str) -> Result<Header> {
    let mut it = line.split(' ');
    if it.next() != Some("YUV4MPEG2") {
        bail!(
            "not a YUV4MPEG2 stream (header {:?})",
            line.chars().take(20).collect::<String>()
        );
    }
    let (mut w, mut h, mut c) = (None, None, Chroma::C420);
    for tag in it {
        // the tag's first character, then its value (a byte split could cut a character)
        let Some(k) = tag.chars().next() else {
            continue;
        };
        let v = &tag[k.len_utf8()..];
        match k {
            'W' => w = v.parse().ok(),
            'H' => h = v.parse().ok(),
            'C' => {
                c = match v {
                    s if s.starts_with("420") => Chroma::C420,
                    "444" => Chroma::C444,
                    "mono" => Chroma::Mono,
                    other => bail!(
                    "unsupported YUV4MPEG2 colour space C{other} (use 420, 444 or mono, 8 bits)"
                ),
                }
            }
            _ => {}
        }
    }
    let max = crate::limits::MAX_VIDEO_SIDE;
    match (w, h) {
        (Some(width), Some(height)) if width > max || height > max => bail!(
            "YUV4MPEG2 frames of {width}x{height}: larger than {max}x{max}; scale the stream down"
        ),
        (Some(width), Some(height)) if width > 0 && height > 0 => Ok(Header {
            width,
            height,
            chroma: c,
        }),
        _ => bail!("YUV4MPEG2 header lacks W and H: {line:?}"),
    }
}

pub use super::convert::yuv_to_rgb;

/// Reads frames from a YUV4MPEG2 byte stream.
pub struct Y4mSource {
    reader: Box<dyn BufRead + Send>,
    header: Header,
    name: String,
    buf: Vec<u8>,
    /// Bytes of one frame.
    frame_bytes: usize,
    seq: u64,
}

impl Y4mSource {
    /// Read the stream header from `reader`.
    pub fn new(mut reader: Box<dyn BufRead + Send>, name: String) -> Result<Self> {
        let line = crate::limits::read_line(&mut reader, crate::limits::MAX_LINE)
            .with_context(|| format!("{name}: cannot read"))?;
        if !line.ends_with(b"\n") && line.len() as u64 >= crate::limits::MAX_LINE {
            bail!(
                "{name}: YUV4MPEG2 header line longer than {} bytes",
                crate::limits::MAX_LINE
            );
        }
        let text = String::from_utf8_lossy(&line);
        let header = parse_header(text.trim_end()).with_context(|| name.clone())?;
        // at most 8192x8192 (checked by parse_header): no overflow
        let plane = header.width * header.height;
        let size = match header.chroma {
            Chroma::C420 => plane + 2 * header.width.div_ceil(2) * header.height.div_ceil(2),
            Chroma::C444 => 3 * plane,
            Chroma::Mono => plane,
        };
        Ok(Y4mSource {
            reader,
            header,
            name,
            // grows with the bytes of the first frame: a header alone allocates nothing
            buf: Vec::new(),
            frame_bytes: size,
            seq: 0,
        })
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn to_rgb(&self) -> Result<RgbImage> {
        let Header {
            width: w,
            height: h,
            chroma,
        } = self.header;
        let b = &self.buf;
        let plane = w * h;
        if let Chroma::C420 = chroma {
            return super::convert::i420_to_rgb(b, w, h);
        }
        Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let (u, v) = match chroma {
                Chroma::C444 => (b[plane + y * w + x], b[2 * plane + y * w + x]),
                _ => (128, 128),
            };
            Rgb(yuv_to_rgb(b[y * w + x], u, v))
        }))
    }
}

impl Source for Y4mSource {
    fn describe(&self) -> String {
        format!(
            "y4m {} {}x{}",
            self.name, self.header.width, self.header.height
        )
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let t0 = Instant::now();
        let line = crate::limits::read_line(&mut self.reader, crate::limits::MAX_LINE)
            .with_context(|| format!("{}: cannot read", self.name))?;
        if line.is_empty() {
            return Ok(None);
        }
        if !line.starts_with(b"FRAME") {
            bail!(
                "{}: frame {} does not start with FRAME (corrupt stream)",
                self.name,
                self.seq
            );
        }
        self.buf.clear();
        let got = (&mut self.reader)
            .take(self.frame_bytes as u64)
            .read_to_end(&mut self.buf)
            .with_context(|| format!("{}: cannot read", self.name))?;
        if got < self.frame_bytes {
            bail!(
                "{}: truncated frame {} ({} bytes expected, {got} found)",
                self.name,
                self.seq,
                self.frame_bytes
            );
        }
        let rgb = self.to_rgb()?;
        let f = Frame::ready(rgb, self.seq, t0);
        self.seq += 1;
        Ok(Some(f))
    }
}

/// `y4m:-` (YUV4MPEG2 on stdin, e.g. from `ffmpeg ... -f yuv4mpegpipe -`) or `y4m:<file>`.
pub fn open_spec(arg: &str, opts: &super::SourceOptions) -> Result<Box<dyn super::Source>> {
    match arg {
        "" => bail!("y4m: give - (stdin) or a file, e.g. --source y4m:-"),
        "-" => Ok(Box::new(Y4mSource::new(
            Box::new(std::io::BufReader::new(std::io::stdin())),
            "stdin".into(),
        )?)),
        path => super::file::open(std::path::Path::new(path), opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(frames: usize, truncate: usize) -> Vec<u8> {
        let mut v = b"YUV4MPEG2 W4 H2 F30:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".to_vec();
        for f in 0..frames {
            v.extend(b"FRAME\n");
            v.extend([16, 235, 16 + f as u8, 100, 16, 235, 128, 128]); // Y 4x2
            v.extend([128, 128]); // U 2x1
            v.extend([128, 240]); // V 2x1
        }
        v.truncate(v.len() - truncate);
        v
    }

    #[test]
    fn parses_frames_and_converts_colour() {
        let data = stream(2, 0);
        let mut s = Y4mSource::new(Box::new(std::io::Cursor::new(data)), "t".into()).unwrap();
        assert_eq!(s.header().chroma, Chroma::C420);
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!((f.rgb.width(), f.rgb.height()), (4, 2));
        assert_eq!(f.rgb.get_pixel(0, 0).0, [0, 0, 0]); // Y=16 gray: black
        assert_eq!(f.rgb.get_pixel(1, 0).0, [255, 255, 255]); // Y=235: white
                                                              // right half has V=240: strongly red
        let p = f.rgb.get_pixel(3, 1).0;
        assert!(p[0] > 200 && p[1] < 100, "{p:?}");
        let f2 = s.next_frame().unwrap().unwrap();
        assert_eq!(f2.seq, 1);
        assert!(s.next_frame().unwrap().is_none());
    }

    #[test]
    fn truncated_stream_is_an_error_naming_the_frame() {
        let data = stream(2, 3);
        let mut s = Y4mSource::new(Box::new(std::io::Cursor::new(data)), "cam".into()).unwrap();
        assert!(s.next_frame().unwrap().is_some());
        let e = s.next_frame().unwrap_err().to_string();
        assert!(e.contains("cam") && e.contains("truncated frame 1"), "{e}");
        assert!(parse_header("P6 640 480").is_err());
        assert!(parse_header("YUV4MPEG2 W4 C420").is_err());
    }
}
