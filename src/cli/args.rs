//! Options shared by several subcommands, as clap parses them, and what they become in the
//! application layer: [`ModelArgs`] → [`ModelSpec`], [`BackendArgs`] → [`BackendOptions`].
//! Only the command line knows clap (docs/ARCHITECTURE.md, "Crates and layers").

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use std::path::PathBuf;

use crate::app::model_spec::ModelSpec;
use crate::backend::rknn::cores::NpuCores;
use crate::backend::select::{BackendKind, BackendOptions};
use crate::model::Precision;

/// A value parser for an enum of the layers below: `names` are listed in `--help` and
/// offered on a typo, and each parses with the type's own `FromStr`.
pub fn choice<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    PossibleValuesParser::new(names.iter().copied()).map(|s| match s.parse::<T>() {
        Ok(v) => v,
        Err(e) => unreachable!("{s} is listed but does not parse: {e}"),
    })
}

/// `--model`, `--threads`, `--precision`: which model to run and how.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
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
    #[arg(long, value_parser = choice::<Precision>(&Precision::NAMES))]
    pub precision: Option<Precision>,
}

impl From<ModelArgs> for ModelSpec {
    fn from(a: ModelArgs) -> Self {
        ModelSpec {
            model: a.model,
            threads: a.threads,
            precision: a.precision,
        }
    }
}

/// `--backend` and the NPU's options, of `project`, `run` and `bench`.
#[derive(Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// Backend: auto (rknn for .rknn models, else cpu), cpu or rknn.
    #[arg(long, default_value = "auto", value_parser = choice::<BackendKind>(&BackendKind::NAMES))]
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

impl From<BackendArgs> for BackendOptions {
    fn from(a: BackendArgs) -> Self {
        BackendOptions {
            kind: a.backend,
            npu_cores: a.npu_cores,
            rknn_lib: a.rknn_lib,
            npu_pass_through: a.npu_pass_through,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name `choice` lists parses (the parser would otherwise stop at `unreachable!`).
    #[test]
    fn every_listed_name_parses() {
        for n in Precision::NAMES {
            n.parse::<Precision>().unwrap();
        }
        for n in BackendKind::NAMES {
            n.parse::<BackendKind>().unwrap();
        }
        for n in crate::quantize::int8::Scheme::NAMES {
            n.parse::<crate::quantize::int8::Scheme>().unwrap();
        }
        for n in crate::pipeline::source::CameraFormat::NAMES {
            n.parse::<crate::pipeline::source::CameraFormat>().unwrap();
        }
        for n in crate::backend::rknn::prep::NpuPrecision::NAMES {
            n.parse::<crate::backend::rknn::prep::NpuPrecision>()
                .unwrap();
        }
    }
}
