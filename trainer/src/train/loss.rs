//! The IGN objective: reconstruction, idempotence and tightness, with the tanh clamp.
//!
//! Per step, with `x` real and `z` noise (FIELD-NOTES §1):
//! - `fx = f(x)`, `fz = f(z)`, `f_z = stopgrad(fz)`
//! - `ff_z = f(f_z)`: gradient reaches the weights through this outer application only
//! - `f_fz = f_frozen(fz)`: frozen weights, gradient flows only through `fz` (the inner `f`)
//! - `L_rec = D(fx, x)`, `L_idem = D(f_fz, fz)`, `L_tight = -D(ff_z, f_z)`
//! - clamp per sample: `L_tight = tanh(L_tight / (a·L_rec)) · a·L_rec`
//!
//! Choice where the reimplementations differ: the clamp scale is the *per-sample* `L_rec(x_i)`
//! of the real image at the same batch position, as in the paper's listing, and it is not
//! detached (the paper's listing does not detach it either).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::Ign;

/// The distance `D` between two image batches, per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    /// Mean absolute error (the paper's choice).
    L1,
    /// Mean squared error.
    L2,
}

named_choices!(Distance { L1 = "l1", L2 = "l2" });

/// Weights and settings of the objective; defaults are the paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub lambda_rec: f64,
    pub lambda_idem: f64,
    pub lambda_tight: f64,
    /// The tightness clamp `a`.
    pub tight_clamp: f64,
    pub distance: Distance,
    /// Weight of the restoration term `D(f(c(x)), x)` over the corrupted `z` (`--z-mix`): f of a
    /// corrupted training image is pulled to that image, not only onto some fixed point
    /// (`ign-train train --lambda-restore`; 0, the default: off, the paper's objective).
    #[serde(default)]
    pub lambda_restore: f64,
    /// The restoration term also takes the printed digits of `z` (`--z-printed`), each to the
    /// training digit of its class nearest to it (L1) among those [`RestoreMatch`] allows: a
    /// handwritten target for a printed input (`ign-train train --restore-printed`; needs
    /// labels).
    #[serde(default)]
    pub restore_printed: bool,
    /// Which training digits of its class a printed digit may be restored to
    /// (`ign-train train --restore-match`).
    #[serde(default)]
    pub restore_match: RestoreMatch,
}

/// Which training digits of its class a printed digit of `z` may take as its restoration
/// target (`--restore-printed`); the nearest of them in L1 is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMatch {
    /// Any digit of the class: a bold glyph gets the thickest handwritten digit near it, so f
    /// learns to keep the weight of the face.
    #[default]
    Nearest,
    /// Only digits of typical ink for their class (the middle half of its ink amounts): f
    /// learns to turn bold and hairline faces into strokes of a handwritten weight.
    Typical,
}

named_choices!(RestoreMatch { Nearest = "nearest", Typical = "typical" });

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            lambda_rec: 20.0,
            lambda_idem: 20.0,
            lambda_tight: 2.5,
            tight_clamp: 1.5,
            distance: Distance::L1,
            lambda_restore: 0.0,
            restore_printed: false,
            restore_match: RestoreMatch::Nearest,
        }
    }
}

impl LossConfig {
    /// Whether a term that reads `z` has weight: idempotence, tightness, or restoration when
    /// the step's `z` brings restoration targets (`restoring`). Without one a step is
    /// reconstruction alone (an autoencoder), and `z` need not be drawn.
    pub fn reads_z(&self, restoring: bool) -> bool {
        self.lambda_idem != 0.0
            || self.lambda_tight != 0.0
            || (self.lambda_restore != 0.0 && restoring)
    }
}

/// The terms of one step, as plain numbers for logging.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LossTerms {
    pub total: f32,
    pub rec: f32,
    pub idem: f32,
    pub tight: f32,
    /// The restoration term (0 when it is off).
    pub restore: f32,
}

/// `D(a, b)` per sample: a `[B]` tensor.
pub fn distance_per_sample(a: &Tensor, b: &Tensor, d: Distance) -> Result<Tensor> {
    let diff = (a - b)?;
    let e = match d {
        // |d| with the subgradient 0 at d = 0, as in PyTorch: candle's own `abs` takes +1
        // there, which pushes pixels where f(f(z)) equals f(z) exactly (dead regions).
        Distance::L1 => diff.mul(&diff.sign()?.detach())?,
        Distance::L2 => diff.sqr()?,
    };
    e.flatten_from(1)?.mean(1)
}

/// The tanh clamp of the tightness term, per sample: `tanh(t / (a·r)) · a·r`.
pub fn clamp_tight(tight: &Tensor, rec: &Tensor, a: f64) -> Result<Tensor> {
    let scale = (rec * a)?;
    tight.div(&scale)?.tanh()?.mul(&scale)
}

/// The IGN loss for a real batch `x` and a noise batch `z`.
///
/// `model` and `frozen` must hold the same weights; `frozen` must be built from detached
/// tensors (see [`crate::train::frozen_copy`]) so that no gradient reaches the weights through it.
pub fn ign_loss(
    model: &Ign,
    frozen: &Ign,
    x: &Tensor,
    z: &Tensor,
    cfg: &LossConfig,
) -> Result<(Tensor, LossTerms)> {
    ign_loss_tight_on(model, frozen, x, z, cfg, z.dim(0)?)
}

/// [`ign_loss`] with the tightness term taken over the first `tight_samples` of `z` only
/// (the noise; the rest, corrupted or printed digits, then join reconstruction's neighbours
/// through the idempotence term alone: `ign-train train --z-tight noise`).
pub fn ign_loss_tight_on(
    model: &Ign,
    frozen: &Ign,
    x: &Tensor,
    z: &Tensor,
    cfg: &LossConfig,
    tight_samples: usize,
) -> Result<(Tensor, LossTerms)> {
    ign_loss_planned(
        model,
        frozen,
        x,
        z,
        cfg,
        ZPlan {
            tight_samples,
            bn_split: None,
            restore: None,
        },
    )
}

/// The clean images behind the corrupted part of a `z` batch, for the restoration term.
#[derive(Clone, Debug)]
pub struct Restore {
    /// Index in `z` of the first corrupted image.
    pub start: usize,
    /// The images before corruption, in the same order (`[k, C, H, W]`).
    pub targets: Tensor,
}

/// How a batch of `z` goes through the loss.
#[derive(Clone, Debug)]
pub struct ZPlan {
    /// The tightness term is taken over the first `tight_samples` z.
    pub tight_samples: usize,
    /// With `Some(k)`, the first `k` z (the noise) and the rest (corrupted or printed digits)
    /// go through f as two batches, each normalized by its own BatchNorm statistics
    /// (`ign-train train --z-bn separate`); `None`: one batch.
    pub bn_split: Option<usize>,
    /// With `Some`, and `lambda_restore` > 0, the restoration term `D(f(z_i), x_i)` over the
    /// corrupted z, with the gradient through that f (`ign-train train --lambda-restore`).
    pub restore: Option<Restore>,
}

/// `f` on `z`, in one batch or in two at `split` (each with its own batch statistics).
fn forward_split(f: &Ign, z: &Tensor, split: Option<usize>) -> Result<Tensor> {
    let n = z.dim(0)?;
    match split {
        Some(k) if k > 0 && k < n => {
            let a = f.forward_t(&z.narrow(0, 0, k)?, true)?;
            let b = f.forward_t(&z.narrow(0, k, n - k)?, true)?;
            Tensor::cat(&[&a, &b], 0)
        }
        _ => f.forward_t(z, true),
    }
}

/// [`ign_loss`] with the batch of `z` handled as `plan` says.
pub fn ign_loss_planned(
    model: &Ign,
    frozen: &Ign,
    x: &Tensor,
    z: &Tensor,
    cfg: &LossConfig,
    plan: ZPlan,
) -> Result<(Tensor, LossTerms)> {
    if !cfg.reads_z(plan.restore.is_some()) {
        return reconstruction_only(model, x, cfg);
    }
    let tight_samples = plan.tight_samples;
    let fx = model.forward_t(x, true)?;
    let fz = forward_split(model, z, plan.bn_split)?;
    let f_z = fz.detach();
    let ff_z = forward_split(model, &f_z, plan.bn_split)?;
    let f_fz = forward_split(frozen, &fz, plan.bn_split)?;

    let rec = distance_per_sample(&fx, x, cfg.distance)?;
    let idem = distance_per_sample(&f_fz, &fz, cfg.distance)?.mean_all()?;
    let tight_raw = distance_per_sample(&ff_z, &f_z, cfg.distance)?.neg()?;
    let k = tight_samples.min(tight_raw.dim(0)?);
    let tight = if k == 0 {
        tight_raw.zeros_like()?.sum_all()?
    } else {
        let (t, r) = (tight_raw.narrow(0, 0, k)?, rec.narrow(0, 0, k)?);
        clamp_tight(&t, &r, cfg.tight_clamp)?.mean_all()?
    };
    let rec = rec.mean_all()?;

    let mut total =
        ((&rec * cfg.lambda_rec)? + (&idem * cfg.lambda_idem)? + (&tight * cfg.lambda_tight)?)?;
    let mut restore_term = 0.0f32;
    if let Some(r) = plan.restore.as_ref().filter(|_| cfg.lambda_restore > 0.0) {
        let k = r.targets.dim(0)?;
        let restored = distance_per_sample(&fz.narrow(0, r.start, k)?, &r.targets, cfg.distance)?
            .mean_all()?;
        restore_term = restored.to_dtype(candle_core::DType::F32)?.to_scalar()?;
        total = (total + (restored * cfg.lambda_restore)?)?;
    }
    let terms = LossTerms {
        total: total.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        rec: rec.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        idem: idem.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        tight: tight.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        restore: restore_term,
    };
    Ok((total, terms))
}

/// The loss with the idempotence and tightness weights at 0 (a reconstruction warm-up, an
/// autoencoder): `f` runs on `x` alone, a third of a full step's work.
fn reconstruction_only(model: &Ign, x: &Tensor, cfg: &LossConfig) -> Result<(Tensor, LossTerms)> {
    let fx = model.forward_t(x, true)?;
    let rec = distance_per_sample(&fx, x, cfg.distance)?.mean_all()?;
    let total = (&rec * cfg.lambda_rec)?;
    let terms = LossTerms {
        total: total.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        rec: rec.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        ..Default::default()
    };
    Ok((total, terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn distances_per_sample_on_fixed_tensors() {
        let a = t(&[0.0, 1.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0], (2, 1, 2, 2));
        let b = t(&[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, -1.0, 1.0], (2, 1, 2, 2));
        let l1 = distance_per_sample(&a, &b, Distance::L1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(l1, vec![2.5 / 4.0, 1.0]);
        let l2 = distance_per_sample(&a, &b, Distance::L2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(l2, vec![2.25 / 4.0, 1.0]);
    }

    #[test]
    fn clamp_is_identity_for_small_and_saturates_for_large() {
        let rec = Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap();
        let tight = Tensor::new(&[-0.001f32, -100.0], &Device::Cpu).unwrap();
        let c = clamp_tight(&tight, &rec, 1.5)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((c[0] + 0.001).abs() < 1e-6, "{c:?}");
        assert!((c[1] + 1.5).abs() < 1e-6, "{c:?}");
    }
}
