//! File output that never leaves a half-written file behind.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: write a temporary file beside it, fsync, rename over
/// the target, fsync the folder. A crash or a full disk leaves the old file intact.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("out.bin");
/// ign_edge::fsio::atomic_write(&p, b"hello").unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"hello");
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "{}: cannot write {} bytes (disk full or read-only?); the previous file, if any, is untouched",
                path.display(),
                bytes.len()
            )
        });
    }
    Ok(())
}

/// An RGB image encoded as PNG.
pub fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// Encode an RGB image as PNG and write it atomically.
pub fn save_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let bytes = png_bytes(img).with_context(|| format!("{}: cannot encode PNG", path.display()))?;
    atomic_write(path, &bytes)
}

/// Encode RGB frames as an endlessly looping animated GIF (`delay_ms` per frame) and write it
/// atomically.
pub fn save_gif(path: &Path, frames: &[image::RgbImage], delay_ms: u32) -> Result<()> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut buf = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut buf, 10);
        enc.set_repeat(Repeat::Infinite)?;
        for f in frames {
            let rgba = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
            let delay = image::Delay::from_numer_denom_ms(delay_ms.max(20), 1);
            enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                .with_context(|| format!("{}: cannot encode GIF", path.display()))?;
        }
    }
    atomic_write(path, &buf)
}
