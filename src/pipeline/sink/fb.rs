//! `fb:/dev/fbN`: the Linux framebuffer at 16, 24 or 32 bits per pixel with its line stride
//! (RGB565, BGR888, XRGB8888 little-endian, the layouts fbdev drivers use). With
//! `--fb-geometry WxH:bpp` the target may be a plain file of that size, for tests and headless
//! checks.

use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Sink, SinkOptions};

/// Writes frames into a framebuffer device or file.
pub struct FbSink {
    path: PathBuf,
    file: std::fs::File,
    width: u32,
    height: u32,
    bpp: u32,
    stride: usize,
    buf: Vec<u8>,
}

fn sysfs_geometry(dev: &Path) -> Result<(u32, u32, u32, usize)> {
    let name = dev.file_name().and_then(|n| n.to_str()).unwrap_or("fb0");
    let base = Path::new("/sys/class/graphics").join(name);
    let read = |f: &str| std::fs::read_to_string(base.join(f)).map(|s| s.trim().to_string());
    let size = read("virtual_size")?;
    let (w, h) = size
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("bad virtual_size {size}"))?;
    let (w, h): (u32, u32) = (w.parse()?, h.parse()?);
    let bpp: u32 = read("bits_per_pixel")?.parse()?;
    let stride: usize = read("stride")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or((w * bpp / 8) as usize);
    Ok((w, h, bpp, stride))
}

impl FbSink {
    /// Open a framebuffer device (geometry from sysfs) or, with `opts.fb_geometry`, a file.
    pub fn open(path: &str, opts: &SinkOptions) -> Result<Self> {
        let path = PathBuf::from(path);
        let (width, height, bpp, stride) = match opts.fb_geometry {
            Some((w, h, bpp)) => (w, h, bpp, (w * bpp / 8) as usize),
            None => {
                if !path.exists() {
                    bail!(
                        "{}: no framebuffer here; on boards without fbdev use --sink drm, or png:<dir> / gif:<file>; for a plain file give --fb-geometry WxH:bpp",
                        path.display()
                    );
                }
                sysfs_geometry(&path).with_context(|| {
                    format!(
                        "{}: cannot read the framebuffer geometry from sysfs; give --fb-geometry WxH:bpp",
                        path.display()
                    )
                })?
            }
        };
        if ![16, 24, 32].contains(&bpp) {
            bail!(
                "{}: {bpp} bits per pixel is not supported (16, 24 or 32)",
                path.display()
            );
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(opts.fb_geometry.is_some())
            .truncate(false)
            .open(&path)
            .with_context(|| {
                format!(
                    "{}: cannot open for writing (add the user to the video group?)",
                    path.display()
                )
            })?;
        Ok(FbSink {
            path,
            file,
            width,
            height,
            bpp,
            stride,
            buf: vec![0; stride * height as usize],
        })
    }
}

/// Encode one RGB pixel in the framebuffer's layout.
#[inline]
pub fn encode_pixel(bpp: u32, p: [u8; 3], out: &mut [u8]) {
    match bpp {
        16 => {
            let v = ((p[0] as u16 >> 3) << 11) | ((p[1] as u16 >> 2) << 5) | (p[2] as u16 >> 3);
            out[..2].copy_from_slice(&v.to_le_bytes());
        }
        24 => out[..3].copy_from_slice(&[p[2], p[1], p[0]]),
        _ => out[..4].copy_from_slice(&[p[2], p[1], p[0], 0xff]),
    }
}

impl Sink for FbSink {
    fn describe(&self) -> String {
        format!(
            "fb {} {}x{}:{} (stride {})",
            self.path.display(),
            self.width,
            self.height,
            self.bpp,
            self.stride
        )
    }
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn show(&mut self, canvas: &RgbImage, _seq: u64) -> Result<()> {
        let bytes = (self.bpp / 8) as usize;
        let w = canvas.width().min(self.width) as usize;
        let h = canvas.height().min(self.height) as usize;
        for y in 0..h {
            let row = &mut self.buf[y * self.stride..];
            for x in 0..w {
                let p = canvas.get_pixel(x as u32, y as u32).0;
                encode_pixel(self.bpp, p, &mut row[x * bytes..]);
            }
        }
        self.file.seek(SeekFrom::Start(0))?;
        self.file
            .write_all(&self.buf)
            .with_context(|| format!("{}: cannot write the frame", self.path.display()))?;
        Ok(())
    }
}

/// `fb[:<device or file>]`: a Linux framebuffer (default `/dev/fb0`), or a plain file with
/// `--fb-geometry`.
pub fn open_spec(arg: &str, opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    let path = if arg.is_empty() { "/dev/fb0" } else { arg };
    Ok(Box::new(FbSink::open(path, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_formats() {
        let mut b = [0u8; 4];
        encode_pixel(16, [255, 0, 0], &mut b);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0xF800);
        encode_pixel(16, [0, 255, 0], &mut b);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x07E0);
        encode_pixel(24, [1, 2, 3], &mut b);
        assert_eq!(&b[..3], &[3, 2, 1]);
        encode_pixel(32, [1, 2, 3], &mut b);
        assert_eq!(b, [3, 2, 1, 255]);
        assert_eq!(
            super::super::parse_geometry("800x480:16").unwrap(),
            (800, 480, 16)
        );
        assert!(super::super::parse_geometry("800x480:12").is_err());
    }
}
