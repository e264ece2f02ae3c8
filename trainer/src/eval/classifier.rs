//! A small CNN classifier, trained by `ign-train eval` on the same labelled data, whose
//! penultimate features give a Fréchet distance (an FID-like score for MNIST-sized data)
//! and whose predictions give the class histogram of generated images.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Conv2d, Linear, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::{mix, Dataset};
use crate::train::optim::{Adam, AdamConfig};

/// Width of the feature vector used for the Fréchet distance.
pub const FEATURES: usize = 128;

/// Per-image feature vectors and class probabilities.
pub type FeaturesProbs = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// conv(32) → pool → conv(64) → pool → linear(128) → linear(classes).
pub struct Classifier {
    c1: Conv2d,
    c2: Conv2d,
    fc: Linear,
    head: Linear,
    pub classes: usize,
}

impl Classifier {
    pub fn new(channels: usize, size: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let c1 = candle_nn::conv2d(channels, 32, 3, cfg, vb.pp("c1"))?;
        let c2 = candle_nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?;
        let s = size / 4;
        let fc = candle_nn::linear(64 * s * s, FEATURES, vb.pp("fc"))?;
        let head = candle_nn::linear(FEATURES, classes, vb.pp("head"))?;
        Ok(Classifier {
            c1,
            c2,
            fc,
            head,
            classes,
        })
    }

    /// Penultimate features `[B, 128]` and logits `[B, classes]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        use crate::ops::fastconv::conv2d_layer;
        let h = conv2d_layer(&self.c1, x)?.relu()?.max_pool2d(2)?;
        let h = conv2d_layer(&self.c2, &h)?.relu()?.max_pool2d(2)?;
        let feat = self.fc.forward(&h.flatten_from(1)?)?.relu()?;
        let logits = self.head.forward(&feat)?;
        Ok((feat, logits))
    }

    /// Features and class probabilities for a whole set of images, in batches.
    pub fn features_probs(
        &self,
        images: &[f32],
        shape: (usize, usize, usize),
    ) -> Result<FeaturesProbs> {
        let (c, h, w) = shape;
        let n = images.len() / (c * h * w);
        let (mut feats, mut probs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for start in (0..n).step_by(256) {
            let end = (start + 256).min(n);
            let x = Tensor::from_slice(
                &images[start * c * h * w..end * c * h * w],
                (end - start, c, h, w),
                &Device::Cpu,
            )?;
            let (f, l) = self.forward(&x)?;
            feats.extend(f.to_vec2::<f32>()?);
            probs.extend(candle_nn::ops::softmax(&l, D::Minus1)?.to_vec2::<f32>()?);
        }
        Ok((feats, probs))
    }
}

/// Train a classifier on `train` (labelled) and report its accuracy on `test`.
pub fn train_classifier(
    train: &Dataset,
    test: &Dataset,
    epochs: usize,
    seed: u64,
) -> Result<(Classifier, VarMap, f64)> {
    let Some(classes) = train.num_classes() else {
        bail!("the data has no labels: the classifier-based metrics need IDX labels or class sub-folders");
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Classifier::new(train.channels, train.height, classes, vb)?;
    init_from_seed(&varmap, seed)?;
    let mut opt = Adam::new(
        varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, 0xc1a5));
    let mut order: Vec<usize> = (0..train.len()).collect();
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(128) {
            let x = train.batch(chunk, &Device::Cpu)?;
            let y: Vec<u32> = train
                .batch_labels(chunk)
                .iter()
                .map(|&l| l as u32)
                .collect();
            let y = Tensor::new(y.as_slice(), &Device::Cpu)?;
            let (_, logits) = model.forward(&x)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.step(&loss.backward()?)?;
        }
    }
    let acc = accuracy(&model, test)?;
    Ok((model, varmap, acc))
}

/// candle's initialisation of convs and linear layers, drawn from `seed` (candle draws from an
/// unseeded generator, which made every evaluation's classifier, and so its accuracy and
/// Fréchet distances, differ from run to run): weights Kaiming-normal, `N(0, 2 / fan_in)`;
/// biases uniform in `±1 / √fan_in`.
fn init_from_seed(varmap: &VarMap, seed: u64) -> Result<()> {
    use rand_distr::{Distribution, Normal, Uniform};
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, 0x1417_c1a5));
    let fan_in = |weight: &str| -> Result<f64> {
        let w = data
            .get(weight)
            .ok_or_else(|| anyhow::anyhow!("{weight}: no such variable"))?;
        Ok((w.elem_count() / w.dims()[0].max(1)).max(1) as f64)
    };
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let vals: Vec<f32> = if let Some(layer) = name.strip_suffix(".weight") {
            let d = Normal::new(0.0, (2.0 / fan_in(&format!("{layer}.weight"))?).sqrt())?;
            (0..n).map(|_| d.sample(&mut rng) as f32).collect()
        } else if let Some(layer) = name.strip_suffix(".bias") {
            let b = 1.0 / fan_in(&format!("{layer}.weight"))?.sqrt();
            let d = Uniform::new(-b, b)?;
            (0..n).map(|_| d.sample(&mut rng) as f32).collect()
        } else {
            bail!("{name}: a classifier variable of no known kind");
        };
        var.set(&Tensor::from_vec(vals, var.shape(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Top-1 accuracy on a labelled set.
pub fn accuracy(model: &Classifier, data: &Dataset) -> Result<f64> {
    let (_, probs) =
        model.features_probs(&data.images, (data.channels, data.height, data.width))?;
    let labels = data.labels.as_ref().expect("labelled");
    let correct = probs
        .iter()
        .zip(labels)
        .filter(|(p, &l)| argmax(p) == l as usize)
        .count();
    Ok(correct as f64 / labels.len().max(1) as f64)
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

/// The Fréchet distance between Gaussians fitted to two feature sets:
/// `|μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)`.
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (ma, ca) = mean_cov(a);
    let (mb, cb) = mean_cov(b);
    let diff = &ma - &mb;
    let sa = sqrtm_psd(&ca);
    let m = &sa * &cb * &sa;
    let m = (&m + m.transpose()) * 0.5;
    let tr_sqrt: f64 = significant(nalgebra::SymmetricEigen::new(m).eigenvalues)
        .iter()
        .map(|&e| e.sqrt())
        .sum();
    diff.norm_squared() + ca.trace() + cb.trace() - 2.0 * tr_sqrt
}

fn mean_cov(x: &[Vec<f32>]) -> (nalgebra::DVector<f64>, nalgebra::DMatrix<f64>) {
    let d = x.first().map(|v| v.len()).unwrap_or(0);
    let n = x.len().max(2) as f64;
    let m = nalgebra::DMatrix::from_fn(x.len(), d, |i, j| x[i][j] as f64);
    let mean = m.row_mean().transpose();
    let centered = nalgebra::DMatrix::from_fn(x.len(), d, |i, j| m[(i, j)] - mean[j]);
    let cov = centered.transpose() * &centered / (n - 1.0);
    (mean, cov)
}

fn sqrtm_psd(m: &nalgebra::DMatrix<f64>) -> nalgebra::DMatrix<f64> {
    let e = nalgebra::SymmetricEigen::new((m + m.transpose()) * 0.5);
    let s = nalgebra::DMatrix::from_diagonal(&significant(e.eigenvalues).map(f64::sqrt));
    &e.eigenvectors * s * e.eigenvectors.transpose()
}

/// The eigenvalues of a positive semi-definite matrix with those below 1e-12 of the largest
/// set to 0: with fewer images than features the covariance is singular, and its null
/// directions hold rounding noise (about 1e-16 of the largest), whose square roots would add
/// up to about 1e-7 of the trace: hundreds, for features in the thousands.
fn significant(e: nalgebra::DVector<f64>) -> nalgebra::DVector<f64> {
    let floor = e.max().max(0.0) * 1e-12;
    e.map(|v| if v > floor { v } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_of_identical_sets_is_zero_and_grows_with_shift() {
        let mut s = 1u64;
        let a: Vec<Vec<f32>> = (0..400)
            .map(|_| {
                (0..4)
                    .map(|_| {
                        s = mix(s, 1, 2);
                        (s >> 40) as f32 / (1u64 << 24) as f32
                    })
                    .collect()
            })
            .collect();
        assert!(frechet_distance(&a, &a).abs() < 1e-6);
        let b: Vec<Vec<f32>> = a
            .iter()
            .map(|v| v.iter().map(|x| x + 1.0).collect())
            .collect();
        // a pure shift by 1 in 4 dimensions: distance 4
        assert!((frechet_distance(&a, &b) - 4.0).abs() < 1e-6);
    }

    /// As `eval --ood` meets it: 30 images in the classifier's 128 features (a covariance of
    /// rank 29), with activations in the thousands. The directions the few images do not span
    /// hold only rounding noise, which a square root would blow up (the distance of a set to
    /// itself came out in the hundreds once and failed a test).
    #[test]
    fn frechet_of_a_few_large_features_to_themselves_is_zero() {
        let mut s = 7u64;
        let a: Vec<Vec<f32>> = (0..30)
            .map(|_| {
                (0..FEATURES)
                    .map(|j| {
                        s = mix(s, 3, 4);
                        // sparse-ish ReLU features of very different scales
                        let v = (s >> 40) as f32 / (1u64 << 24) as f32;
                        if v < 0.5 {
                            0.0
                        } else {
                            v * 1e4 * (1 + j % 7) as f32
                        }
                    })
                    .collect()
            })
            .collect();
        let (_, cov) = mean_cov(&a);
        let fd = frechet_distance(&a, &a);
        assert!(
            fd.abs() < 1e-10 * cov.trace(),
            "distance {fd} of a set to itself (trace {})",
            cov.trace()
        );
        let b: Vec<Vec<f32>> = a
            .iter()
            .map(|v| v.iter().map(|x| x * 1.1).collect())
            .collect();
        assert!(frechet_distance(&a, &b) > 1e-3 * cov.trace());
    }

    /// The same data and seed give the same classifier, to the bit: evaluations repeat.
    #[test]
    fn a_seeded_classifier_trains_the_same_twice() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mnist-300-images-idx3-ubyte.gz");
        let split = crate::data::load(&data, &Default::default()).unwrap();
        let run = |seed| {
            let (clf, _, acc) = train_classifier(&split.train, &split.test, 2, seed).unwrap();
            let t = &split.test;
            let (feats, _) = clf
                .features_probs(&t.images, (t.channels, t.height, t.width))
                .unwrap();
            (acc, feats)
        };
        let (a, b, c) = (run(3), run(3), run(4));
        assert!(
            a == b,
            "the same seed gave another classifier (test accuracy {} and {})",
            a.0,
            b.0
        );
        assert!(a.1 != c.1, "another seed, another classifier");
    }
}
