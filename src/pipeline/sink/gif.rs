//! `gif:<file>`: an animated recording, frames timed by when they were shown.

use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage};
use std::path::PathBuf;
use std::time::Instant;

use super::{Sink, SinkOptions};

/// Streams frames into a GIF file (written to a temporary name, renamed when finished).
pub struct GifSink {
    path: PathBuf,
    tmp: PathBuf,
    size: (u32, u32),
    encoder: Option<GifEncoder<std::io::BufWriter<std::fs::File>>>,
    last: Option<(RgbImage, Instant)>,
}

impl GifSink {
    pub fn new(path: PathBuf, opts: &SinkOptions) -> Result<Self> {
        let tmp = path.with_extension("gif.part");
        let f = std::fs::File::create(&tmp).with_context(|| {
            format!(
                "{}: cannot create (folder missing or read-only?)",
                path.display()
            )
        })?;
        let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(f), 20);
        encoder.set_repeat(Repeat::Infinite)?;
        Ok(GifSink {
            path,
            tmp,
            size: opts.size,
            encoder: Some(encoder),
            last: None,
        })
    }

    fn emit(&mut self, img: RgbImage, shown_for_ms: u32) -> Result<()> {
        let rgba = image::DynamicImage::ImageRgb8(img).to_rgba8();
        let frame = Frame::from_parts(
            rgba,
            0,
            0,
            Delay::from_numer_denom_ms(shown_for_ms.max(20), 1),
        );
        self.encoder
            .as_mut()
            .expect("open until finish")
            .encode_frame(frame)
            .with_context(|| {
                format!(
                    "{}: cannot write GIF frame (disk full?)",
                    self.tmp.display()
                )
            })
    }
}

impl Sink for GifSink {
    fn describe(&self) -> String {
        format!("gif {}", self.path.display())
    }
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn show(&mut self, canvas: &RgbImage, _seq: u64) -> Result<()> {
        let now = Instant::now();
        // a frame's delay is only known when the next one arrives
        if let Some((img, t)) = self.last.take() {
            self.emit(img, (now - t).as_millis() as u32)?;
        }
        self.last = Some((canvas.clone(), now));
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        if let Some((img, _)) = self.last.take() {
            self.emit(img, 100)?;
        }
        if let Some(enc) = self.encoder.take() {
            drop(enc);
            std::fs::rename(&self.tmp, &self.path)
                .with_context(|| format!("{}: cannot finish the GIF", self.path.display()))?;
        }
        Ok(())
    }
}
