//! `ign-edge project`: parses into [`ProjectConfig`] and runs it ([`crate::app::project`]).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use super::args::{BackendArgs, ModelArgs};
use crate::app::project::{project, ProjectConfig};

/// Project images, .npy arrays or noise onto the model's manifold: f(x), f(f(x)), ...
///
/// Examples:
///   ign-edge project noise:8 --out samples.png
///   ign-edge project --model models/ign-mnist.onnx --steps 3 photo.jpg sketches/ --out grid.png
///   ign-edge project x.npy --out y.npy
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProjectCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// How many times to apply f (f, f², ... f^K).
    #[arg(long, short = 'k', default_value_t = 1)]
    pub steps: usize,
    /// Images per batch sent to the model.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Image files, folders, .npy (float32 NCHW) or noise:<N>[:<seed>].
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output: .png (grid: input, f, f², ... per row) or .npy (f^K, float32 NCHW).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

impl ProjectCmd {
    pub fn run(self) -> Result<()> {
        let c = ProjectConfig {
            model: self.model.into(),
            backend: self.backend.into(),
            steps: self.steps,
            batch: self.batch,
            inputs: self.inputs,
            out: self.out,
        };
        let s = project(&c)?;
        eprintln!("{}", s.line(&c.out));
        Ok(())
    }
}
