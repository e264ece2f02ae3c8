//! `ign-train export`

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Export a checkpoint to the ONNX file that ign-edge runs.
///
/// BatchNorm is folded, LayerNorm written with standard ops, the batch axis is dynamic.
///
/// Example: ign-train export --checkpoint runs/mnist --out models/ign-mnist.onnx
#[derive(Args, Debug)]
pub struct ExportCmd {
    /// A checkpoint file or a run folder holding checkpoint.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output .onnx file.
    #[arg(long)]
    pub out: PathBuf,
}

impl ExportCmd {
    pub fn run(self) -> Result<()> {
        crate::export::export(&self.checkpoint, &self.out)?;
        let m = ign_edge::model::Model::load(&self.out)?;
        eprintln!(
            "wrote {} ({:.2} M params, {:.1} MFLOP per image; checked by loading it with tract)",
            self.out.display(),
            m.info.params as f64 / 1e6,
            m.info.flops as f64 / 1e6
        );
        Ok(())
    }
}
