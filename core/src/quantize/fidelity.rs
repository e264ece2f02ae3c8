//! How close a quantized model stays to its fp32 original: PSNR of `f` and `f∘f`, the largest
//! error, the idempotence gap, file size and batch-1 latency, measured in the same run.

use anyhow::Result;
use serde::Serialize;
use std::time::Instant;

use crate::backend::Backend;
use crate::stats::quantile;
use crate::tensor::ImageBatch;

/// PSNR in dB of `b` against `a`, both on the model's `[-1, 1]` scale (peak-to-peak 2).
///
/// ```
/// use ign_core::quantize::fidelity::psnr;
/// assert!(psnr(&[0.0, 1.0], &[0.0, 1.0]).is_infinite());
/// let p = psnr(&[0.0; 4], &[0.02; 4]); // MSE 4e-4 → 10·log10(4 / 4e-4) = 40 dB
/// assert!((p - 40.0).abs() < 1e-6);
/// ```
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    10.0 * (4.0 / mse).log10()
}

/// Agreement on one set of inputs.
#[derive(Clone, Debug, Serialize)]
pub struct SetFidelity {
    pub images: usize,
    /// PSNR of the variant's `f(x)` against fp32's.
    pub psnr_f_db: f64,
    /// PSNR of the variant's `f(f(x))` (the variant applied twice) against fp32's.
    pub psnr_ff_db: f64,
    pub max_abs_f: f64,
    pub max_abs_ff: f64,
    /// `mean|f(f(x)) − f(x)|` of the variant and of fp32.
    pub idem_gap: f64,
    pub idem_gap_fp32: f64,
}

/// `f` and `f∘f` of both models on `x`, compared.
pub fn compare_on(
    reference: &mut dyn Backend,
    variant: &mut dyn Backend,
    x: &ImageBatch,
) -> Result<SetFidelity> {
    let r = reference.project(x, 2)?;
    let v = variant.project(x, 2)?;
    let gap = |s: &[ImageBatch]| s[0].mean_abs_diff(&s[1]);
    Ok(SetFidelity {
        images: x.len(),
        psnr_f_db: psnr(&r[0].data, &v[0].data),
        psnr_ff_db: psnr(&r[1].data, &v[1].data),
        max_abs_f: r[0].max_abs_diff(&v[0]) as f64,
        max_abs_ff: r[1].max_abs_diff(&v[1]) as f64,
        idem_gap: gap(&v),
        idem_gap_fp32: gap(&r),
    })
}

fn timed(
    backend: &mut dyn Backend,
    x: &ImageBatch,
    runs: usize,
    times: &mut Vec<f64>,
) -> Result<()> {
    for _ in 0..runs {
        let t0 = Instant::now();
        backend.run(x)?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(())
}

/// Batch-1 latency medians (µs) of two backends, `runs` each, measured in alternating blocks
/// so that both see the same machine load.
pub fn latency_pair(
    a: &mut dyn Backend,
    b: &mut dyn Backend,
    x: &ImageBatch,
    runs: usize,
) -> Result<(f64, f64)> {
    let one = x.slice(0, 1);
    for _ in 0..10 {
        a.run(&one)?;
        b.run(&one)?;
    }
    let block = 25;
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    while ta.len() < runs {
        timed(a, &one, block, &mut ta)?;
        timed(b, &one, block, &mut tb)?;
    }
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    Ok((quantile(&ta, 0.5), quantile(&tb, 0.5)))
}
