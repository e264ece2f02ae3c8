//! Image ⇄ tensor conversion shared by the runtime and the trainer.
//!
//! Models see images as float32 `C×H×W` in `[-1, 1]` (the model file contract,
//! docs/ARCHITECTURE.md). Any PNG/JPEG of any size and colour is center-cropped to the model's
//! aspect ratio, resized with a Lanczos filter, converted to gray or RGB and scaled; the way back
//! clamps and rounds to 8 bits.
//!
//! ```
//! use ign_core::imaging::{image_to_chw, chw_to_image};
//! let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(40, 30, image::Rgb([255, 0, 0])));
//! let chw = image_to_chw(&img, 1, 28, 28);
//! assert_eq!(chw.len(), 28 * 28);
//! // pure red in BT.601 luma is 76/255, i.e. about -0.4 on the [-1, 1] scale
//! assert!((chw[0] - (76.0 / 127.5 - 1.0)).abs() < 0.01);
//! let back = chw_to_image(&chw, 1, 28, 28);
//! assert_eq!((back.width(), back.height()), (28, 28));
//! ```

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImage, Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// Image file extensions the runtime and trainer read.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// True when `path` has an image extension we read (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Decode image bytes (format guessed, or `format`) within `limits`: the header's dimensions
/// are checked before any pixel buffer is allocated.
///
/// ```
/// use ign_core::imaging::decode_image;
/// let png = ign_core::fsio::png_bytes(&image::RgbImage::new(8, 4)).unwrap();
/// let mut small = image::Limits::default();
/// small.max_image_width = Some(4);
/// assert_eq!(decode_image(&png, None, image::Limits::default()).unwrap().width(), 8);
/// assert!(decode_image(&png, None, small).is_err());
/// ```
pub fn decode_image(
    bytes: &[u8],
    format: Option<image::ImageFormat>,
    limits: image::Limits,
) -> image::ImageResult<DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    match format {
        Some(f) => reader.set_format(f),
        None => reader = reader.with_guessed_format()?,
    }
    reader.limits(limits);
    reader.decode()
}

/// Open an image file, with an error that names the file; images over
/// [`MAX_IMAGE_SIDE`](crate::limits::MAX_IMAGE_SIDE) pixels or
/// [`MAX_IMAGE_ALLOC`](crate::limits::MAX_IMAGE_ALLOC) bytes are refused before decoding.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open image", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read image", path.display()))?;
    reader.limits(crate::limits::image_limits());
    reader.decode().map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable PNG/JPEG image ({e}); check the file or convert it to PNG",
            path.display()
        )
    })
}

/// All image files in `dir`, recursively, in sorted order.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .with_context(|| format!("{}: cannot list folder", d.display()))?;
        for entry in entries {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image_path(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The largest centered window of an `iw×ih` image with the aspect ratio `w:h`, as
/// `(x, y, width, height)`.
///
/// ```
/// assert_eq!(ign_core::imaging::center_crop_rect(640, 480, 28, 28), (80, 0, 480, 480));
/// ```
pub fn center_crop_rect(iw: u32, ih: u32, w: u32, h: u32) -> (u32, u32, u32, u32) {
    // compare iw*h with ih*w to stay in integers
    let (cw, ch) = if (iw as u64) * (h as u64) > (ih as u64) * (w as u64) {
        (((ih as u64 * w as u64) / h as u64).max(1) as u32, ih)
    } else {
        (iw, ((iw as u64 * h as u64) / w as u64).max(1) as u32)
    };
    ((iw - cw) / 2, (ih - ch) / 2, cw, ch)
}

/// Center-crop `img` to the aspect ratio `w:h` (largest such window).
pub fn center_crop(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    let (x, y, cw, ch) = center_crop_rect(img.width(), img.height(), w, h);
    img.crop_imm(x, y, cw, ch)
}

/// BT.601 luma of an RGB triple (any scale in, the same scale out).
#[inline]
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Convert an image of any size and colour to a `C×H×W` float vector in `[-1, 1]`.
///
/// `channels` is 1 (BT.601 luma) or 3 (RGB). Alpha is composited on black.
pub fn image_to_chw(img: &DynamicImage, channels: usize, h: usize, w: usize) -> Vec<f32> {
    let cropped = center_crop(img, w as u32, h as u32);
    let resized = if cropped.width() as usize == w && cropped.height() as usize == h {
        cropped
    } else {
        cropped.resize_exact(w as u32, h as u32, FilterType::Lanczos3)
    };
    let mut out = vec![0f32; channels * h * w];
    if channels == 1 {
        // BT.601 luma, as the live loop's preprocessing (image's to_luma8 uses Rec. 709)
        let rgb = resized.to_rgb8();
        for (o, p) in out.iter_mut().zip(rgb.pixels()) {
            let y = luma(p.0[0] as f32, p.0[1] as f32, p.0[2] as f32);
            *o = y.round() / 127.5 - 1.0;
        }
    } else {
        let rgb = resized.to_rgb8();
        let plane = h * w;
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px.0[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    out
}

/// Map a value in `[-1, 1]` to an 8-bit level (clamped, rounded).
#[inline]
pub fn to_u8(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Convert a `C×H×W` float image in `[-1, 1]` to an 8-bit RGB image (gray is replicated).
pub fn chw_to_image(data: &[f32], channels: usize, h: usize, w: usize) -> RgbImage {
    let plane = h * w;
    assert_eq!(data.len(), channels * plane, "chw_to_image: size mismatch");
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        if channels == 1 {
            let v = to_u8(data[i]);
            Rgb([v, v, v])
        } else {
            Rgb([
                to_u8(data[i]),
                to_u8(data[plane + i]),
                to_u8(data[2 * plane + i]),
            ])
        }
    })
}

/// Lay out tiles (all the same size) as a grid: `rows[r][c]`, scaled by an integer `scale`
/// with nearest-neighbour, `pad` pixels of dark gray between tiles.
pub fn grid(rows: &[Vec<RgbImage>], scale: u32, pad: u32) -> Result<RgbImage> {
    let Some(first) = rows.iter().flat_map(|r| r.first()).next() else {
        bail!("grid: nothing to draw");
    };
    let (tw, th) = (first.width() * scale, first.height() * scale);
    let ncols = rows.iter().map(|r| r.len()).max().unwrap_or(0) as u32;
    let nrows = rows.len() as u32;
    let mut out = RgbImage::from_pixel(
        ncols * (tw + pad) + pad,
        nrows * (th + pad) + pad,
        Rgb([40, 40, 40]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let scaled = if scale == 1 {
                tile.clone()
            } else {
                image::imageops::resize(tile, tw, th, FilterType::Nearest)
            };
            out.copy_from(
                &scaled,
                pad + c as u32 * (tw + pad),
                pad + r as u32 * (th + pad),
            )?;
        }
    }
    Ok(out)
}

/// A sensible integer upscale so that small tiles (28×28) are visible in a grid.
pub fn default_scale(h: usize) -> u32 {
    (112 / h.max(1)).clamp(1, 4) as u32
}

/// One RGB tile per image of a batch.
pub fn batch_tiles(b: &crate::tensor::ImageBatch) -> Vec<RgbImage> {
    let [n, c, h, w] = b.shape;
    (0..n).map(|i| chw_to_image(b.image(i), c, h, w)).collect()
}

/// The projection grid: one row per image, columns `x, f(x), f²(x), ...`.
pub fn projection_grid(
    input: &crate::tensor::ImageBatch,
    steps: &[crate::tensor::ImageBatch],
) -> Result<RgbImage> {
    let cols: Vec<Vec<RgbImage>> = std::iter::once(input)
        .chain(steps.iter())
        .map(batch_tiles)
        .collect();
    let rows: Vec<Vec<RgbImage>> = (0..input.len())
        .map(|r| cols.iter().map(|c| c[r].clone()).collect())
        .collect();
    grid(&rows, default_scale(input.shape[2]), 2)
}

/// A grayscale PNG that declares `w`×`h` pixels but holds only a little zlib data: what a
/// decompression bomb looks like to a decoder. For tests of the decoders' limits (the web pad,
/// the fuzz harness); a decoder that allocates from the header alone fails on it.
///
/// ```
/// let png = ign_core::imaging::png_declaring(30_000, 30_000);
/// assert!(png.len() < 200);
/// assert!(ign_core::imaging::decode_image(&png, None, ign_core::limits::frame_limits()).is_err());
/// ```
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    use std::io::Write;
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&[0u8; 4096]).expect("writing to memory");
    chunk(&mut png, b"IDAT", &z.finish().expect("writing to memory"));
    chunk(&mut png, b"IEND", b"");
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_keeps_center_of_wide_image() {
        // left third black, middle white, right third black: the square crop is the middle
        let img = image::GrayImage::from_fn(30, 10, |x, _| {
            if (10..20).contains(&x) {
                image::Luma([255])
            } else {
                image::Luma([0])
            }
        });
        let chw = image_to_chw(&DynamicImage::ImageLuma8(img), 1, 10, 10);
        assert!(chw.iter().all(|&v| v == 1.0), "{chw:?}");
    }

    #[test]
    fn roundtrip_is_exact_at_native_size() {
        let img = image::RgbImage::from_fn(8, 8, |x, y| Rgb([x as u8 * 30, y as u8 * 30, 7]));
        let chw = image_to_chw(&DynamicImage::ImageRgb8(img.clone()), 3, 8, 8);
        assert_eq!(chw_to_image(&chw, 3, 8, 8), img);
    }

    #[test]
    fn grid_places_tiles() {
        let a = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(2, 2, Rgb([0, 0, 255]));
        let g = grid(&[vec![a, b]], 1, 1).unwrap();
        assert_eq!((g.width(), g.height()), (7, 4));
        assert_eq!(g.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(g.get_pixel(4, 1), &Rgb([0, 0, 255]));
        assert_eq!(g.get_pixel(3, 1), &Rgb([40, 40, 40]));
    }
}
