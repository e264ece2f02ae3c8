//! `--backend cpu|rknn|auto`: open the chosen backend for a model file.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

use super::rknn::cores::NpuCores;
use super::Backend;
use crate::app::model_spec::ModelSpec;
use crate::model::{Model, ModelInfo};

/// Which backend runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// `rknn` for a `.rknn` model (falling back to the CPU with the `.onnx` beside it when the
    /// NPU or its runtime is missing), `cpu` otherwise.
    #[default]
    Auto,
    /// tract on the CPU (ONNX models, fp32/fp16/int8).
    Cpu,
    /// The Rockchip NPU (RK3588) through librknnrt.so (`.rknn` models; feature `rknn`).
    Rknn,
}

/// Backend options of `project`, `run` and `bench`.
#[derive(Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// Backend: auto (rknn for .rknn models, else cpu), cpu or rknn.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendKind,
    /// NPU cores for --backend rknn: auto, 0, 1, 2, 0-1, 0-2 (one context per core, used
    /// round-robin; frames stay in order).
    #[arg(long, default_value = "auto")]
    pub npu_cores: NpuCores,
    /// The NPU runtime library (default: $IGN_EDGE_RKNN_LIB, then librknnrt.so on the
    /// loader's path and in /usr/lib).
    #[arg(long)]
    pub rknn_lib: Option<PathBuf>,
    /// NPU int8 models: feed the model's own int8 tensor (pass_through) instead of uint8
    /// NHWC pixels that the runtime normalizes (the default, as in Rockchip's examples).
    #[arg(long)]
    pub npu_pass_through: bool,
}

/// An opened backend and what it knows of its model.
pub struct Opened {
    pub info: ModelInfo,
    pub backend: Box<dyn Backend>,
    /// The ONNX model, when the backend runs one (the CPU backend).
    pub model: Option<Model>,
}

/// Whether `p` names a compiled NPU model (`.rknn`).
pub fn is_rknn(p: &Path) -> bool {
    p.extension()
        .map(|e| e.eq_ignore_ascii_case("rknn"))
        .unwrap_or(false)
}

impl BackendArgs {
    /// Fill `--backend` from a board profile when the user left it at auto.
    pub fn apply_board(&mut self, board: &crate::board::Board) {
        if self.backend == BackendKind::Auto {
            if let Ok(k) = BackendKind::from_str(&board.defaults.backend, true) {
                self.backend = k;
            }
        }
    }

    /// Open the model of `model` on the chosen backend.
    pub fn open(&self, model: &ModelSpec) -> Result<Opened> {
        let path = model.model.clone();
        let rknn_model = path.as_deref().map(is_rknn).unwrap_or(false);
        match (self.backend, rknn_model) {
            (BackendKind::Rknn, false) => bail!(
                "{}: --backend rknn runs a .rknn model compiled by rknn-toolkit2 from the ONNX \
                 file (see `ign-edge rknn-prep --help` and boards/rk3588/README.md)",
                path.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the bundled model".into())
            ),
            (BackendKind::Cpu, true) => bail!(
                "{}: the CPU backend runs ONNX models; give the .onnx file or use --backend rknn",
                path.as_deref().expect("rknn path").display()
            ),
            (BackendKind::Cpu, false) | (BackendKind::Auto, false) => cpu(model),
            (kind, true) => {
                let p = path.expect("rknn path");
                match self.open_rknn(&p) {
                    Ok(o) => Ok(o),
                    Err(e) if kind == BackendKind::Auto => {
                        let onnx = p.with_extension("onnx");
                        if !onnx.exists() {
                            bail!(
                                "{e} (and no {} beside it to run on the CPU instead)",
                                onnx.display()
                            );
                        }
                        log::warn!("notice: {e}; running {} on the CPU instead", onnx.display());
                        let mut m = model.clone();
                        m.model = Some(onnx);
                        cpu(&m)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    #[cfg(feature = "rknn")]
    fn open_rknn(&self, path: &Path) -> Result<Opened> {
        let b = super::rknn::RknnBackend::open(
            path,
            &super::rknn::RknnOptions {
                lib: self.rknn_lib.clone(),
                cores: self.npu_cores.clone(),
                pass_through: self.npu_pass_through,
            },
        )?;
        Ok(Opened {
            info: b.info().clone(),
            backend: Box::new(b),
            model: None,
        })
    }

    #[cfg(not(feature = "rknn"))]
    fn open_rknn(&self, path: &Path) -> Result<Opened> {
        bail!(
            "{}: this ign-edge was built without the NPU backend; build it with \
             `cargo build --release --features rknn` (boards/cross-build.sh rk3588 does)",
            path.display()
        )
    }
}

fn cpu(model: &ModelSpec) -> Result<Opened> {
    let m = model.load()?;
    let b = model.backend(&m)?;
    Ok(Opened {
        info: m.info.clone(),
        backend: Box::new(b),
        model: Some(m),
    })
}
