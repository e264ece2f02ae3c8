//! BatchNorm in training form (batch statistics) + per-channel affine + activation as one
//! candle op with its own backward pass: the block that trains the shipped models.
//!
//! candle's `BatchNorm::forward_train` followed by the activation is ~10 tensor passes forward
//! (transpose, copy, mean, centre, square, mean, divide, scale, shift, activation) and about twice
//! that backward, each allocating and most single-threaded; an IGN step runs it four times per
//! layer. Here forward is two passes (statistics per channel, then the output per sample) and
//! backward two (sums per channel, then the input gradient per sample), spread across threads.
//!
//! Statistics per channel over `(N, H, W)` (`M = N·H·W` values): `x̂ = (x − μ_c)/σ_c`,
//! `z = x̂·w_c + b_c`, `y = act(z)`. Backward from `dy`: `dz = dy·act'(z)` (read from `y`),
//! `dw_c = Σ dz·x̂`, `db_c = Σ dz`, `dx = w_c/σ_c · (dz − db_c/M − x̂·dw_c/M)`.
//!
//! The op also hands back each channel's batch mean and (biased) variance, from which the caller
//! updates the running statistics as `candle_nn::BatchNorm` does (see [`batch_norm_act`]).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

use crate::ops::contiguous;
use crate::ops::fused::{norm_backward, sum_by, Elem, NormActivation, LANES};

/// One batch's statistics of each channel, as the forward pass measured them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    /// Mean of each channel over `(N, H, W)`.
    pub mean: Vec<f64>,
    /// Biased variance (divided by `count`) of each channel.
    pub var: Vec<f64>,
    /// Values per channel, `N·H·W`.
    pub count: usize,
}

struct BatchNormAct {
    act: NormActivation,
    eps: f64,
    /// `(mean, variance)` per channel, written by the forward pass, read by the backward pass
    /// and by the caller.
    stats: Arc<Mutex<BatchStats>>,
}

fn slope_of<T: Elem>(act: NormActivation) -> T {
    match act {
        NormActivation::Leaky(s) => T::from(s).unwrap(),
        // the identity is a leaky ReLU of slope 1
        NormActivation::Identity => T::one(),
    }
}

/// The values of channel `ch` of every sample: `batch` slices of `hw`.
fn channel<T>(x: &[T], c: usize, hw: usize, ch: usize) -> impl Iterator<Item = &[T]> {
    x.chunks_exact(c * hw)
        .map(move |s| &s[ch * hw..(ch + 1) * hw])
}

/// Mean and biased variance of each channel (two passes over the data: no cancellation).
fn channel_stats<T: Elem>(x: &[T], c: usize, hw: usize) -> Vec<(T, T)> {
    let count = T::from(x.len() / c).unwrap();
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = channel(x, c, hw, ch)
                .map(|s| sum_by(s, |v| v))
                .fold(T::zero(), |a, v| a + v)
                / count;
            let var = channel(x, c, hw, ch)
                .map(|s| sum_by(s, |v| (v - mean) * (v - mean)))
                .fold(T::zero(), |a, v| a + v)
                / count;
            (mean, var)
        })
        .collect()
}

/// `y` and the statistics `(mean, variance)` of each channel, for `x` of `c` channels of `hw`
/// values per sample.
fn forward<T: Elem>(
    x: &[T],
    w: &[T],
    b: &[T],
    (c, hw): (usize, usize),
    eps: f64,
    act: NormActivation,
) -> (Vec<T>, Vec<(T, T)>) {
    let stats = channel_stats(x, c, hw);
    let slope: T = slope_of(act);
    let eps = T::from(eps).unwrap();
    // y = x·scale_c + shift_c, then the activation
    let (scale, shift): (Vec<T>, Vec<T>) = stats
        .iter()
        .zip(w.iter().zip(b))
        .map(|(&(mean, var), (&wc, &bc))| {
            let s = wc / (var + eps).sqrt();
            (s, bc - mean * s)
        })
        .unzip();
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .for_each(|(ys, xs)| {
            for ch in 0..c {
                let r = ch * hw..(ch + 1) * hw;
                let (sc, sh) = (scale[ch], shift[ch]);
                for (yv, &xv) in ys[r.clone()].iter_mut().zip(&xs[r]) {
                    // max(z, slope·z) is the leaky ReLU for 0 ≤ slope ≤ 1, without a branch
                    let z = xv * sc + sh;
                    *yv = num_traits::Float::max(z, z * slope);
                }
            }
        });
    (y, stats)
}

/// `dz` of one value from the output `y` and `dy` (LeakyReLU and ReLU keep the sign).
#[inline]
fn dz_of<T: Elem>(y: T, dy: T, slope: T) -> T {
    // both sides computed, one selected: no branch on the sign
    let leak = dy * slope;
    if y > T::zero() {
        dy
    } else {
        leak
    }
}

/// `(Σ dz·x̂, Σ dz)` over one slice, in [`LANES`] partial sums (one running sum is a chain of
/// dependent scalar adds).
fn dz_sums<T: Elem>(x: &[T], y: &[T], dy: &[T], mean: T, ic: T, slope: T) -> (T, T) {
    let (mut aw, mut ab) = ([T::zero(); LANES], [T::zero(); LANES]);
    let n = x.len() / LANES * LANES;
    for ((xc, yc), gc) in x[..n]
        .chunks_exact(LANES)
        .zip(y[..n].chunks_exact(LANES))
        .zip(dy[..n].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let dz = dz_of(yc[k], gc[k], slope);
            ab[k] += dz;
            aw[k] += dz * ((xc[k] - mean) * ic);
        }
    }
    let (mut sw, mut sb) = (T::zero(), T::zero());
    for i in n..x.len() {
        let dz = dz_of(y[i], dy[i], slope);
        sb += dz;
        sw += dz * ((x[i] - mean) * ic);
    }
    (
        aw.iter().fold(sw, |a, &v| a + v),
        ab.iter().fold(sb, |a, &v| a + v),
    )
}

/// Gradients `(dx, dw, db)` from `dy`, the input `x`, the output `y` and the statistics of the
/// forward pass.
#[allow(clippy::too_many_arguments)]
fn backward<T: Elem>(
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    stats: &[(T, T)],
    (c, hw): (usize, usize),
    eps: f64,
    act: NormActivation,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let slope: T = slope_of(act);
    let eps = T::from(eps).unwrap();
    let inv: Vec<T> = stats
        .iter()
        .map(|&(_, var)| (var + eps).sqrt().recip())
        .collect();
    // pass 1, per channel: db = Σ dz, dw = Σ dz·x̂
    let (dw, db): (Vec<T>, Vec<T>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, ic) = (stats[ch].0, inv[ch]);
            channel(x, c, hw, ch)
                .zip(channel(y, c, hw, ch))
                .zip(channel(dy, c, hw, ch))
                .map(|((xs, ys), ds)| dz_sums(xs, ys, ds, mean, ic, slope))
                .fold((T::zero(), T::zero()), |(a, b), (w, v)| (a + w, b + v))
        })
        .unzip();
    // pass 2, per sample: dx = w/σ·(dz − db/M − x̂·dw/M) (in this order: with few values per
    // channel the terms nearly cancel)
    let m = T::from(x.len() / c).unwrap();
    let coef: Vec<(T, T, T, T, T)> = (0..c)
        .map(|ch| {
            let (mean, ic) = (stats[ch].0, inv[ch]);
            (mean, ic, w[ch] * ic, db[ch] / m, dw[ch] / m)
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(c * hw)
        .zip(x.par_chunks(c * hw))
        .zip(y.par_chunks(c * hw).zip(dy.par_chunks(c * hw)))
        .for_each(|((dxs, xs), (ys, dys))| {
            for (ch, &(mean, ic, k, mb, mw)) in coef.iter().enumerate() {
                let r = ch * hw..(ch + 1) * hw;
                for (((d, &xv), &yv), &g) in dxs[r.clone()]
                    .iter_mut()
                    .zip(&xs[r.clone()])
                    .zip(&ys[r.clone()])
                    .zip(&dys[r])
                {
                    *d = k * (dz_of(yv, g, slope) - mb - (xv - mean) * ic * mw);
                }
            }
        });
    (dx, dw, db)
}

/// `(C, H·W)` of a `[B, C, H, W]` layout.
fn dims_of(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        [b, c, h, w] if *b > 0 && *c > 0 => Ok((*b, *c, h * w)),
        d => candle_core::bail!("batch-norm-act: expected [B, C, H, W], got {d:?}"),
    }
}

impl CustomOp3 for BatchNormAct {
    fn name(&self) -> &'static str {
        "batch-norm-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims_of(l1)?;
        if l2.dims() != [c] || l3.dims() != [c] {
            candle_core::bail!("batch-norm-act: scale and shift must be [{c}]");
        }
        macro_rules! run {
            ($t:ty) => {{
                let (y, st) = forward::<$t>(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    (c, hw),
                    self.eps,
                    self.act,
                );
                *self.stats.lock().unwrap() = BatchStats {
                    mean: st.iter().map(|s| s.0 as f64).collect(),
                    var: st.iter().map(|s| s.1 as f64).collect(),
                    count: l1.shape().elem_count() / c,
                };
                y
            }};
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(run!(f32)),
            CpuStorage::F64(_) => CpuStorage::F64(run!(f64)),
            _ => candle_core::bail!("batch-norm-act: f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, c, h, wd) = x.dims4()?;
        let kept = self.stats.lock().unwrap().clone();
        if kept.mean.len() != c {
            candle_core::bail!("batch-norm-act: backward without the forward pass's statistics");
        }
        let (eps, act) = (self.eps, self.act);
        let st: Vec<(f64, f64)> = kept
            .mean
            .iter()
            .zip(&kept.var)
            .map(|(&m, &v)| (m, v))
            .collect();
        norm_backward(
            "batch-norm-act",
            [x, w, b, y, dy],
            |[x, w, y, dy]| {
                let st: Vec<(f32, f32)> = st.iter().map(|&(m, v)| (m as f32, v as f32)).collect();
                backward(x, w, y, dy, &st, (c, h * wd), eps, act)
            },
            |[x, w, y, dy]| backward(x, w, y, dy, &st, (c, h * wd), eps, act),
        )
    }
}

/// `act(BatchNorm(x)·w + b)` with the statistics of this batch (training form), as one op.
///
/// Returns the output and the batch's statistics of each channel; update running statistics
/// from them as `candle_nn::BatchNorm` does (momentum `m`, `n = count`):
/// `mean ← (1−m)·mean + m·μ`, `var ← (1−m)·var + m·σ²·n/(n−1)` ([`update_running`]).
pub fn batch_norm_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
    act: NormActivation,
) -> Result<(Tensor, BatchStats)> {
    if let NormActivation::Leaky(s) = act {
        if !(0.0..=1.0).contains(&s) {
            candle_core::bail!("batch-norm-act: leaky slope {s} outside [0, 1]");
        }
    }
    let stats = Arc::new(Mutex::new(BatchStats::default()));
    let y = x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        BatchNormAct {
            act,
            eps,
            stats: Arc::clone(&stats),
        },
    )?;
    let st = stats.lock().unwrap().clone();
    Ok((y, st))
}

/// Fold a batch's statistics into running ones (`running_mean`, `running_var`: variables of
/// `[C]`), exactly as `candle_nn::BatchNorm::forward_train` does.
pub fn update_running(
    running_mean: &Tensor,
    running_var: &Tensor,
    st: &BatchStats,
    momentum: f64,
) -> Result<()> {
    let n = st.count as f64;
    let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
    for (running, batch, k) in [
        (running_mean, &st.mean, 1.0),
        (running_var, &st.var, unbias),
    ] {
        if !running.is_variable() {
            candle_core::bail!("batch-norm-act: running statistics must be variables");
        }
        let var = candle_core::Var::from_tensor(running)?;
        let batch = Tensor::from_iter(batch.iter().map(|&v| v * k), running.device())?
            .to_dtype(running.dtype())?;
        let updated = ((running * (1.0 - momentum))? + (batch * momentum)?)?;
        var.set(&updated)?;
    }
    Ok(())
}
