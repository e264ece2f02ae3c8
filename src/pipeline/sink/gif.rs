//! `gif:<file>`: an animated recording, frames timed by when they were shown.

use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Sink, SinkOptions};

/// A buffered file that remembers its first write error, so that one met while the encoder
/// is dropped (the GIF trailer, the last flush) still fails the run.
struct Recorded {
    file: std::io::BufWriter<std::fs::File>,
    failed: Arc<Mutex<Option<std::io::Error>>>,
}

impl Recorded {
    fn note<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            let mut f = self.failed.lock().unwrap();
            if f.is_none() {
                *f = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        }
        r
    }
}

impl Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.file.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.file.flush();
        self.note(r)
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let r = self
            .file
            .flush()
            .and_then(|_| self.file.get_ref().sync_all());
        let _ = self.note(r);
    }
}

/// Streams frames into a GIF file (written to a temporary name, renamed when finished, so a
/// failed or interrupted run leaves any previous file as it was).
pub struct GifSink {
    path: PathBuf,
    tmp: PathBuf,
    size: (u32, u32),
    encoder: Option<GifEncoder<Recorded>>,
    failed: Arc<Mutex<Option<std::io::Error>>>,
    last: Option<(RgbImage, Instant)>,
}

impl GifSink {
    pub fn new(path: PathBuf, opts: &SinkOptions) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out.gif".into());
        let tmp = path.with_file_name(format!(".{name}.part-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| {
                format!(
                    "{}: cannot create (folder missing or read-only?)",
                    path.display()
                )
            })?;
        let failed = Arc::new(Mutex::new(None));
        let out = Recorded {
            file: std::io::BufWriter::new(f),
            failed: failed.clone(),
        };
        let mut encoder = GifEncoder::new_with_speed(out, 20);
        encoder.set_repeat(Repeat::Infinite)?;
        Ok(GifSink {
            path,
            tmp,
            size: opts.size,
            encoder: Some(encoder),
            failed,
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
            // writes the trailer, flushes and syncs; errors land in `failed`
            drop(enc);
            if let Some(e) = self.failed.lock().unwrap().take() {
                let _ = std::fs::remove_file(&self.tmp);
                return Err(e).with_context(|| {
                    format!(
                        "{}: cannot write the GIF (disk full?); the previous file, if any, is untouched",
                        self.path.display()
                    )
                });
            }
            std::fs::rename(&self.tmp, &self.path)
                .with_context(|| format!("{}: cannot finish the GIF", self.path.display()))?;
        }
        Ok(())
    }
}

impl Drop for GifSink {
    fn drop(&mut self) {
        // a run that ended without finish (an error elsewhere) leaves no partial file behind
        if self.encoder.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `gif:<file.gif>`: an animated GIF of the run.
pub fn open_spec(arg: &str, opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    if arg.is_empty() {
        anyhow::bail!("gif: give a file, e.g. --sink gif:live.gif");
    }
    Ok(Box::new(GifSink::new(arg.into(), opts)?))
}
