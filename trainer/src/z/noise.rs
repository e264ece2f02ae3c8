//! The noise `z` that IGN maps onto the data manifold.
//!
//! - Gaussian: `N(0, 1)` per pixel (the paper's choice for MNIST).
//! - Frequency-matched: each 2-D FFT coefficient's real and imaginary parts are drawn from the
//!   training data's per-frequency mean and standard deviation, then inverse-transformed (real
//!   part kept); the paper's choice for faces.
//!
//! Draws come from a seeded generator, so a batch of noise is a pure function of its seed.

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::num_complex::Complex32;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;

/// Which noise to feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoiseKind {
    Gaussian,
    /// Per-frequency statistics of the training data.
    Freq,
}

named_choices!(NoiseKind { Gaussian = "gaussian", Freq = "freq" });

/// A noise generator for images of one shape.
pub enum Noise {
    Gaussian {
        shape: (usize, usize, usize),
    },
    Freq {
        shape: (usize, usize, usize),
        /// Per channel and frequency: mean and std of the real and imaginary parts.
        mean: Vec<Complex32>,
        std: Vec<Complex32>,
    },
}

/// In-place 2-D FFT of an `h×w` plane (rows then columns).
fn fft2(buf: &mut [Complex32], h: usize, w: usize, inverse: bool) {
    let mut planner = FftPlanner::<f32>::new();
    let (fr, fc) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    for row in buf.chunks_mut(w) {
        fr.process(row);
    }
    let mut col = vec![Complex32::new(0.0, 0.0); h];
    for x in 0..w {
        for y in 0..h {
            col[y] = buf[y * w + x];
        }
        fc.process(&mut col);
        for y in 0..h {
            buf[y * w + x] = col[y];
        }
    }
    if inverse {
        let s = 1.0 / (h * w) as f32;
        for v in buf.iter_mut() {
            *v *= s;
        }
    }
}

impl Noise {
    /// Build a generator of `kind` for the images of `data` (frequency statistics are taken on
    /// at most 2,000 of its images).
    pub fn new(kind: NoiseKind, data: &Dataset) -> Self {
        let shape = (data.channels, data.height, data.width);
        match kind {
            NoiseKind::Gaussian => Noise::Gaussian { shape },
            NoiseKind::Freq => {
                let (c, h, w) = shape;
                let plane = h * w;
                let n = data.len().min(2000);
                let mut sum = vec![Complex32::new(0.0, 0.0); c * plane];
                let mut sq = vec![Complex32::new(0.0, 0.0); c * plane];
                let mut buf = vec![Complex32::new(0.0, 0.0); plane];
                for i in 0..n {
                    let img = data.image(i);
                    for ch in 0..c {
                        for (b, v) in buf.iter_mut().zip(&img[ch * plane..(ch + 1) * plane]) {
                            *b = Complex32::new(*v, 0.0);
                        }
                        fft2(&mut buf, h, w, false);
                        for (k, v) in buf.iter().enumerate() {
                            sum[ch * plane + k] += v;
                            sq[ch * plane + k] += Complex32::new(v.re * v.re, v.im * v.im);
                        }
                    }
                }
                let nf = n.max(1) as f32;
                let mean: Vec<Complex32> = sum.iter().map(|s| s / nf).collect();
                let std = sq
                    .iter()
                    .zip(&mean)
                    .map(|(s, m)| {
                        Complex32::new(
                            (s.re / nf - m.re * m.re).max(0.0).sqrt(),
                            (s.im / nf - m.im * m.im).max(0.0).sqrt(),
                        )
                    })
                    .collect();
                Noise::Freq { shape, mean, std }
            }
        }
    }

    /// `n` noise images as a flat `n×C×H×W` vector, from `seed`.
    pub fn sample_vec(&self, n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        match self {
            Noise::Gaussian { shape: (c, h, w) } => (0..n * c * h * w)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect(),
            Noise::Freq {
                shape: (c, h, w),
                mean,
                std,
            } => {
                let plane = h * w;
                let mut out = Vec::with_capacity(n * c * plane);
                let mut buf = vec![Complex32::new(0.0, 0.0); plane];
                for _ in 0..n {
                    for ch in 0..*c {
                        for (k, b) in buf.iter_mut().enumerate() {
                            let (m, s) = (mean[ch * plane + k], std[ch * plane + k]);
                            let er: f32 = StandardNormal.sample(&mut rng);
                            let ei: f32 = StandardNormal.sample(&mut rng);
                            *b = Complex32::new(m.re + s.re * er, m.im + s.im * ei);
                        }
                        fft2(&mut buf, *h, *w, true);
                        out.extend(buf.iter().map(|v| v.re));
                    }
                }
                out
            }
        }
    }

    /// `n` noise images as a `[n, C, H, W]` tensor, from `seed`.
    pub fn sample(&self, n: usize, seed: u64, dev: &Device) -> Result<Tensor> {
        let (c, h, w) = match self {
            Noise::Gaussian { shape } | Noise::Freq { shape, .. } => *shape,
        };
        Ok(Tensor::from_vec(
            self.sample_vec(n, seed),
            (n, c, h, w),
            dev,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_roundtrip() {
        let orig: Vec<Complex32> = (0..12).map(|i| Complex32::new(i as f32, 0.0)).collect();
        let mut b = orig.clone();
        fft2(&mut b, 3, 4, false);
        // DC term is the sum
        assert!((b[0].re - 66.0).abs() < 1e-4);
        fft2(&mut b, 3, 4, true);
        for (a, b) in orig.iter().zip(&b) {
            assert!((a - b).norm() < 1e-4);
        }
    }

    #[test]
    fn freq_noise_matches_data_mean_and_gaussian_is_seeded() {
        // data: all images are the same ramp, so freq noise has zero std and equals the ramp
        let img: Vec<f32> = (0..16).map(|i| i as f32 / 16.0 - 0.5).collect();
        let data = Dataset {
            images: [img.clone(), img.clone()].concat(),
            labels: None,
            channels: 1,
            height: 4,
            width: 4,
        };
        let n = Noise::new(NoiseKind::Freq, &data);
        let s = n.sample_vec(1, 7);
        for (a, b) in s.iter().zip(&img) {
            assert!((a - b).abs() < 1e-4, "{s:?}");
        }
        let g = Noise::new(NoiseKind::Gaussian, &data);
        assert_eq!(g.sample_vec(2, 9), g.sample_vec(2, 9));
        assert_ne!(g.sample_vec(2, 9), g.sample_vec(2, 10));
    }
}
