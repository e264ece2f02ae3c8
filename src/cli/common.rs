//! Options shared by several subcommands, and the default model.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

use crate::backend::cpu::CpuBackend;
use crate::model::Model;

/// The model shipped with the repository and embedded in the binary.
pub const DEFAULT_MODEL: &str = "models/ign-mnist.onnx";

/// The default model's bytes, embedded so that `demo` works from any folder.
pub static EMBEDDED_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/ign-mnist.onnx"
));

/// Model and execution options.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// ONNX model file (default: the bundled models/ign-mnist.onnx).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Worker threads for tract's matrix kernels (1 is fastest at batch 1 on small models).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl ModelArgs {
    /// Load the chosen model, or the bundled one.
    pub fn load(&self) -> Result<Model> {
        match &self.model {
            Some(p) => Model::load(p),
            None => load_default_model(),
        }
    }

    /// The CPU backend for a loaded model.
    pub fn backend(&self, model: &Model) -> Result<CpuBackend> {
        CpuBackend::new(model, Some(self.threads))
    }
}

/// The bundled model: the file in the working tree if present, else the embedded copy.
pub fn load_default_model() -> Result<Model> {
    let p = Path::new(DEFAULT_MODEL);
    if p.exists() {
        Model::load(p)
    } else {
        Model::from_bytes(Path::new("<bundled ign-mnist.onnx>"), EMBEDDED_MODEL)
    }
}
