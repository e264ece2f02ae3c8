//! BatchNorm statistics for the exported (batch-1, eval-mode) network.
//!
//! In training every forward pass normalizes with the statistics of its own batch: real images,
//! noise, or f(noise). That batch coupling is what keeps f(z) diverse (noise samples are
//! normalized against each other), and the running averages mix all three kinds, so an
//! eval-mode network with them fits none: f(z) collapses to a few digits. The exported model
//! therefore gets statistics measured on one kind of input, by train-mode passes over it:
//! `data` (real images; f(z) is data-like too) for projecting images and for f∘f, and `noise`
//! for the first application to noise (written as the `.noise.onnx` variant).

use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

use crate::data::{mix, Dataset};
use crate::model::Ign;
use crate::z::noise::Noise;

/// Which inputs the exported BatchNorm statistics describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BnStats {
    /// The running averages kept during training (all kinds of batches mixed).
    Running,
    /// Real training images.
    Data,
    /// Noise of the run's kind.
    Noise,
}

named_choices!(BnStats { Running = "running", Data = "data", Noise = "noise" });

impl BnStats {
    /// The name written to the model's metadata (`ign.bn_stats`).
    pub fn as_str(self) -> &'static str {
        match self {
            BnStats::Running => "running",
            BnStats::Data => "data",
            BnStats::Noise => "noise",
        }
    }
}

/// Batches of train-mode passes: with BatchNorm's momentum 0.1 the running statistics then
/// hold the new inputs' statistics to 0.9^100 ≈ 3e-5.
pub const PASSES: usize = 100;

/// Replace the running statistics of `model` by those of `stats` inputs ([`PASSES`] batches).
pub fn recalibrate(
    model: &Ign,
    stats: BnStats,
    train: &Dataset,
    noise: &Noise,
    batch: usize,
    seed: u64,
) -> Result<()> {
    recalibrate_with(model, stats, train, noise, batch, seed, PASSES)
}

/// [`recalibrate`] with `passes` batches (fewer: statistics that keep some of the old, for
/// tests).
pub fn recalibrate_with(
    model: &Ign,
    stats: BnStats,
    train: &Dataset,
    noise: &Noise,
    batch: usize,
    seed: u64,
    passes: usize,
) -> Result<()> {
    let dev = Device::Cpu;
    for i in 0..passes as u64 {
        let x = match stats {
            BnStats::Running => return Ok(()),
            BnStats::Data => {
                let n = train.len();
                let idx: Vec<usize> = (0..batch as u64)
                    .map(|j| (mix(seed, i, j) % n as u64) as usize)
                    .collect();
                train.batch(&idx, &dev)?
            }
            BnStats::Noise => noise.sample(batch, mix(seed, i, 0xb7), &dev)?,
        };
        model.forward_t(&x, true)?;
    }
    Ok(())
}
