//! `png:<dir>`: every Nth composed picture as `frame-NNNNNN.png`.

use anyhow::{Context, Result};
use image::RgbImage;
use std::path::PathBuf;

use super::{Sink, SinkOptions};

/// Writes PNG files into a folder.
pub struct PngSink {
    dir: PathBuf,
    size: (u32, u32),
    every: u64,
    shown: u64,
}

impl PngSink {
    pub fn new(dir: PathBuf, opts: &SinkOptions) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        Ok(PngSink {
            dir,
            size: opts.size,
            every: opts.every.max(1),
            shown: 0,
        })
    }
}

impl Sink for PngSink {
    fn describe(&self) -> String {
        format!("png {} (every {})", self.dir.display(), self.every)
    }
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn show(&mut self, canvas: &RgbImage, seq: u64) -> Result<()> {
        if self.shown.is_multiple_of(self.every) {
            crate::fsio::save_png(&self.dir.join(format!("frame-{seq:06}.png")), canvas)?;
        }
        self.shown += 1;
        Ok(())
    }
}

/// `png:<dir>`: one PNG per frame (`--every N`: every Nth) in `dir`.
pub fn open_spec(arg: &str, opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    if arg.is_empty() {
        anyhow::bail!("png: give a folder, e.g. --sink png:out");
    }
    Ok(Box::new(PngSink::new(arg.into(), opts)?))
}
