//! Which model to run and how: the model file (or the bundled one), threads and precision,
//! with a board profile's defaults merged once ([`ModelSpec::apply_board`]); and the bundled
//! model itself.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

use crate::backend::{cpu::CpuBackend, Projector};
use crate::model::{Model, Precision};

/// The model shipped with the repository and embedded in the binary.
pub const DEFAULT_MODEL: &str = "models/ign-mnist.onnx";

/// The default model's bytes, embedded so that `demo` works from any folder.
pub static EMBEDDED_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/ign-mnist.onnx"
));

/// The bundled model's noise variant (see [`crate::model::noise_variant_path`]).
pub static EMBEDDED_NOISE_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/ign-mnist.noise.onnx"
));

/// Which model to run and how (the `--model`, `--threads`, `--precision` options of every
/// command that runs one).
#[derive(Args, Debug, Clone, Default)]
pub struct ModelSpec {
    /// ONNX model file (default: the bundled models/ign-mnist.onnx).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Worker threads for tract's matrix kernels (default 1, fastest at batch 1 on small
    /// models; or the board profile's).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Precision to run: the model's variant file beside it (M.fp16.onnx, M.int8.onnx, made by
    /// `ign-edge quantize`) or, when there is none, a conversion on the fly (int8 then
    /// calibrates on noise only).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

impl ModelSpec {
    /// Fill what the user left unset from a board profile's defaults.
    pub fn apply_board(&mut self, board: &crate::board::Board) {
        self.threads.get_or_insert(board.defaults.threads);
        self.precision.get_or_insert(board.defaults.precision);
    }

    /// Load the chosen model (or the bundled one) in the chosen precision.
    pub fn load(&self) -> Result<Model> {
        let model = match &self.model {
            Some(p) => Model::load(p)?,
            None => load_default_model()?,
        };
        match self.precision {
            Some(p) if p != model.info.precision => crate::quantize::in_precision(model, p),
            _ => Ok(model),
        }
    }

    /// The noise variant of `model` (its first application to noise), if it has one.
    pub fn noise_variant(&self, model: &Model) -> Result<Option<Model>> {
        let p = crate::model::noise_variant_path(&model.info.path);
        if p.exists() {
            return Model::load(&p).map(Some);
        }
        if self.model.is_none() && !Path::new(DEFAULT_MODEL).exists() {
            let p = Path::new("<bundled ign-mnist.noise.onnx>");
            return Model::from_bytes(p, EMBEDDED_NOISE_MODEL).map(Some);
        }
        Ok(None)
    }

    /// `model` and its noise variant (when it has one) on the CPU, with these threads.
    pub fn projector(&self, model: &Model) -> Result<Projector<CpuBackend>> {
        let noise = self.noise_variant(model)?;
        let p = Projector::new(
            Box::new(self.backend(model)?),
            noise
                .map(|m| CpuBackend::new(&m, Some(self.threads.unwrap_or(1))).map(Box::new))
                .transpose()?,
        );
        Ok(p)
    }

    /// The CPU backend for a loaded model (prints a notice when an fp16 model runs in fp32).
    pub fn backend(&self, model: &Model) -> Result<CpuBackend> {
        let b = CpuBackend::new(model, Some(self.threads.unwrap_or(1)))?;
        if let Some(n) = b.notice() {
            log::warn!("{n}");
        }
        Ok(b)
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
