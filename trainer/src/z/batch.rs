//! The `z` batch of a training step: noise, corrupted training images (`--z-mix`) and printed
//! digits (`--z-printed`), with the restoration targets of the digits; a pure function of
//! (seed, step).

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;

use crate::data::{mix, Dataset};
use crate::z::corrupt::Corruption;
use crate::z::fonts::Face;
use crate::z::noise::Noise;

/// Where a run's `z` come from.
pub struct ZSource {
    /// The noise, and its seed.
    pub noise: Noise,
    pub seed: u64,
    /// Fractions of each batch made of corrupted training images and of printed digits.
    pub z_mix: f64,
    pub z_printed: f64,
    /// The faces of the printed digits (needed when `z_printed` > 0).
    pub fonts: Vec<Face>,
    /// With printed digits restored (`--restore-printed`): the restoration candidates of each
    /// class, indices of training images ([`by_class`], or [`typical_ink`] of it).
    pub candidates: Option<Vec<Vec<usize>>>,
}

impl ZSource {
    /// The `z` batch of `step` (`n` of them) and the restoration targets of its digits: the
    /// corrupted images as they were before corruption and, with candidates, the nearest
    /// candidate of each printed digit's class ([`ZSource::nearest_of_class`]; `[k, C, H, W]`,
    /// in the order of z from [`ZSource::noise_count`] on; `None` when z has no digits).
    ///
    /// Noise comes first; then corrupted training images (others than the step's
    /// reconstruction batch, drawn at random), then printed digits (random digit and face).
    pub fn batch(&self, train: &Dataset, step: u64, n: usize) -> Result<(Tensor, Option<Tensor>)> {
        let seed = self.seed;
        let (corrupted, printed) = self.counts(n);
        if corrupted + printed == 0 {
            let z = self.noise.sample(n, mix(seed, step, 0x2), &Device::Cpu)?;
            return Ok((z, None));
        }
        let (c, h, w) = (train.channels, train.height, train.width);
        let mut z = self
            .noise
            .sample_vec(n - corrupted - printed, mix(seed, step, 0x2));
        let mut targets = Vec::with_capacity((corrupted + printed) * c * h * w);
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, step, 0xc0de));
        for _ in 0..corrupted {
            let i = rand::Rng::random_range(&mut rng, 0..train.len());
            let mut img = train.image(i).to_vec();
            targets.extend_from_slice(&img);
            Corruption::random(&mut img, (c, h, w), &mut rng);
            z.extend(img);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, step, 0xf0e7));
        for _ in 0..printed {
            let font = &self.fonts[rand::Rng::random_range(&mut rng, 0..self.fonts.len())].font;
            let digit = rand::Rng::random_range(&mut rng, 0..10u8);
            let img = crate::z::glyphs::render_digit(font, digit, h, &mut rng)?;
            if self.candidates.is_some() {
                let near = self.nearest_of_class(train, &img, digit)?;
                targets.extend_from_slice(train.image(near));
            }
            z.extend(img);
        }
        let k = targets.len() / (c * h * w);
        let targets = (k > 0)
            .then(|| Tensor::from_vec(targets, (k, c, h, w), &Device::Cpu))
            .transpose()?;
        Ok((Tensor::from_vec(z, (n, c, h, w), &Device::Cpu)?, targets))
    }

    /// The restoration candidate of class `class` nearest to `img` in L1 (the restoration
    /// target of a printed digit); an error when the class has none.
    pub fn nearest_of_class(&self, train: &Dataset, img: &[f32], class: u8) -> Result<usize> {
        let l1 = |i: usize| -> f32 {
            let t = train.image(i);
            t.iter().zip(img).map(|(a, b)| (a - b).abs()).sum()
        };
        self.candidates
            .as_ref()
            .and_then(|c| c.get(class as usize))
            .and_then(|ids| {
                ids.iter()
                    .map(|&i| (l1(i), i))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
            })
            .map(|(_, i)| i)
            .with_context(|| format!("--restore-printed: no training image of class {class}"))
    }

    /// How many of `n` z are corrupted training images and how many printed digits (the rest,
    /// first in the batch, are noise).
    pub fn counts(&self, n: usize) -> (usize, usize) {
        let count = |f: f64| ((f.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
        let corrupted = count(self.z_mix);
        (corrupted, count(self.z_printed).min(n - corrupted))
    }

    /// How many of `n` z are noise (they come first in [`ZSource::batch`]).
    pub fn noise_count(&self, n: usize) -> usize {
        let (c, p) = self.counts(n);
        n - c - p
    }
}

/// The indices of each class's training images (0 to 9 at least, for printed digits).
pub fn by_class(train: &Dataset) -> Result<Vec<Vec<usize>>> {
    let labels = train
        .labels
        .as_ref()
        .context("the data has no labels (IDX labels or one folder per class)")?;
    let classes = (labels.iter().copied().max().unwrap_or(0) as usize + 1).max(10);
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    Ok(by_class)
}

/// Of each class's images, those with the middle half of its ink amounts (the sum of their
/// pixels): the restoration targets of `--restore-match typical`. A class with any image
/// keeps at least one.
pub fn typical_ink(train: &Dataset, by_class: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    let ink: Vec<f32> = (0..train.len())
        .map(|i| train.image(i).iter().sum())
        .collect();
    by_class
        .into_iter()
        .map(|mut ids| {
            ids.sort_by(|&a, &b| ink[a].total_cmp(&ink[b]).then(a.cmp(&b)));
            let n = ids.len();
            ids[n / 4..n - n / 4].to_vec()
        })
        .collect()
}
