//! What defines a training run ([`TrainConfig`], saved in every checkpoint).

use serde::{Deserialize, Serialize};

use crate::loss::LossConfig;
use crate::model::ModelConfig;
use crate::noise::NoiseKind;
use crate::optim::AdamConfig;

/// Everything that defines a run; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub adam: AdamConfig,
    pub noise: NoiseKind,
    /// Fraction of each batch of `z` drawn from corruptions of real training images
    /// ([`crate::corrupt`]) instead of noise: the paper's "any input" (0: noise only).
    #[serde(default)]
    pub z_mix: f64,
    /// Fraction of each batch of `z` rendered as printed digits from the training faces
    /// ([`crate::printed::FontSet::Train`]; the evaluation's faces are held out) (0: none).
    #[serde(default)]
    pub z_printed: f64,
    /// Which training faces render the printed digits of `z_printed`.
    #[serde(default)]
    pub z_fonts: ZFonts,
    /// Which `z` the tightness term sees: all of it, or only its noise (corrupted and printed
    /// digits then feed the idempotence term alone).
    #[serde(default)]
    pub z_tight: ZTight,
    /// Whether the noise and the other z share one batch's BatchNorm statistics.
    #[serde(default)]
    pub z_bn: ZBatchNorm,
    /// Decay of the moving average of the weights that export writes ([`crate::ema`]; 0: off).
    #[serde(default)]
    pub ema: f64,
    pub batch: usize,
    pub seed: u64,
    /// Where the data came from (informational).
    pub data: String,
    /// Which dataset name goes into the exported model's metadata.
    pub dataset_name: String,
}

/// Which training faces render the printed digits of `z` (the evaluation's are held out of
/// both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ZFonts {
    /// DejaVu and Liberation: 7 faces ([`crate::printed::FontSet::Train`]).
    #[default]
    Base,
    /// Those and 48 more: italics, light to black weights, condensed, humanist, geometric,
    /// rounded and hand-lettered faces ([`crate::printed::FontSet::TrainWide`]).
    Wide,
}

impl ZFonts {
    /// The faces.
    pub fn set(self) -> crate::printed::FontSet {
        match self {
            ZFonts::Base => crate::printed::FontSet::Train,
            ZFonts::Wide => crate::printed::FontSet::TrainWide,
        }
    }
}

/// Which part of each `z` batch the tightness term is taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ZTight {
    /// Every `z` (the paper's objective).
    #[default]
    All,
    /// Only the noise: tightness pushes f away from being the identity off the data, which
    /// for digits close to the data (noisy, occluded, printed) fights reconstruction.
    Noise,
}

/// How the noise and the other z (corrupted, printed) meet BatchNorm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ZBatchNorm {
    /// One batch: the digits are normalized with the noise's statistics mixed in.
    #[default]
    Shared,
    /// Two batches, each with its own statistics (as the exported model sees them: real-like
    /// inputs with statistics of real images, noise with those of noise).
    Separate,
}
