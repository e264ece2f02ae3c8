//! `ign-train export`

use anyhow::{bail, Result};
use clap::Args;
use ign_core::anomaly::ScoreKind;

use crate::calibrate::{CalibrationOptions, DEFAULT_FALSE_ALARM_RATE};
use crate::export::{Calibrate, ExportOptions};

use crate::cli::choice;
use std::path::PathBuf;

/// Export a checkpoint to the ONNX file that ign-edge runs.
///
/// BatchNorm is folded, LayerNorm written with standard ops, the batch axis is dynamic. A
/// BatchNorm model gets the statistics of real images (--bn-stats) and a second file,
/// M.noise.onnx, with those of noise: ign-edge and `eval` apply it first to noise inputs.
///
/// A model of a scene (a run on a folder of frames) gets its anomaly threshold, calibrated on
/// the run's held-out frames for --false-alarm-rate.
///
/// Example: ign-train export --checkpoint runs/mnist --out models/ign-mnist.onnx
#[derive(Args, Debug)]
pub struct ExportCmd {
    /// A checkpoint file, a run folder holding checkpoint.safetensors, or the run folder of a
    /// recipe (`train --recipe ... --out RUN`: its last stage; the model records the recipe as
    /// ign.recipe).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output .onnx file.
    #[arg(long)]
    pub out: PathBuf,
    /// BatchNorm models: the statistics to fold in (data: real images; noise; running: the
    /// training averages, which mix both and collapse f(z)).
    #[arg(long, value_parser = choice::<crate::train::bnstats::BnStats>(crate::train::bnstats::BnStats::NAMES), default_value = "data")]
    pub bn_stats: crate::train::bnstats::BnStats,
    /// The training data for --bn-stats data (default: the run's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A run trained with --ema exports its moving average of the weights; this exports the
    /// last step's weights instead.
    #[arg(long)]
    pub raw_weights: bool,
    /// Scene models (runs on a folder of images): the share of the run's held-out normal
    /// frames (its test split) allowed above the anomaly threshold, which export calibrates
    /// on them with the exported model, as ign-edge scores, and stores in the model
    /// (ign.anomaly.*) [default: 0.01]. Given for a run on IDX data, it calibrates that too.
    #[arg(long, value_name = "RATE", conflicts_with = "no_threshold")]
    pub false_alarm_rate: Option<f64>,
    /// Store this anomaly threshold instead of the calibrated one (the held-out frames are
    /// still scored, to report the rate it gives).
    #[arg(long, value_name = "T", conflicts_with = "no_threshold")]
    pub threshold: Option<f32>,
    /// The anomaly score the threshold is for: smooth-max (the largest 5x5 mean of |x - f(x)|),
    /// mean, idem (of |f(x) - f(f(x))|) or sum (smooth-max + idem) [default: smooth-max].
    #[arg(long, value_parser = choice::<ScoreKind>(&ScoreKind::NAMES), conflicts_with = "no_threshold")]
    pub score: Option<ScoreKind>,
    /// Store no anomaly threshold, even for a run on a folder of images.
    #[arg(long)]
    pub no_threshold: bool,
}

impl ExportCmd {
    /// The export options these flags describe.
    pub fn options(&self) -> Result<ExportOptions> {
        let rate = self.false_alarm_rate.unwrap_or(DEFAULT_FALSE_ALARM_RATE);
        if !(0.0..1.0).contains(&rate) {
            bail!("--false-alarm-rate {rate} must be at least 0 and below 1 (0.01: 1% of normal frames)");
        }
        let asked =
            self.false_alarm_rate.is_some() || self.threshold.is_some() || self.score.is_some();
        Ok(ExportOptions {
            stats: self.bn_stats,
            data: self.data.clone(),
            raw_weights: self.raw_weights,
            calibrate: match (self.no_threshold, asked) {
                (true, _) => Calibrate::Never,
                (false, true) => Calibrate::Always,
                (false, false) => Calibrate::Auto,
            },
            calibration: CalibrationOptions {
                false_alarm_rate: rate,
                threshold: self.threshold,
                score: self.score.unwrap_or_default(),
            },
        })
    }

    pub fn run(self) -> Result<()> {
        let exported = crate::export::export_with(&self.checkpoint, &self.out, &self.options()?)?;
        for p in &exported.files {
            let m = ign_core::model::Model::load(p)?;
            eprintln!(
                "wrote {} ({:.2} M params, {:.1} MFLOP per image{}; checked by loading it with tract)",
                p.display(),
                m.info.params as f64 / 1e6,
                m.info.flops as f64 / 1e6,
                m.info
                    .metadata
                    .get("ign.bn_stats")
                    .map(|s| format!(", BatchNorm statistics of {s}"))
                    .unwrap_or_default()
            );
        }
        if let Some(c) = &exported.calibration {
            eprintln!("{}", c.summary());
        }
        Ok(())
    }
}
