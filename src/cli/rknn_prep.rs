//! `ign-edge rknn-prep`: parses into [`PrepConfig`] and prepares the folder
//! ([`crate::backend::rknn::prep`]).

use anyhow::Result;
use clap::Args;

use std::path::PathBuf;

use super::args::choice;
use crate::backend::rknn::prep::{NpuPrecision, PrepConfig};

/// Prepare a model for the Rockchip NPU: calibration images, dataset.txt and the exact
/// rknn-toolkit2 conversion script.
///
/// Rockchip's compiler (rknn-toolkit2, Python, x86_64 or aarch64 Linux) is the one host-side
/// step; the board runs the .rknn file with ign-edge alone. The model is compiled with
/// mean 127.5 and std 127.5, so a uint8 pixel u means (u - 127.5) / 127.5, the [-1, 1] scale
/// the model was trained on; ign-edge feeds the NPU accordingly.
///
/// Example:
///   ign-edge rknn-prep --model models/ign-mnist.onnx --calib ../shared/data/mnist-10k --out rknn/
///   # on a host with `pip install rknn-toolkit2`:
///   cd rknn && python3 convert_rknn.py
///   # on the board:
///   ign-edge run --model ign-mnist.rknn --backend rknn --npu-cores 0-2
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RknnPrepCmd {
    /// The fp32 ONNX model.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Calibration images: an IDX file, a folder with IDX files or images, an image, a .npy
    /// (needed for int8).
    #[arg(long)]
    pub calib: Option<String>,
    /// Output folder (created).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// How many calibration images to write.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// What the NPU computes in: int8 (calibrated on --calib, fastest) or fp16.
    #[arg(long, default_value = "int8", value_parser = choice::<NpuPrecision>(&NpuPrecision::NAMES))]
    pub precision: NpuPrecision,
}

impl RknnPrepCmd {
    pub fn run(self) -> Result<()> {
        let config = PrepConfig {
            model: self.model,
            calib: self.calib,
            out: self.out,
            count: self.count,
            precision: self.precision,
        };
        let p = config.prepare()?;
        if p.fused > 0 {
            eprintln!(
                "fused {} LayerNorm(s) into LayerNormalization for rknn-toolkit2 (which cannot build the \
                 exported pattern); checked with tract: max |difference| {:.1e} on 8 images",
                p.fused, p.fuse_error
            );
        }
        println!(
            "wrote {} {}and {}\n\nNext, on an x86_64 or aarch64 Linux host with Python 3.8-3.12:\n  \
             pip install rknn-toolkit2\n  cd {} && python3 {}\nthen copy {} to the board and run:\n  \
             ign-edge run --model {} --backend rknn --npu-cores 0-2",
            p.model.display(),
            p.dataset
                .as_ref()
                .map(|d| format!("{} (+ calib/) ", d.display()))
                .unwrap_or_default(),
            p.script.display(),
            config.out.display(),
            p.script.file_name().unwrap_or_default().to_string_lossy(),
            p.rknn_name,
            p.rknn_name,
        );
        Ok(())
    }
}
