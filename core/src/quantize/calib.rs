//! Calibration: the images that set the int8 ranges, the held-out images that judge them, and
//! the statistics of every tensor that gets quantized.
//!
//! The default set mixes real images with noise and `f(noise)`: at `k ≥ 2` the model sees its
//! own outputs, and at `k = 1` in the live loop it sees anything a camera gives it.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::backend::{cpu::CpuBackend, Backend};
use crate::inputs;
use crate::model::Model;
use crate::tensor::ImageBatch;

/// Images used to fit the ranges, and held-out images to judge them (never used for fitting).
pub struct CalibSet {
    /// Real images + noise + f(noise).
    pub fit: ImageBatch,
    /// How many of `fit` are real images (the first ones); the rest is noise, then as many
    /// f(noise).
    pub fit_real: usize,
    /// Held-out real images (absent when the data is only noise).
    pub held_real: Option<ImageBatch>,
    /// Held-out noise (its own seed).
    pub held_noise: ImageBatch,
    /// What the set holds, for reports.
    pub description: String,
}

/// How many images of each kind the calibration uses.
#[derive(Clone, Copy, Debug)]
pub struct CalibSizes {
    /// Real images used for fitting (at most).
    pub real: usize,
    /// Noise images for fitting; as many f(noise) are added.
    pub noise: usize,
    /// Held-out real images and held-out noise images.
    pub held: usize,
}

impl Default for CalibSizes {
    fn default() -> Self {
        CalibSizes {
            real: 256,
            noise: 128,
            held: 64,
        }
    }
}

/// Build the calibration set from `spec` (an IDX file, an image folder or file, a `.npy`, or
/// `noise:<N>[:<seed>]`; `None`: noise only).
pub fn build(model: &Model, spec: Option<&str>, sizes: CalibSizes) -> Result<CalibSet> {
    let info = &model.info;
    let mut f32_backend = CpuBackend::new(model, None)?;
    let (real, noise_fit, noise_seed, what) = match spec {
        None => (None, sizes.noise, 1, "noise (no --calib given)".to_string()),
        Some(s) => {
            match inputs::parse_noise_spec(s)? {
                Some((n, seed)) => (None, n, seed, format!("noise:{n}:{seed}")),
                None => {
                    let all = inputs::load_inputs(&[s.to_string()], info)
                        .with_context(|| format!("calibration data {s}"))?
                        .batch;
                    if all.len() < 2 {
                        bail!("{s}: calibration needs at least 2 images (some are held out), found {}", all.len());
                    }
                    // Hold out the last images, fit on the ones before.
                    let held = sizes.held.min(all.len() / 5).max(1);
                    let fit_n = (all.len() - held).min(sizes.real);
                    let fit = all.slice(0, fit_n);
                    let held_real = all.slice(all.len() - held, all.len());
                    (Some((fit, held_real)), sizes.noise, 1, s.to_string())
                }
            }
        }
    };
    let z = inputs::noise_batch(info, noise_fit, noise_seed);
    let fz = f32_backend.run(&z)?;
    let mut parts = Vec::new();
    let mut held_real = None;
    let mut description = String::new();
    let fit_real = real.as_ref().map_or(0, |(fit, _)| fit.len());
    if let Some((fit, held)) = real {
        description.push_str(&format!(
            "{} real images of {what} (+{} held out), ",
            fit.len(),
            held.len()
        ));
        parts.push(fit);
        held_real = Some(held);
    }
    description.push_str(&format!("{} noise + {} f(noise)", z.len(), fz.len()));
    if spec.is_none() {
        description.push_str(" (no --calib: pass real images for better ranges)");
    }
    parts.push(z);
    parts.push(fz);
    Ok(CalibSet {
        fit: ImageBatch::concat(&parts)?,
        fit_real,
        held_real,
        held_noise: inputs::noise_batch(info, sizes.held, noise_seed.wrapping_add(1_000_003)),
        description,
    })
}

/// The float graph with `tensors` as its outputs, planned by tract for batches of `batch`.
fn plan_with_outputs(
    model: &pb::ModelProto,
    tensors: &[String],
    shape: [usize; 4],
) -> Result<Arc<TypedRunnableModel>> {
    let mut proto = model.clone();
    let graph = proto.graph.as_mut().context("model has no graph")?;
    let mut w = crate::model::writer::OnnxWriter::new("outputs");
    for t in tensors {
        w.output_f32_any_shape(t);
    }
    graph.output = w.into_model().graph.context("graph")?.output;
    tract_onnx::onnx()
        .model_for_proto_model(&proto)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()
}

/// The shape of each of `tensors` for the first image of `x` (at batch 1, or at the model's
/// `fixed_batch`).
pub fn shapes(
    model: &pb::ModelProto,
    tensors: &[String],
    x: &ImageBatch,
    fixed_batch: Option<usize>,
) -> Result<super::dense::Shapes> {
    let n = fixed_batch.unwrap_or(1);
    let one = ImageBatch::new(
        x.image(0).repeat(n),
        [n, x.shape[1], x.shape[2], x.shape[3]],
    )?;
    let plan = plan_with_outputs(model, tensors, one.shape)?;
    let out = plan.run(tvec!(Tensor::from_shape(&one.shape, &one.data)?.into()))?;
    Ok(tensors
        .iter()
        .cloned()
        .zip(out.iter().map(|t| t.shape().to_vec()))
        .collect())
}

/// Every value that each of `tensors` takes over `batch` (run in chunks), sorted ascending.
///
/// The float graph is run by tract with the tensors made graph outputs; `fixed_batch` is the
/// model's batch size when its graph fixes it (chunks are then that size).
pub fn observe(
    model: &pb::ModelProto,
    tensors: &[String],
    batch: &ImageBatch,
    fixed_batch: Option<usize>,
) -> Result<Vec<Vec<f32>>> {
    let chunk = fixed_batch.unwrap_or(64.min(batch.len()).max(1));
    let [_, c, h, wd] = batch.shape;
    let plan = plan_with_outputs(model, tensors, [chunk, c, h, wd])?;
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); tensors.len()];
    let mut start = 0;
    while start < batch.len() {
        let end = (start + chunk).min(batch.len());
        let mut part = batch.slice(start, end);
        if part.len() < chunk {
            // Pad the last chunk by repeating its first image; the copies are not counted.
            let pad = part.image(0).to_vec();
            let real_n = part.len();
            let mut data = part.data.clone();
            for _ in real_n..chunk {
                data.extend_from_slice(&pad);
            }
            part = ImageBatch::new(data, [chunk, c, h, wd])?;
            let out = plan.run(tvec!(Tensor::from_shape(&part.shape, &part.data)?.into()))?;
            for (v, t) in values.iter_mut().zip(out.iter()) {
                let s = t.to_plain_array_view::<f32>()?;
                let s = s.as_slice().context("non-contiguous output")?;
                v.extend_from_slice(&s[..s.len() / chunk * real_n]);
            }
        } else {
            let out = plan.run(tvec!(Tensor::from_shape(&part.shape, &part.data)?.into()))?;
            for (v, t) in values.iter_mut().zip(out.iter()) {
                let s = t.to_plain_array_view::<f32>()?;
                v.extend(s.iter().copied());
            }
        }
        start = end;
    }
    for v in values.iter_mut() {
        v.sort_unstable_by(f32::total_cmp);
    }
    Ok(values)
}

/// How an activation's range is taken from its calibration values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "percent")]
pub enum RangeMethod {
    /// Smallest to largest value seen.
    MinMax,
    /// The given percentile at the top (and its mirror at the bottom): clips rare outliers
    /// to give the common values finer steps.
    Percentile(f32),
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeMethod::MinMax => f.write_str("minmax"),
            RangeMethod::Percentile(p) => write!(f, "percentile {p}"),
        }
    }
}

impl RangeMethod {
    /// The range of sorted `values`, widened to hold 0 (so that 0 is exact in int8).
    pub fn range(&self, sorted: &[f32]) -> (f32, f32) {
        if sorted.is_empty() {
            return (0.0, 0.0);
        }
        let (lo, hi) = match *self {
            RangeMethod::MinMax => (sorted[0], sorted[sorted.len() - 1]),
            RangeMethod::Percentile(p) => {
                let q = (p as f64 / 100.0).clamp(0.5, 1.0);
                let top = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
                let bottom = (sorted.len() - 1) - top;
                (sorted[bottom], sorted[top])
            }
        };
        (lo.min(0.0), hi.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_clips_outliers_and_keeps_zero() {
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        v.push(50.0);
        v.sort_unstable_by(f32::total_cmp);
        assert_eq!(RangeMethod::MinMax.range(&v), (0.0, 50.0));
        let (lo, hi) = RangeMethod::Percentile(99.9).range(&v);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.99 && hi < 1.0, "{hi}");
        let neg: Vec<f32> = vec![1.0, 2.0];
        assert_eq!(RangeMethod::MinMax.range(&neg), (0.0, 2.0));
    }
}
