//! `null`: shows nothing (headless runs, benchmarks).

use anyhow::Result;
use image::RgbImage;

use super::Sink;

/// Discards every picture.
pub struct NullSink {
    pub size: (u32, u32),
}

impl Sink for NullSink {
    fn describe(&self) -> String {
        "null".into()
    }
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn wants_picture(&self) -> bool {
        false
    }
    fn show(&mut self, _canvas: &RgbImage, _seq: u64) -> Result<()> {
        Ok(())
    }
}

/// `null`: shows nothing (headless runs, benchmarks); the canvas is `--size`.
pub fn open_spec(arg: &str, opts: &super::SinkOptions) -> anyhow::Result<Box<dyn Sink>> {
    if !arg.is_empty() {
        anyhow::bail!("null:{arg}: the null sink takes no argument; use --sink null");
    }
    Ok(Box::new(NullSink { size: opts.size }))
}
