//! `ign-train export`

use anyhow::Result;
use clap::Args;

use crate::cli::choice;
use std::path::PathBuf;

/// Export a checkpoint to the ONNX file that ign-edge runs.
///
/// BatchNorm is folded, LayerNorm written with standard ops, the batch axis is dynamic. A
/// BatchNorm model gets the statistics of real images (--bn-stats) and a second file,
/// M.noise.onnx, with those of noise: ign-edge and `eval` apply it first to noise inputs.
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
}

impl ExportCmd {
    pub fn run(self) -> Result<()> {
        let written = crate::export::export(
            &self.checkpoint,
            &self.out,
            self.bn_stats,
            self.data.as_deref(),
            self.raw_weights,
        )?;
        for p in written {
            let m = ign_core::model::Model::load(&p)?;
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
        Ok(())
    }
}
