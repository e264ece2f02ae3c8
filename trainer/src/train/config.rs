//! What defines a training run ([`TrainConfig`], saved in every checkpoint).

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;
use crate::train::loss::LossConfig;
use crate::train::optim::AdamConfig;
use crate::z::noise::NoiseKind;

pub use crate::z::fonts::ZFonts;

/// Everything that defines a run; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub adam: AdamConfig,
    pub noise: NoiseKind,
    /// Fraction of each batch of `z` drawn from corruptions of real training images
    /// ([`crate::z::corrupt`]) instead of noise: the paper's "any input" (0: noise only).
    #[serde(default)]
    pub z_mix: f64,
    /// Fraction of each batch of `z` rendered as printed digits from the training faces
    /// of [`TrainConfig::z_fonts`] (the evaluation's faces are held out) (0: none).
    #[serde(default)]
    pub z_printed: f64,
    /// Which training faces render the printed digits of `z_printed`: `base`, `wide` or a
    /// folder (old checkpoints hold `base` or `wide`).
    #[serde(default)]
    pub z_fonts: ZFonts,
    /// Which `z` the tightness term sees: all of it, or only its noise (corrupted and printed
    /// digits then feed the idempotence term alone).
    #[serde(default)]
    pub z_tight: ZTight,
    /// Whether the noise and the other z share one batch's BatchNorm statistics.
    #[serde(default)]
    pub z_bn: ZBatchNorm,
    /// What the real images go through before reconstruction sees them (`--augment`).
    #[serde(default)]
    pub augment: crate::data::augment::Augment,
    /// Decay of the moving average of the weights that export writes ([`crate::train::ema`]; 0: off).
    #[serde(default)]
    pub ema: f64,
    pub batch: usize,
    pub seed: u64,
    /// The share of the data held out as its test split when the data has no split of its
    /// own (`--test-fraction`): export calibrates a scene model's threshold on that split.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Where the data came from (informational).
    pub data: String,
    /// Which dataset name goes into the exported model's metadata.
    pub dataset_name: String,
    /// The recipe stage that trained it (`ign-train train --recipe`; none for a plain run and
    /// in checkpoints from before recipes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeStage>,
}

fn default_test_fraction() -> f64 {
    crate::data::DataOptions::default().test_fraction
}

/// Where a run's state came from when a recipe made it ([`crate::train::recipe`]): written into the
/// exported model as `ign.recipe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeStage {
    /// The recipe's name.
    pub recipe: String,
    /// The first 12 hex digits of the SHA-256 of the recipe file's text (`sha256sum FILE`).
    pub hash: String,
    /// The stage's name.
    pub stage: String,
    /// The stage's place in the recipe, from 1, and the number of stages.
    pub index: usize,
    pub stages: usize,
}

impl std::fmt::Display for RecipeStage {
    /// `ign-mnist@0123456789ab stage typical (6 of 6)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} stage {} ({} of {})",
            self.recipe, self.hash, self.stage, self.index, self.stages
        )
    }
}

/// Which part of each `z` batch the tightness term is taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZTight {
    /// Every `z` (the paper's objective).
    #[default]
    All,
    /// Only the noise: tightness pushes f away from being the identity off the data, which
    /// for digits close to the data (noisy, occluded, printed) fights reconstruction.
    Noise,
}

named_choices!(ZTight { All = "all", Noise = "noise" });

/// How the noise and the other z (corrupted, printed) meet BatchNorm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZBatchNorm {
    /// One batch: the digits are normalized with the noise's statistics mixed in.
    #[default]
    Shared,
    /// Two batches, each with its own statistics (as the exported model sees them: real-like
    /// inputs with statistics of real images, noise with those of noise).
    Separate,
}

named_choices!(ZBatchNorm { Shared = "shared", Separate = "separate" });

#[cfg(test)]
mod tests {
    use super::*;

    /// `ign.config` of ign-mnist's run at step 58,500 (written when `--z-fonts` was base|wide).
    const OLD: &str = r#"{"model":{"channels":1,"image_size":28,"width":32,"norm":"batch"},"loss":{"lambda_rec":20.0,"lambda_idem":20.0,"lambda_tight":2.5,"tight_clamp":1.5,"distance":"L1","lambda_restore":20.0,"restore_printed":true,"restore_match":"typical"},"adam":{"lr":0.00005,"beta1":0.5,"beta2":0.999,"eps":1e-8},"noise":"Gaussian","z_mix":0.3,"z_printed":0.1,"z_fonts":"wide","z_tight":"noise","z_bn":"separate","ema":0.999,"batch":64,"seed":0,"data":"../shared/data/mnist-10k","dataset_name":"mnist-10k"}"#;

    #[test]
    fn old_checkpoint_configurations_still_load() {
        let c: TrainConfig = serde_json::from_str(OLD).unwrap();
        assert_eq!(c.z_fonts, ZFonts::Wide);
        let base = OLD.replace(r#""z_fonts":"wide""#, r#""z_fonts":"base""#);
        let c: TrainConfig = serde_json::from_str(&base).unwrap();
        assert_eq!(c.z_fonts, ZFonts::Base);
        // from before --z-fonts: the base faces
        let none = OLD.replace(r#""z_fonts":"wide","#, "");
        let c: TrainConfig = serde_json::from_str(&none).unwrap();
        assert_eq!(c.z_fonts, ZFonts::Base);
        assert_eq!(c.recipe, None);
        assert_eq!(c.test_fraction, 0.1);
        // a folder goes in and out as its path
        let mut c = c;
        c.z_fonts = ZFonts::Dir("fonts/mine".into());
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""z_fonts":"fonts/mine""#), "{json}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
    }
}
