//! `ign-train bench-step`

use anyhow::Result;
use clap::Args;
use std::time::Instant;

use crate::cli::choice;
use crate::data::Dataset;
use crate::model::{ModelConfig, Norm};
use crate::ops::{ConvKernels, Kernels, NormKernels};
use crate::train::loss::LossConfig;
use crate::train::optim::AdamConfig;
use crate::train::{TrainConfig, Trainer};
use crate::z::noise::NoiseKind;

/// Time IGN training steps on this CPU.
///
/// Times steps (4 forward passes + backward + Adam) and a batch-1 forward pass on random
/// data, so that the cost of a model size is known before training.
///
/// Example: ign-train bench-step --width 32 --batch 64 --conv candle --norm-ops candle
#[derive(Args, Debug)]
pub struct BenchStepCmd {
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 28)]
    pub image_size: usize,
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Convolutions: fast (ign-train's im2col/col2im + gemm kernels, what training runs) or
    /// candle (candle's own conv2d and conv_transpose2d).
    #[arg(long, value_parser = choice::<ConvKernels>(ConvKernels::NAMES), default_value = "fast")]
    pub conv: ConvKernels,
    /// Norm, bias and activation: fused (one op per block, what training runs) or candle
    /// (candle's elementwise ops and BatchNorm).
    #[arg(long, value_parser = choice::<NormKernels>(NormKernels::NAMES), default_value = "fused")]
    pub norm_ops: NormKernels,
    /// Normalization of the model (as train --norm).
    #[arg(long, value_parser = choice::<Norm>(Norm::NAMES), default_value = "batch")]
    pub norm: Norm,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `n` images of random pixels in the shape of `model`.
fn random_data(model: &ModelConfig, n: usize) -> Dataset {
    let len = n * model.channels * model.image_size * model.image_size;
    let mut s = 1u64;
    let images = (0..len)
        .map(|_| {
            s = crate::data::mix(s, 1, 9);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Dataset {
        images,
        labels: None,
        channels: model.channels,
        height: model.image_size,
        width: model.image_size,
    }
}

impl BenchStepCmd {
    pub fn run(self) -> Result<()> {
        crate::set_threads(self.threads);
        let model = ModelConfig {
            channels: self.channels,
            image_size: self.image_size,
            width: self.width,
            norm: self.norm,
        };
        model.validate()?;
        let data = random_data(&model, (self.batch * 4).max(64));
        let config = TrainConfig {
            model: model.clone(),
            loss: LossConfig::default(),
            adam: AdamConfig::default(),
            noise: NoiseKind::Gaussian,
            z_mix: 0.0,
            z_printed: 0.0,
            z_tight: Default::default(),
            z_fonts: Default::default(),
            z_bn: Default::default(),
            augment: Default::default(),
            ema: 0.0,
            batch: self.batch,
            seed: 0,
            test_fraction: 0.1,
            data: "random".into(),
            dataset_name: "bench".into(),
            recipe: None,
        };
        let mut t = Trainer::new(config, data.clone(), data)?;
        t.set_kernels(Kernels {
            conv: self.conv,
            norm: self.norm_ops,
        });
        for _ in 0..2 {
            t.step_once()?;
        }
        let mut times = Vec::new();
        for _ in 0..self.steps.max(1) {
            let t0 = Instant::now();
            t.step_once()?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let step = median(&mut times);
        let x = t.test.batch(&[0], &candle_core::Device::Cpu)?;
        let mut fw = Vec::new();
        for i in 0..30 {
            let t0 = Instant::now();
            let _ = t
                .model
                .forward_t(&x, false)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if i >= 5 {
                fw.push(t0.elapsed().as_secs_f64());
            }
        }
        let fwd = median(&mut fw);
        let threads = rayon::current_num_threads();
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "runtime": "ign-train", "conv": self.conv.to_string(), "norm_ops": self.norm_ops.to_string(),
                    "width": self.width, "batch": self.batch, "params": model.num_params(),
                    "threads": threads, "step_s": step, "images_per_s": self.batch as f64 / step,
                    "forward_b1_ms": fwd * 1e3,
                })
            );
        } else {
            println!(
                "ign-train ({} conv, {} norm ops) width {} ({} params) batch {} threads {threads}: {:.3} s per IGN step ({:.0} images/s); forward at batch 1: {:.2} ms",
                self.conv,
                self.norm_ops,
                self.width,
                model.num_params(),
                self.batch,
                step,
                self.batch as f64 / step,
                fwd * 1e3
            );
        }
        Ok(())
    }
}
