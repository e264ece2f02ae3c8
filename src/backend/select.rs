//! `--backend cpu|rknn|auto`: open the chosen backend for a loaded ONNX model or a compiled
//! NPU model file. Which model, in which precision, and the fallback from the NPU to the CPU
//! are the application's ([`crate::app::model_spec::ModelSpec::open`]).

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

use super::cpu::CpuBackend;
use super::rknn::cores::NpuCores;
use super::Backend;
use crate::model::{Model, ModelInfo};

/// Which backend runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl BackendKind {
    /// The names `--backend` takes, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["auto", "cpu", "rknn"];
}

impl std::str::FromStr for BackendKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "rknn" => Ok(BackendKind::Rknn),
            _ => bail!("{s}: not a backend; use auto, cpu or rknn"),
        }
    }
}

/// How to open a backend: which one, and the NPU's settings.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    pub kind: BackendKind,
    /// NPU cores, one context each, used round-robin.
    pub npu_cores: NpuCores,
    /// The NPU runtime library (default: `$IGN_EDGE_RKNN_LIB`, then the loader's path).
    pub rknn_lib: Option<PathBuf>,
    /// Feed NPU int8 models their own int8 tensor instead of uint8 pixels.
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

impl BackendOptions {
    /// Run a loaded ONNX model on the CPU with `threads` (refused with `--backend rknn`,
    /// which runs compiled `.rknn` files).
    pub fn open_model(&self, model: Model, threads: usize) -> Result<Opened> {
        if self.kind == BackendKind::Rknn {
            bail!(
                "{}: --backend rknn runs a .rknn model compiled by rknn-toolkit2 from the ONNX \
                 file (see `ign-edge rknn-prep --help` and boards/rk3588/README.md)",
                model.info.path.display()
            );
        }
        let b = cpu(&model, threads)?;
        Ok(Opened {
            info: model.info.clone(),
            backend: Box::new(b),
            model: Some(model),
        })
    }

    /// Open a compiled NPU model file (refused with `--backend cpu`).
    pub fn open_file(&self, path: &Path) -> Result<Opened> {
        if self.kind == BackendKind::Cpu {
            bail!(
                "{}: the CPU backend runs ONNX models; give the .onnx file or use --backend rknn",
                path.display()
            );
        }
        self.open_rknn(path)
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

/// The CPU backend of `model` on `threads`, with a warning when it cannot run as asked (an
/// fp16 model on a CPU without fp16 arithmetic, threads that measured slower than one).
pub fn cpu(model: &Model, threads: usize) -> Result<CpuBackend> {
    let b = CpuBackend::new(model, Some(threads))?;
    if let Some(n) = b.notice() {
        log::warn!("{n}");
    }
    Ok(b)
}
