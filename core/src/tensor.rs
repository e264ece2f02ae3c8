//! The batch of images that flows between sources, backends and sinks.

use anyhow::{bail, Result};

/// `N×C×H×W` float32 images in `[-1, 1]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    pub data: Vec<f32>,
    /// `[N, C, H, W]`
    pub shape: [usize; 4],
}

impl ImageBatch {
    /// Wrap `data`, checking its length against `shape`.
    pub fn new(data: Vec<f32>, shape: [usize; 4]) -> Result<Self> {
        if data.len() != shape.iter().product::<usize>() {
            bail!(
                "{} values do not fill a batch of shape {:?}",
                data.len(),
                shape
            );
        }
        Ok(ImageBatch { data, shape })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// True when the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Floats per image.
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.data[i * n..(i + 1) * n]
    }

    /// Images `range` as a new batch.
    pub fn slice(&self, start: usize, end: usize) -> ImageBatch {
        let n = self.image_len();
        ImageBatch {
            data: self.data[start * n..end * n].to_vec(),
            shape: [end - start, self.shape[1], self.shape[2], self.shape[3]],
        }
    }

    /// Concatenate batches of the same image shape.
    pub fn concat(parts: &[ImageBatch]) -> Result<ImageBatch> {
        let Some(first) = parts.first() else {
            bail!("no images");
        };
        let mut data = Vec::new();
        let mut n = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                bail!(
                    "images of shape {:?} and {:?} cannot share a batch",
                    &first.shape[1..],
                    &p.shape[1..]
                );
            }
            data.extend_from_slice(&p.data);
            n += p.shape[0];
        }
        Ok(ImageBatch {
            data,
            shape: [n, first.shape[1], first.shape[2], first.shape[3]],
        })
    }

    /// Mean absolute difference to `other` (same shape), the idempotence gap's measure.
    pub fn mean_abs_diff(&self, other: &ImageBatch) -> f64 {
        mean_abs_diff(&self.data, &other.data)
    }

    /// Largest absolute difference to `other` (same shape).
    pub fn max_abs_diff(&self, other: &ImageBatch) -> f32 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

/// Mean absolute difference of two equally long slices (0 for empty ones).
///
/// ```
/// assert_eq!(ign_core::tensor::mean_abs_diff(&[0.0, 1.0], &[1.0, 1.0]), 0.5);
/// ```
pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len().max(1) as f64
}

/// How far each application of f moves: `mean|f^k − f^(k−1)|` for k = 1..=K over the whole
/// batch, with f^0 = `x` and `seq` = `[f(x), ..., f^K(x)]` (`ign-edge refine`).
///
/// ```
/// use ign_core::tensor::{step_distances, ImageBatch};
/// let b = |v: f32| ImageBatch::new(vec![v; 4], [1, 1, 2, 2]).unwrap();
/// assert_eq!(step_distances(&b(0.0), &[b(0.5), b(0.75)]), vec![0.5, 0.25]);
/// ```
pub fn step_distances(x: &ImageBatch, seq: &[ImageBatch]) -> Vec<f64> {
    std::iter::once(x)
        .chain(seq.iter())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[0].mean_abs_diff(w[1]))
        .collect()
}
