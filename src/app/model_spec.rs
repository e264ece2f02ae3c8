//! Which model to run and how: the model file (or the bundled one), threads and precision,
//! with a board profile's defaults merged once ([`ModelSpec::apply_board`]); and the bundled
//! model itself.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

use crate::backend::select::{self, is_rknn, BackendKind, BackendOptions, Opened};
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

/// Which model to run and how (what the `--model`, `--threads`, `--precision` options of
/// every command that runs one fill in).
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    /// The model file (`None`: the bundled models/ign-mnist.onnx).
    pub model: Option<PathBuf>,
    /// Worker threads for tract's matrix kernels (`None`: 1, fastest at batch 1 on small
    /// models; or the board profile's).
    pub threads: Option<usize>,
    /// Precision to run: the model's variant file beside it (M.fp16.onnx, M.int8.onnx) or,
    /// when there is none, a conversion on the fly (int8 then calibrates on noise only).
    pub precision: Option<Precision>,
}

impl ModelSpec {
    /// Fill what the user left unset from a board profile's defaults.
    pub fn apply_board(&mut self, board: &crate::board::Board) {
        self.threads.get_or_insert(board.defaults.threads);
        self.precision.get_or_insert(board.defaults.precision);
    }

    /// The threads asked for (1 when unset).
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or(1)
    }

    /// Open the model on the backend `opts` chooses: a `.rknn` file on the NPU (or, with
    /// `--backend auto`, the `.onnx` beside it on the CPU when the NPU or its runtime is
    /// missing), anything else loaded in the chosen precision and run on the CPU.
    pub fn open(&self, opts: &BackendOptions) -> Result<Opened> {
        let Some(path) = self.model.as_deref().filter(|p| is_rknn(p)) else {
            return opts.open_model(self.load()?, self.thread_count());
        };
        match opts.open_file(path) {
            Ok(o) => Ok(o),
            Err(e) if opts.kind == BackendKind::Auto => {
                let onnx = path.with_extension("onnx");
                if !onnx.exists() {
                    bail!(
                        "{e} (and no {} beside it to run on the CPU instead)",
                        onnx.display()
                    );
                }
                log::warn!("{e}; running {} on the CPU instead", onnx.display());
                let spec = ModelSpec {
                    model: Some(onnx),
                    ..self.clone()
                };
                opts.open_model(spec.load()?, spec.thread_count())
            }
            Err(e) => Err(e),
        }
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
        Ok(Projector::new(
            Box::new(self.backend(model)?),
            self.noise_backend(model)?,
        ))
    }

    /// The noise variant of `model` on the CPU with these threads, if it has one.
    pub fn noise_backend(&self, model: &Model) -> Result<Option<Box<CpuBackend>>> {
        self.noise_variant(model)?
            .map(|m| CpuBackend::new(&m, Some(self.thread_count())).map(Box::new))
            .transpose()
    }

    /// The CPU backend for a loaded model (a warning when it cannot run as asked).
    pub fn backend(&self, model: &Model) -> Result<CpuBackend> {
        select::cpu(model, self.thread_count())
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

/// Fill `--backend` from a board profile when the user left it at auto.
pub fn apply_board_to_backend(opts: &mut BackendOptions, board: &crate::board::Board) {
    if opts.kind == BackendKind::Auto {
        if let Ok(k) = board.defaults.backend.parse() {
            opts.kind = k;
        }
    }
}
