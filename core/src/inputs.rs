//! What `project` and `demo` feed the model: image files, folders, `.npy` arrays and noise.
//!
//! Specs: a path to a PNG/JPEG, a folder of them, a `.npy` float32 array (`N×C×H×W` or
//! `C×H×W`), an IDX images file (MNIST's `*-idx3-ubyte`, gzipped or not), or
//! `noise:<N>[:<seed>]` for N Gaussian noise images.

use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;
use tract_onnx::prelude::tract_ndarray as nd;

use crate::imaging;
use crate::model::ModelInfo;
use crate::tensor::ImageBatch;

/// A batch with a label per image (file name, `noise#3`, ...).
pub struct Inputs {
    pub batch: ImageBatch,
    pub labels: Vec<String>,
}

/// `n` images of `N(0, 1)` noise shaped for the model, from `seed`.
pub fn noise_batch(info: &ModelInfo, n: usize, seed: u64) -> ImageBatch {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let len = n * info.image_len();
    let data = (0..len).map(|_| StandardNormal.sample(&mut rng)).collect();
    ImageBatch {
        data,
        shape: [n, info.channels, info.height, info.width],
    }
}

/// Most noise images one spec makes.
pub const MAX_NOISE: usize = 10_000;

/// Parse `noise:<N>[:<seed>]`.
pub fn parse_noise_spec(spec: &str) -> Result<Option<(usize, u64)>> {
    let Some(rest) = spec.strip_prefix("noise:") else {
        return Ok(None);
    };
    let mut parts = rest.split(':');
    let n = parts
        .next()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0 && n <= MAX_NOISE)
        .ok_or_else(|| {
            anyhow!("{spec}: expected noise:<N>[:<seed>] with N from 1 to {MAX_NOISE}")
        })?;
    let seed = match parts.next() {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| anyhow!("{spec}: the seed must be a whole number"))?,
        None => 0,
    };
    if parts.next().is_some() {
        bail!("{spec}: expected noise:<N>[:<seed>]");
    }
    Ok(Some((n, seed)))
}

/// Read a float32 `.npy` of shape `N×C×H×W` (or `C×H×W`) that fits the model.
pub fn read_npy(path: &Path, info: &ModelInfo) -> Result<ImageBatch> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot open .npy file", path.display()))?
        .len();
    if len > crate::limits::MAX_ARRAY_BYTES + (1 << 16) {
        bail!(
            "{}: {len} bytes, more than this reads ({} MiB of data)",
            path.display(),
            crate::limits::MAX_ARRAY_BYTES >> 20
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot open .npy file", path.display()))?;
    parse_npy(&bytes, info).with_context(|| path.display().to_string())
}

/// A `.npy` file's bytes as a batch that fits the model (see [`read_npy`]).
pub fn parse_npy(bytes: &[u8], info: &ModelInfo) -> Result<ImageBatch> {
    let (shape, data) = crate::npy::read_f32(bytes)?;
    let want = [info.channels, info.height, info.width];
    let full = match shape.as_slice() {
        [n, c, h, w] if [*c, *h, *w] == want => [*n, *c, *h, *w],
        [c, h, w] if [*c, *h, *w] == want => [1, *c, *h, *w],
        _ => bail!(
            "array of shape {:?} does not fit the model: expected [N, {}, {}, {}] float32",
            shape,
            want[0],
            want[1],
            want[2]
        ),
    };
    ImageBatch::new(data, full)
}

/// Write a batch as a float32 `.npy` (`N×C×H×W`), atomically.
pub fn write_npy(path: &Path, batch: &ImageBatch) -> Result<()> {
    let arr = nd::Array4::from_shape_vec(batch.shape, batch.data.clone())?;
    let mut buf = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(&arr, &mut buf)
        .map_err(|e| anyhow!("{}: cannot encode .npy: {e}", path.display()))?;
    crate::fsio::atomic_write(path, &buf)
}

/// Read one image file, converted to the model's shape.
pub fn read_image(path: &Path, info: &ModelInfo) -> Result<ImageBatch> {
    let img = imaging::open_image(path)?;
    let data = imaging::image_to_chw(&img, info.channels, info.height, info.width);
    ImageBatch::new(data, [1, info.channels, info.height, info.width])
}

/// Whether `path` names an IDX file (`*-ubyte`, `*-ubyte.gz`, `*.idx`, `*.idx.gz`).
pub fn is_idx_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with("-ubyte") || name.ends_with(".idx") || name.contains("-idx3-")
}

/// Read up to `limit` images (0: all) of an IDX images file, converted to the model's shape
/// (resized when the model is not the file's size; gray repeated for an RGB model).
pub fn read_idx_images(path: &Path, info: &ModelInfo, limit: usize) -> Result<ImageBatch> {
    let arr = crate::idx::read_idx(path, crate::idx::IDX_IMAGES_MAGIC)?;
    let (n, h, w) = (arr.dims[0], arr.dims[1], arr.dims[2]);
    let n = if limit == 0 { n } else { n.min(limit) };
    if n == 0 {
        bail!("{}: the IDX file holds no image", path.display());
    }
    let floats = crate::limits::product(&[n, info.image_len()])
        .filter(|&f| f as u64 * 4 <= crate::limits::MAX_ARRAY_BYTES)
        .ok_or_else(|| {
            anyhow!(
                "{}: {n} images of {} values are more than {} MiB as floats; pass fewer",
                path.display(),
                info.image_len(),
                crate::limits::MAX_ARRAY_BYTES >> 20
            )
        })?;
    let mut data = Vec::with_capacity(floats);
    for i in 0..n {
        let px = &arr.data[i * h * w..(i + 1) * h * w];
        if (h, w, info.channels) == (info.height, info.width, 1) {
            data.extend(px.iter().map(|&v| v as f32 / 127.5 - 1.0));
        } else {
            let gray = image::GrayImage::from_raw(w as u32, h as u32, px.to_vec())
                .context("IDX image size")?;
            let img = image::DynamicImage::ImageLuma8(gray);
            data.extend(imaging::image_to_chw(
                &img,
                info.channels,
                info.height,
                info.width,
            ));
        }
    }
    ImageBatch::new(data, [n, info.channels, info.height, info.width])
}

/// Load every spec in order into one batch.
pub fn load_inputs(specs: &[String], info: &ModelInfo) -> Result<Inputs> {
    if specs.is_empty() {
        bail!(
            "no input given: pass image files, folders, .npy or IDX files, or noise:<N>[:<seed>]"
        );
    }
    let mut parts = Vec::new();
    let mut labels = Vec::new();
    for spec in specs {
        if let Some((n, seed)) = parse_noise_spec(spec)? {
            parts.push(noise_batch(info, n, seed));
            labels.extend((0..n).map(|i| format!("noise:{seed}#{i}")));
            continue;
        }
        let path = Path::new(spec);
        if !path.exists() {
            bail!(
                "{spec}: no such file or folder (inputs are images, folders, .npy files or noise:<N>[:<seed>])"
            );
        }
        if is_idx_path(path) {
            let b = read_idx_images(path, info, 0)?;
            labels.extend((0..b.len()).map(|i| format!("{spec}#{i}")));
            parts.push(b);
        } else if path.is_dir() {
            let files = imaging::list_images(path)?;
            if files.is_empty() {
                bail!("{spec}: no PNG or JPEG image in this folder");
            }
            for f in files {
                parts.push(read_image(&f, info)?);
                labels.push(f.display().to_string());
            }
        } else if path
            .extension()
            .map(|e| e.eq_ignore_ascii_case("npy"))
            .unwrap_or(false)
        {
            let b = read_npy(path, info)?;
            labels.extend((0..b.len()).map(|i| format!("{spec}#{i}")));
            parts.push(b);
        } else {
            parts.push(read_image(path, info)?);
            labels.push(spec.clone());
        }
    }
    Ok(Inputs {
        batch: ImageBatch::concat(&parts)?,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_spec() {
        assert_eq!(parse_noise_spec("noise:4").unwrap(), Some((4, 0)));
        assert_eq!(parse_noise_spec("noise:2:9").unwrap(), Some((2, 9)));
        assert_eq!(parse_noise_spec("a.png").unwrap(), None);
        assert!(parse_noise_spec("noise:0").is_err());
        assert!(parse_noise_spec("noise:x").is_err());
        assert!(parse_noise_spec("noise:1:2:3").is_err());
    }
}
