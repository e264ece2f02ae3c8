//! LayerNorm (or InstanceNorm) + per-channel affine + activation as one candle op with its own
//! backward pass; and bias + activation, likewise, for the layers without a norm.
//!
//! Written with candle's elementwise ops the block costs ~12 tensor passes forward and ~25
//! backward, each allocating; an IGN step runs it 4 times per layer. Here forward is two passes
//! per sample (statistics, then output) and backward two (it takes the statistics the forward
//! pass kept), over images spread across threads.
//!
//! Statistics per sample and group of channels (LayerNorm: one group of all `C·H·W` values;
//! InstanceNorm: each channel's `H·W`): `x̂ = (x − μ)/σ`, `z = x̂·w_c + b_c`, `y = act(z)`.
//! Backward from `dy`: `dz = dy·act'(z)` (read from `y`: LeakyReLU and ReLU keep the sign),
//! `dw_c = Σ dz·x̂`, `db_c = Σ dz`, `dx = (g − mean(g) − x̂·mean(g·x̂))/σ` with `g = dz·w_c`.

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor, WithDType,
};
use num_traits::Float;
use rayon::prelude::*;

use crate::ops::contiguous;

/// The activation after the norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormActivation {
    /// `max(z, slope·z)` with `0 ≤ slope ≤ 1`; `slope = 0` is ReLU.
    Leaky(f64),
    /// `z`.
    Identity,
}

/// Epsilon under the square root, as the model's LayerNorm.
pub const EPS: f64 = 1e-5;

struct NormAct {
    act: NormActivation,
    groups: usize,
    /// Mean and 1/σ of each (sample, group), kept by the forward pass for the backward pass.
    stats: std::sync::Mutex<Vec<f64>>,
}

pub(crate) trait Elem: Float + WithDType + Send + Sync + std::ops::AddAssign {}
impl Elem for f32 {}
impl Elem for f64 {}

/// Partial sums kept side by side in the reductions, so that they run on SIMD lanes (one
/// running sum is a chain of dependent scalar adds).
pub(crate) const LANES: usize = 16;

/// `Σ f(v)` over `x`, in [`LANES`] partial sums.
#[inline]
pub(crate) fn sum_by<T: Elem>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |a, &v| a + f(v));
    acc.iter().fold(tail, |a, &v| a + v)
}

/// Mean and 1/σ of one sample.
fn stats<T: Elem>(x: &[T]) -> (T, T) {
    let n = T::from(x.len()).unwrap();
    let mean = sum_by(x, |v| v) / n;
    let q = sum_by(x, |v| (v - mean) * (v - mean));
    let inv = (q / n + T::from(EPS).unwrap()).sqrt().recip();
    (mean, inv)
}

/// One channel of the backward pass: `d = dz·w` for each value, and `(Σ dz·x̂, Σ dz)`.
#[inline]
#[allow(clippy::too_many_arguments)]
fn channel_backward<T: Elem>(
    d: &mut [T],
    x: &[T],
    y: &[T],
    dy: &[T],
    mean: T,
    inv: T,
    w: T,
    slope: T,
) -> (T, T) {
    let one = |d: &mut T, xv: T, yv: T, g: T| {
        let dz = if yv > T::zero() { g } else { g * slope };
        *d = dz * w;
        (dz * ((xv - mean) * inv), dz)
    };
    let (mut aw, mut ab) = ([T::zero(); LANES], [T::zero(); LANES]);
    let n = d.len() / LANES * LANES;
    for (((dc, xc), yc), gc) in d[..n]
        .chunks_exact_mut(LANES)
        .zip(x[..n].chunks_exact(LANES))
        .zip(y[..n].chunks_exact(LANES))
        .zip(dy[..n].chunks_exact(LANES))
    {
        for k in 0..LANES {
            let (pw, pb) = one(&mut dc[k], xc[k], yc[k], gc[k]);
            aw[k] += pw;
            ab[k] += pb;
        }
    }
    let (mut sw, mut sb) = (T::zero(), T::zero());
    for i in n..d.len() {
        let (pw, pb) = one(&mut d[i], x[i], y[i], dy[i]);
        sw += pw;
        sb += pb;
    }
    (
        aw.iter().fold(sw, |a, &v| a + v),
        ab.iter().fold(sb, |a, &v| a + v),
    )
}

#[allow(clippy::too_many_arguments)]
fn forward<T: Elem>(
    x: &[T],
    w: &[T],
    b: &[T],
    batch: usize,
    c: usize,
    groups: usize,
    act: NormActivation,
) -> (Vec<T>, Vec<T>) {
    let per = x.len() / batch;
    let hw = per / c;
    let cg = c / groups;
    // the identity is a leaky ReLU of slope 1
    let slope = match act {
        NormActivation::Leaky(s) => T::from(s).unwrap(),
        NormActivation::Identity => T::one(),
    };
    let mut y = vec![T::zero(); x.len()];
    // (mean, 1/σ) per sample and group, for the backward pass
    let mut kept = vec![T::zero(); 2 * batch * groups];
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .zip(kept.par_chunks_mut(2 * groups))
        .for_each(|((ys, xs), ks)| {
            let mut st = (T::zero(), T::one());
            for ch in 0..c {
                if ch % cg == 0 {
                    st = stats(&xs[ch * hw..(ch + cg) * hw]);
                    ks[2 * (ch / cg)] = st.0;
                    ks[2 * (ch / cg) + 1] = st.1;
                }
                let (mean, inv) = st;
                let (wc, bc) = (w[ch] * inv, b[ch]);
                let shift = bc - mean * wc;
                for (yv, &xv) in ys[ch * hw..(ch + 1) * hw]
                    .iter_mut()
                    .zip(&xs[ch * hw..(ch + 1) * hw])
                {
                    let z = xv * wc + shift;
                    // max(z, slope·z): the leaky ReLU for 0 ≤ slope ≤ 1, without a branch
                    *yv = num_traits::Float::max(z, z * slope);
                }
            }
        });
    (y, kept)
}

/// Gradients `(dx, dw, db)` from `dy`, the input `x`, the output `y` and the statistics the
/// forward pass kept (`kept`: mean and 1/σ per sample and group).
#[allow(clippy::too_many_arguments)]
fn backward<T: Elem>(
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &[T],
    kept: &[T],
    batch: usize,
    c: usize,
    groups: usize,
    act: NormActivation,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let per = x.len() / batch;
    let hw = per / c;
    let cg = c / groups;
    let gl = cg * hw;
    let slope = match act {
        NormActivation::Leaky(s) => T::from(s).unwrap(),
        NormActivation::Identity => T::one(),
    };
    let mut dx = vec![T::zero(); x.len()];
    let parts: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .zip(y.par_chunks(per).zip(dy.par_chunks(per)))
        .zip(kept.par_chunks(2 * groups))
        .fold(
            || (vec![T::zero(); c], vec![T::zero(); c]),
            |(mut dw, mut db), (((dxs, xs), (ys, dys)), ks)| {
                let n = T::from(gl).unwrap();
                for gi in 0..groups {
                    let gr = gi * gl..(gi + 1) * gl;
                    let (mean, inv) = (ks[2 * gi], ks[2 * gi + 1]);
                    // dz·w into dxs, and the sums (Σ dz·w = w·Σ dz, Σ dz·w·x̂ = w·Σ dz·x̂)
                    let (mut sg, mut sgx) = (T::zero(), T::zero());
                    for ch in gi * cg..(gi + 1) * cg {
                        let r = ch * hw..(ch + 1) * hw;
                        let (dwc, dbc) = channel_backward(
                            &mut dxs[r.clone()],
                            &xs[r.clone()],
                            &ys[r.clone()],
                            &dys[r],
                            mean,
                            inv,
                            w[ch],
                            slope,
                        );
                        sg += w[ch] * dbc;
                        sgx += w[ch] * dwc;
                        dw[ch] += dwc;
                        db[ch] += dbc;
                    }
                    let (mg, mgx) = (sg / n, sgx / n);
                    for (d, &xv) in dxs[gr.clone()].iter_mut().zip(&xs[gr]) {
                        let xh = (xv - mean) * inv;
                        *d = (*d - mg - xh * mgx) * inv;
                    }
                }
                (dw, db)
            },
        )
        .collect();
    let (mut dw, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
    for (pw, pb) in parts {
        for ch in 0..c {
            dw[ch] += pw[ch];
            db[ch] += pb[ch];
        }
    }
    (dx, dw, db)
}

impl CustomOp3 for NormAct {
    fn name(&self) -> &'static str {
        "layer-norm-act"
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
        let dims = l1.dims();
        let (batch, c) = match dims {
            [b, c, _, _] => (*b, *c),
            _ => candle_core::bail!("norm-act: expected [B, C, H, W], got {dims:?}"),
        };
        if l2.dims() != [c] || l3.dims() != [c] {
            candle_core::bail!("norm-act: scale and shift must be [{c}]");
        }
        if self.groups == 0 || c % self.groups != 0 {
            candle_core::bail!(
                "norm-act: {} groups do not divide {c} channels",
                self.groups
            );
        }
        macro_rules! run {
            ($t:ty) => {{
                let (y, kept) = forward::<$t>(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    batch,
                    c,
                    self.groups,
                    self.act,
                );
                *self.stats.lock().unwrap() = kept.iter().map(|&v| v as f64).collect();
                y
            }};
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(run!(f32)),
            CpuStorage::F64(_) => CpuStorage::F64(run!(f64)),
            _ => candle_core::bail!("norm-act: f32 or f64"),
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
        let (batch, c, _, _) = x.dims4()?;
        let kept = self.stats.lock().unwrap().clone();
        if kept.len() != 2 * batch * self.groups {
            candle_core::bail!("norm-act: backward without the forward pass's statistics");
        }
        let (groups, act) = (self.groups, self.act);
        norm_backward(
            "norm-act",
            [x, w, b, y, dy],
            |[x, w, y, dy]| {
                let kept: Vec<f32> = kept.iter().map(|&v| v as f32).collect();
                backward(x, w, y, dy, &kept, batch, c, groups, act)
            },
            |[x, w, y, dy]| backward(x, w, y, dy, &kept, batch, c, groups, act),
        )
    }
}

/// `(dx, dw, db)` of a norm op.
type Grads<T> = (Vec<T>, Vec<T>, Vec<T>);

/// Gradients `(dx, dw, db)` of a norm op's inputs, from `[x, w, b, y, dy]`: computed on the
/// CPU by `f32` or `f64` (whichever is `x`'s type) from the values of x, w, y and dy read in
/// place; only the inputs that ask for a gradient get one (frozen weights and detached inputs
/// do not).
pub(crate) fn norm_backward(
    op: &str,
    [x, w, b, y, dy]: [&Tensor; 5],
    f32: impl FnOnce([&[f32]; 4]) -> Grads<f32>,
    f64: impl FnOnce([&[f64]; 4]) -> Grads<f64>,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let c = w.dim(0)?;
    let dev = x.device().clone();
    let tensors = [x, w, y, dy].map(|t| t.contiguous());
    let [x_, w_, y_, dy_] = tensors;
    let (x_, w_, y_, dy_) = (x_?, w_?, y_?, dy_?);
    let guards = [&x_, &w_, &y_, &dy_].map(|t| t.storage_and_layout());
    let mut cpu = Vec::with_capacity(4);
    for (s, l) in &guards {
        match &**s {
            Storage::Cpu(st) => cpu.push((st, *l)),
            _ => candle_core::bail!("{op}: CPU tensors only"),
        }
    }
    macro_rules! run {
        ($f:ident) => {{
            let (dx, dw, db) = $f([
                contiguous(cpu[0].0, cpu[0].1)?,
                contiguous(cpu[1].0, cpu[1].1)?,
                contiguous(cpu[2].0, cpu[2].1)?,
                contiguous(cpu[3].0, cpu[3].1)?,
            ]);
            (
                Tensor::from_vec(dx, x.shape(), &dev)?,
                Tensor::from_vec(dw, c, &dev)?,
                Tensor::from_vec(db, c, &dev)?,
            )
        }};
    }
    let (dx, dw, db) = match x.dtype() {
        candle_core::DType::F64 => run!(f64),
        _ => run!(f32),
    };
    Ok((
        x.track_op().then_some(dx),
        w.track_op().then_some(dw),
        b.track_op().then_some(db),
    ))
}

/// `act(LayerNorm(x)·w + b)` over (C, H, W) per sample, as one op.
pub fn layer_norm_act(x: &Tensor, w: &Tensor, b: &Tensor, act: NormActivation) -> Result<Tensor> {
    group_norm_act(x, w, b, 1, act)
}

/// `act(GroupNorm(x)·w + b)` per sample with `groups` groups of channels (1: LayerNorm over
/// (C, H, W); C: InstanceNorm over (H, W)), as one op.
pub fn group_norm_act(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    groups: usize,
    act: NormActivation,
) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        NormAct {
            act,
            groups,
            stats: Default::default(),
        },
    )
}

/// The activation of a layer without a norm, after its bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BiasActivation {
    /// `max(z, slope·z)` with `0 ≤ slope ≤ 1`.
    Leaky(f64),
    Tanh,
    Identity,
}

/// `act(x + b_c)` per channel as one op with its own backward pass: the layers without a norm
/// (the first conv, the latent, the output) took a broadcast add and one or two activation ops,
/// each a single-threaded pass that allocates, forward and backward.
struct BiasAct {
    act: BiasActivation,
}

impl BiasAct {
    #[inline]
    fn apply<T: Elem>(&self, z: T) -> T {
        match self.act {
            // max(z, s·z): the leaky ReLU for 0 ≤ s ≤ 1, without a branch
            BiasActivation::Leaky(s) => Float::max(z, z * T::from(s).unwrap()),
            BiasActivation::Tanh => z.tanh(),
            _ => z,
        }
    }
    /// `dL/dz` from `dL/dy` and `y = act(z)`.
    #[inline]
    fn grad<T: Elem>(&self, y: T, dy: T) -> T {
        match self.act {
            BiasActivation::Leaky(s) if y <= T::zero() => dy * T::from(s).unwrap(),
            BiasActivation::Tanh => dy * (T::one() - y * y),
            _ => dy,
        }
    }

    /// `y` for `x` (`batch` samples of `c` channels) and the bias `b`.
    fn forward<T: Elem>(&self, x: &[T], b: &[T], batch: usize) -> Vec<T> {
        let (per, c) = (x.len() / batch, b.len());
        let hw = per / c;
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(ys, xs)| {
                for (ch, &bc) in b.iter().enumerate() {
                    let r = ch * hw..(ch + 1) * hw;
                    for (yv, &xv) in ys[r.clone()].iter_mut().zip(&xs[r]) {
                        *yv = self.apply(xv + bc);
                    }
                }
            });
        y
    }

    /// `(dL/dx, dL/db)` from `y` and `dL/dy`.
    fn backward<T: Elem>(&self, y: &[T], dy: &[T], batch: usize, c: usize) -> (Vec<T>, Vec<T>) {
        let per = y.len() / batch;
        let hw = per / c;
        let mut dz = vec![T::zero(); y.len()];
        let parts: Vec<Vec<T>> = dz
            .par_chunks_mut(per)
            .zip(y.par_chunks(per).zip(dy.par_chunks(per)))
            .fold(
                || vec![T::zero(); c],
                |mut db, (dzs, (ys, dys))| {
                    for (ch, dbc) in db.iter_mut().enumerate() {
                        let r = ch * hw..(ch + 1) * hw;
                        for ((d, &yv), &g) in dzs[r.clone()]
                            .iter_mut()
                            .zip(&ys[r.clone()])
                            .zip(&dys[r.clone()])
                        {
                            *d = self.grad(yv, g);
                        }
                        *dbc += sum_by(&dzs[r], |v| v);
                    }
                    db
                },
            )
            .collect();
        let mut db = vec![T::zero(); c];
        for p in parts {
            for (d, v) in db.iter_mut().zip(p) {
                *d += v;
            }
        }
        (dz, db)
    }
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.dims();
        let (batch, c) = match dims {
            [b, c, ..] if *b > 0 && *c > 0 => (*b, *c),
            _ => candle_core::bail!("bias-act: expected [B, C, ...], got {dims:?}"),
        };
        if l2.dims() != [c] {
            candle_core::bail!("bias-act: the bias must be [{c}], got {:?}", l2.dims());
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward::<f32>(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                batch,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward::<f64>(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                batch,
            )),
            _ => candle_core::bail!("bias-act: f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, c) = (x.dim(0)?, x.dim(1)?);
        let dev = x.device().clone();
        let (y_, dy_) = (y.contiguous()?, dy.contiguous()?);
        let (sy, sd) = (y_.storage_and_layout(), dy_.storage_and_layout());
        let (Storage::Cpu(cy), Storage::Cpu(cd)) = (&*sy.0, &*sd.0) else {
            candle_core::bail!("bias-act: CPU tensors only");
        };
        macro_rules! run {
            ($t:ty) => {{
                let (dz, db) =
                    self.backward::<$t>(contiguous(cy, sy.1)?, contiguous(cd, sd.1)?, batch, c);
                (
                    Tensor::from_vec(dz, x.shape(), &dev)?,
                    Tensor::from_vec(db, c, &dev)?,
                )
            }};
        }
        let (dx, db) = match x.dtype() {
            candle_core::DType::F64 => run!(f64),
            _ => run!(f32),
        };
        Ok((x.track_op().then_some(dx), b.track_op().then_some(db)))
    }
}

/// `act(x + b)` with the bias `b` (`[C]`) broadcast over `x` (`[B, C, ...]`), as one op.
pub fn bias_act(x: &Tensor, b: &Tensor, act: BiasActivation) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, BiasAct { act })
}
