//! Caps on what a file, a stream or a request may declare, checked before anything is
//! allocated: every size read from outside goes through checked arithmetic and is compared
//! with the bytes really there and with one of these caps. A file that declares more gets a
//! one-line error naming it, never an allocation abort.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, Read};
use std::path::Path;

/// Widest or tallest image file decoded (photos from phones are ~8000 pixels wide).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most memory an image decoder may allocate for one file.
pub const MAX_IMAGE_ALLOC: u64 = 1 << 30;
/// Largest data an IDX or `.npy` file may declare (MNIST's training set is 47 MB).
pub const MAX_ARRAY_BYTES: u64 = 1 << 30;
/// Most external weight data read in for one model (`model.onnx.data`; the paper's 64×64
/// network is 56 MB).
pub const MAX_EXTERNAL_DATA: u64 = 4 << 30;
/// Widest or tallest model input (the paper's models are 28 to 64 pixels).
pub const MAX_MODEL_SIDE: usize = 4096;
/// Widest or tallest video frame (8K is 7680×4320).
pub const MAX_VIDEO_SIDE: usize = 8192;
/// Longest header line of a text stream (y4m) or small text file (TOML settings).
pub const MAX_LINE: u64 = 4096;
/// Largest settings file (board.toml, config.toml, bench baselines).
pub const MAX_TEXT_FILE: u64 = 4 << 20;

/// The product of `dims`, or `None` when it overflows `usize`.
///
/// ```
/// use ign_core::limits::product;
/// assert_eq!(product(&[10, 28, 28]), Some(7840));
/// assert_eq!(product(&[usize::MAX, 2]), None);
/// ```
pub fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Decoder limits for image files: [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_ALLOC`].
pub fn image_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(MAX_IMAGE_ALLOC);
    l
}

/// Decoder limits for pictures from a camera (MJPEG frames) or a client: 4096×4096, 64 MiB.
pub fn frame_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(4096);
    l.max_image_height = Some(4096);
    l.max_alloc = Some(64 << 20);
    l
}

/// Read a small text file (settings), refusing one over [`MAX_TEXT_FILE`] bytes.
pub fn read_text_file(path: &Path) -> Result<String> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut text = String::new();
    f.take(MAX_TEXT_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: cannot read (not UTF-8 text?)", path.display()))?;
    if text.len() as u64 > MAX_TEXT_FILE {
        bail!(
            "{}: larger than {} MiB, not a settings file",
            path.display(),
            MAX_TEXT_FILE >> 20
        );
    }
    Ok(text)
}

/// Read one line (up to and including `\n`) of at most `max` bytes.
pub fn read_line(r: &mut impl BufRead, max: u64) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.take(max).read_until(b'\n', &mut line)?;
    Ok(line)
}
