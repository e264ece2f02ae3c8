//! `ign-train train`

use anyhow::{bail, Result};
use clap::{Args, Parser};

use crate::cli::choice;
use std::path::PathBuf;

use crate::data::augment::Augment;
use crate::data::{DataKind, DataOptions};
use crate::model::{ModelConfig, Norm};
use crate::train::loss::{Distance, LossConfig};
use crate::train::optim::AdamConfig;
use crate::train::{self, RunOptions, TrainConfig};
use crate::z::noise::NoiseKind;

/// Train an IGN (or continue a run with --resume), or run a recipe's stages in order. Ctrl-C
/// saves a checkpoint.
///
/// A shipped model's recipe: ign-train train --recipe ign-mnist --data ../shared/data/mnist-10k
/// --out runs/ign-mnist
///
/// A model of your camera's view, in 15 minutes: ign-train train --recipe scene --data frames
/// --out runs/scene
///
/// A run of your own: ign-train train --data ../shared/data/mnist-10k --steps 20000 --out
/// runs/mnist
#[derive(Args, Debug)]
pub struct TrainCmd {
    /// Run the stages of a recipe in --out (each in --out/STAGE), resuming where it stopped
    /// when run again: a built-in name (ign-mnist, ign-fashion, scene, scene-ae:
    /// models/recipes/) or a .toml file. Takes --data, --out, --threads, --minutes, --sample-every and
    /// --checkpoint-every; the rest is the recipe's.
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["resume", "from", "steps"])]
    pub recipe: Option<String>,
    /// IDX images file, a folder with IDX files (train-/t10k- pairs are used as the split), or
    /// an image folder (one sub-folder per class gives labels).
    #[arg(long)]
    pub data: PathBuf,
    /// Data kind; detected from the path when omitted.
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<DataKind>(DataKind::NAMES))]
    pub dataset: Option<DataKind>,
    /// Name recorded in the exported model (default: the data folder's name).
    #[arg(long, conflicts_with = "recipe")]
    pub name: Option<String>,
    /// Square image size (28, 32 or 64); IDX keeps its own size by default, folders use 64.
    #[arg(long, conflicts_with = "recipe")]
    pub image_size: Option<usize>,
    /// 1 (gray) or 3 (RGB); default 1 for IDX, 3 for folders.
    #[arg(long, conflicts_with = "recipe")]
    pub channels: Option<usize>,
    /// Width of the first layer: 32 (the shipped models'; 64, the paper's, costs 3x per step
    /// and generated no better per step, models/MODELS.md).
    #[arg(long, conflicts_with = "recipe", default_value_t = 32)]
    pub width: usize,
    /// Normalization: batch (the paper's BatchNorm, the shipped models'; export folds in the
    /// statistics of real images and writes a variant with those of noise), layer (per sample,
    /// over C, H, W), instance (per sample and channel, over H, W) or none. With layer and
    /// instance every noise image went to one digit (models/MODELS.md).
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<Norm>(Norm::NAMES), default_value = "batch")]
    pub norm: Norm,
    /// Batch size [default: 64; with --from, the source run's unless given: --batch 256 is the
    /// paper's].
    #[arg(long, conflicts_with = "recipe")]
    pub batch: Option<usize>,
    /// Train until this many steps in total [default: 10000, or no limit with --minutes].
    #[arg(long)]
    pub steps: Option<u64>,
    /// A time budget: stop when this many minutes of training have been spent in --out (the
    /// time of earlier invocations counts), the checkpoint saved, and exit 0; rerun with
    /// --resume and a larger budget to continue. With --steps too, whichever comes first. With
    /// --recipe: the budget split over the stages that have a `share` (default: the recipe's
    /// `minutes`, 15 for scene).
    #[arg(long, value_name = "M")]
    pub minutes: Option<f64>,
    /// Run folder: checkpoint, log, samples.
    #[arg(long, default_value = "runs/ign")]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start a new run in --out from another run's state (its folder): weights, BatchNorm
    /// statistics, Adam moments and step count carry over, and this command's --z-mix,
    /// --z-printed, --z-fonts, --z-tight, --z-bn, --augment, --lr, --lambda-restore,
    /// --restore-printed, --restore-match, --ema, and --batch, --lambda-idem and
    /// --lambda-tight (if given) apply from that step on (model, data, seed
    /// and the other loss weights stay the source run's). For recipe schedules such as "noise
    /// first, corruptions once generation has converged", or a lower learning rate to finish.
    #[arg(long, value_name = "RUN", conflicts_with = "resume")]
    pub from: Option<PathBuf>,
    /// Seed of initialisation, data order and noise.
    #[arg(long, conflicts_with = "recipe", default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate (with --from it applies from that step on: a lower rate to finish
    /// a run is a schedule too).
    #[arg(long, conflicts_with = "recipe", default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.5)]
    pub beta1: f64,
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, conflicts_with = "recipe", default_value_t = 20.0)]
    pub lambda_rec: f64,
    /// Weight of the idempotence term [default: 20; with --from, the source run's unless
    /// given, as after a reconstruction warm-up with 0].
    #[arg(long, conflicts_with = "recipe")]
    pub lambda_idem: Option<f64>,
    /// Weight of the tightness term [default: 2.5; with --from, the source run's unless given].
    /// With --lambda-idem 0 too, a step trains reconstruction alone (an autoencoder; f runs
    /// on the real images only, a third of the work).
    #[arg(long, conflicts_with = "recipe")]
    pub lambda_tight: Option<f64>,
    /// Tightness clamp `a`.
    #[arg(long, conflicts_with = "recipe", default_value_t = 1.5)]
    pub tight_clamp: f64,
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<Distance>(Distance::NAMES), default_value = "l1")]
    pub distance: Distance,
    /// Weight of a restoration term D(f(c(x)), x) over the corrupted z of --z-mix: f of a
    /// corrupted training image is pulled back to the image itself (a completed occlusion, a
    /// denoised background), not only onto some fixed point. 0 (default): off, the paper's
    /// objective; 20 weighs it as reconstruction. Applies from that step on with --from.
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.0)]
    pub lambda_restore: f64,
    /// With --lambda-restore and --z-printed: the restoration term also pulls f of each
    /// printed digit to the training digit of its class nearest to it (L1), a handwritten
    /// target for a printed input (needs labelled data). Applies from that step on with --from.
    #[arg(long, conflicts_with = "recipe")]
    pub restore_printed: bool,
    /// Which digits of its class a printed digit is restored to with --restore-printed:
    /// nearest (any, the nearest in L1; a bold glyph gets a thick digit) or typical (the
    /// nearest of those with the middle half of their class's ink, so that f also learns to
    /// bring bold and hairline faces to a handwritten stroke weight). Applies from that step on
    /// with --from.
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<crate::train::loss::RestoreMatch>(crate::train::loss::RestoreMatch::NAMES), default_value = "nearest")]
    pub restore_match: crate::train::loss::RestoreMatch,
    /// Noise fed as z: gaussian (MNIST) or freq (frequency-matched, for faces).
    #[arg(
        long,
        conflicts_with = "recipe",
        value_parser = choice::<NoiseKind>(NoiseKind::NAMES),
        default_value = "gaussian"
    )]
    pub noise: NoiseKind,
    /// Fraction of z drawn from corruptions of real training images (occluded, thick, thin,
    /// blurred, noisy-background, shifted/rotated digits) instead of noise, so that f learns
    /// to make those real too (0: noise only, the paper's MNIST recipe).
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.0)]
    pub z_mix: f64,
    /// Fraction of z rendered as printed digits (random digit, rotation, scale and stroke) from
    /// the faces of --z-fonts; `eval --ood` judges printed digits on other faces. 28x28 gray
    /// data only.
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.0)]
    pub z_printed: f64,
    /// Faces of --z-printed: base (DejaVu and Liberation, 7 faces: fonts-dejavu-core
    /// fonts-liberation2), wide (those and 48 more: italics, light to black weights,
    /// condensed, rounded, hand-lettered; the packages are named if one is missing) or a
    /// folder (every .ttf/.otf file in it, sorted by name; ./base for a folder named base).
    #[arg(
        long,
        group = "stage",
        value_name = "base|wide|DIR",
        default_value = "base"
    )]
    pub z_fonts: crate::train::ZFonts,
    /// Which z the tightness term sees: all (the paper's objective) or noise (corrupted and
    /// printed digits then feed the idempotence term alone).
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<crate::train::ZTight>(crate::train::ZTight::NAMES), default_value = "all")]
    pub z_tight: crate::train::ZTight,
    /// BatchNorm with --z-mix/--z-printed: shared (one batch of noise and digits) or separate
    /// (the noise and the digits in two batches, each with its own statistics).
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<crate::train::ZBatchNorm>(crate::train::ZBatchNorm::NAMES), default_value = "shared")]
    pub z_bn: crate::train::ZBatchNorm,
    /// What the real images go through before reconstruction sees them: none, or camera (per
    /// image and step: exposure x0.85-1.15, white balance x0.95-1.05 per channel, sensor noise
    /// of 1-4 grey levels, a jitter of up to 2 pixels, JPEG at quality 70-95), so that f keeps
    /// a fixed camera's nuisances instead of reporting them. Applies from that step on with
    /// --from.
    #[arg(long, conflicts_with = "recipe", value_parser = choice::<Augment>(Augment::NAMES), default_value = "none")]
    pub augment: Augment,
    /// Keep a moving average of the weights with this decay, saved in checkpoints and written
    /// by `export` (0.999: about the last 1,000 steps), so that the exported model stands for a
    /// stretch of training rather than its last step (0: off). Applies from that step on with
    /// --from, starting at the weights there.
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.0)]
    pub ema: f64,
    /// Write samples and the loss plot every N steps (0: never).
    #[arg(long, default_value_t = 500)]
    pub sample_every: u64,
    /// Write a checkpoint every N steps (and always at the end and on Ctrl-C).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Fraction held out for testing when the data has no split of its own.
    #[arg(long, conflicts_with = "recipe", default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Use at most this many training images (0: all).
    #[arg(long, conflicts_with = "recipe", default_value_t = 0)]
    pub limit: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl TrainCmd {
    /// `argv` (`ign-train train` first) parsed as `ign-train train` parses its arguments (a
    /// recipe's stages are parsed so); the error on one line.
    pub fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<TrainCmd> {
        #[derive(Parser)]
        struct Train {
            #[command(flatten)]
            cmd: TrainCmd,
        }
        Train::try_parse_from(argv).map(|t| t.cmd).map_err(|e| {
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !(l.is_empty() || l.starts_with("Usage:") || l.starts_with("For more")))
                .collect();
            anyhow::anyhow!("{}", lines.join(" ").trim_start_matches("error: "))
        })
    }

    /// Train as the command line says: a plain run, or the stages of `--recipe`.
    pub fn run(self) -> Result<()> {
        crate::set_threads(self.threads);
        if let Some(recipe) = &self.recipe {
            let recipe = crate::train::recipe::Recipe::load(recipe)?;
            let opts = crate::train::recipe::RecipeOptions {
                data: self.data.clone(),
                out: self.out.clone(),
                sample_every: self.sample_every,
                checkpoint_every: self.checkpoint_every,
                minutes: self.minutes,
                ..Default::default()
            };
            return crate::train::recipe::run(&recipe, &opts);
        }
        let (config, data_opts, opts) = self.settings()?;
        train::run(config, &self.data, &data_opts, &opts)?;
        Ok(())
    }

    /// The run these flags describe: its configuration, how to load the data, and the options
    /// of this invocation.
    pub fn settings(&self) -> Result<(TrainConfig, DataOptions, RunOptions)> {
        let data_opts = DataOptions {
            kind: self.dataset,
            image_size: self.image_size,
            channels: self.channels,
            test_fraction: self.test_fraction,
            limit: self.limit,
            classes: None,
        };
        // The model's shape comes from the data; peek at it with a cheap load of the settings.
        let (channels, image_size) = crate::data::peek_shape(&self.data, &data_opts)?;
        let name = self.name.clone().unwrap_or_else(|| {
            let p = if self.data.is_file() {
                self.data.parent().unwrap_or(&self.data)
            } else {
                &self.data
            };
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "custom".into())
        });
        let config = TrainConfig {
            model: ModelConfig {
                channels,
                image_size,
                width: self.width,
                norm: self.norm,
            },
            loss: LossConfig {
                lambda_rec: self.lambda_rec,
                lambda_idem: self
                    .lambda_idem
                    .unwrap_or(LossConfig::default().lambda_idem),
                lambda_tight: self
                    .lambda_tight
                    .unwrap_or(LossConfig::default().lambda_tight),
                tight_clamp: self.tight_clamp,
                distance: self.distance,
                lambda_restore: self.lambda_restore,
                restore_printed: self.restore_printed,
                restore_match: self.restore_match,
            },
            adam: AdamConfig {
                lr: self.lr,
                beta1: self.beta1,
                beta2: self.beta2,
                ..Default::default()
            },
            noise: self.noise,
            z_mix: self.z_mix,
            z_printed: self.z_printed,
            z_fonts: self.z_fonts.clone(),
            z_tight: self.z_tight,
            z_bn: self.z_bn,
            augment: self.augment,
            ema: self.ema,
            batch: self.batch.unwrap_or(64),
            seed: self.seed,
            test_fraction: self.test_fraction,
            data: self.data.display().to_string(),
            dataset_name: name,
            recipe: None,
        };
        if let Some(m) = self.minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
            bail!("--minutes {m}: give a budget above 0 minutes");
        }
        let steps = match (self.steps, self.minutes) {
            (Some(s), _) => s,
            (None, Some(_)) => u64::MAX,
            (None, None) => 10_000,
        };
        let opts = RunOptions {
            out: self.out.clone(),
            steps,
            minutes: self.minutes,
            resume: self.resume,
            from: self.from.clone(),
            from_batch: self.batch,
            from_weights: crate::train::session::FromWeights {
                lambda_idem: self.lambda_idem,
                lambda_tight: self.lambda_tight,
            },
            sample_every: self.sample_every,
            checkpoint_every: self.checkpoint_every,
            quiet: false,
        };
        Ok((config, data_opts, opts))
    }
}
