//! `ign-edge rknn-prep`: parses into [`PrepConfig`] and prepares the folder
//! ([`crate::backend::rknn::prep`]).

use anyhow::Result;
use clap::Args;

use crate::backend::rknn::prep::PrepConfig;

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
    #[command(flatten)]
    pub config: PrepConfig,
}

impl RknnPrepCmd {
    pub fn run(self) -> Result<()> {
        let p = self.config.prepare()?;
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
            self.config.out.display(),
            p.script.file_name().unwrap_or_default().to_string_lossy(),
            p.rknn_name,
            p.rknn_name,
        );
        Ok(())
    }
}
