//! `ign-edge quantize`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

use crate::fsio;
use crate::model::{ModelError, Precision};
use crate::quantize::{self, calib::CalibSizes, QuantizeOptions};

/// Make an int8 or fp16 copy of an fp32 model, and measure how close it stays.
///
/// int8 (default scheme `fused`): transposed convolutions are rewritten as Conv +
/// DepthToSpace, channel ranges equalized across layers, and every convolution becomes a
/// QLinearConv with int8 weights and activations that tract requantizes inside its integer
/// kernel; activations run as lookup tables, the first conv and the dense layers in float on
/// int8 weights. Ranges come from the calibration images (min-max and percentiles are tried,
/// then refined per tensor; the best on held-out images wins). Below the fidelity floor
/// (--min-psnr, 40 dB), the convs that give back the most fidelity per multiply-add compute
/// in float too.
/// fp16: weights stored as half floats. Both are standard ONNX that tract and onnxruntime run.
///
/// Examples:
///   ign-edge quantize --model models/ign-mnist.onnx --precision int8 \
///       --calib ../data/mnist/t10k-images-idx3-ubyte.gz --out models/ign-mnist.int8.onnx
///   ign-edge quantize --model models/ign-mnist.onnx --precision fp16 --report fp16.json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct QuantizeCmd {
    /// The fp32 ONNX model.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// int8 or fp16.
    #[arg(long, value_parser = super::args::choice::<Precision>(&Precision::NAMES))]
    pub precision: Precision,
    /// Calibration images: an IDX file, an image folder, a .npy, or noise:<N>[:<seed>].
    /// Noise and f(noise) are always added (at k >= 2 the model sees its own outputs).
    /// Default: noise only; real images give better int8 ranges.
    #[arg(long)]
    pub calib: Option<String>,
    /// Real calibration images used at most (the last ones are held out for the report).
    #[arg(long, default_value_t = 256)]
    pub calib_images: usize,
    /// Output model (default: MODEL with .onnx replaced by .<precision>.onnx).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Write the fidelity report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Graph form: fused (int8 end to end, the fastest in tract: 0.92x fp32 on ign-mnist),
    /// conv-integer (int32 out, rescaled in float between layers: 1.14x) or q-linear-conv
    /// (uint8, per-channel weights, dequantized between layers).
    #[arg(long, default_value = "fused", value_parser = super::args::choice::<quantize::int8::Scheme>(&quantize::int8::Scheme::NAMES))]
    pub scheme: quantize::int8::Scheme,
    /// Fidelity floor of the fused scheme, in dB: while f's PSNR against fp32 on the held-out
    /// real images or on noise is below it, the integer conv that gains the most per
    /// multiply-add computes in float (on its int8 weights) instead, up to half of them;
    /// nothing moves when even all of them in float would miss it. 0 turns it off (every conv
    /// that can be int8 is).
    #[arg(long, default_value_t = quantize::DEFAULT_MIN_PSNR_DB)]
    pub min_psnr: f64,
    /// Batch-1 runs per model for the latency comparison.
    #[arg(long, default_value_t = 200)]
    pub latency_runs: usize,
}

impl QuantizeCmd {
    pub fn run(self) -> Result<()> {
        if self.precision == Precision::Fp32 {
            bail!("--precision fp32: nothing to do; pick int8 or fp16");
        }
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| quantize::variant_path(&self.model, self.precision));
        if out == self.model || crate::fsio::same_file(&out, &self.model) {
            bail!(ModelError(format!(
                "{}: --out would overwrite the fp32 model; pick another file",
                out.display()
            )));
        }
        let t0 = Instant::now();
        let opts = QuantizeOptions {
            precision: self.precision,
            calib: self.calib.clone(),
            sizes: CalibSizes {
                real: self.calib_images.max(1),
                ..Default::default()
            },
            latency_runs: self.latency_runs.max(25),
            scheme: self.scheme,
            min_psnr_db: self.min_psnr.max(0.0),
            ..Default::default()
        };
        let q = quantize::quantize(&self.model, &opts)?;
        fsio::atomic_write(&out, &q.bytes)?;
        let report = q.report.expect("measured");
        print!("{}", quantize::table(&report));
        if let Some(p) = &self.report {
            let mut json = serde_json::to_vec_pretty(&report)?;
            json.push(b'\n');
            fsio::atomic_write(p, &json)?;
        }
        println!(
            "wrote {} ({} bytes) in {:.1} s",
            out.display(),
            q.bytes.len(),
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
