//! `ign-edge demo`

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

use super::args::ModelArgs;
use crate::app::model_spec::ModelSpec;
use crate::tensor::ImageBatch;
use crate::{fsio, imaging, inputs};

/// A held-out MNIST test digit, bundled.
static DIGIT_PNG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/demo/digit.png"
));
/// A hand-drawn-looking sketch of a 7, bundled.
static SKETCH_PNG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/demo/sketch.png"
));

/// The out-of-the-box demo: the bundled model makes noise, a noisy digit and a sketch real.
///
/// Writes a grid (rows: 4 noise images, a noisy digit, a sketch; columns: input, f, f², f³)
/// and prints how long each step took. Needs no argument.
#[derive(Args, Debug)]
pub struct DemoCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output PNG.
    #[arg(long, short = 'o', default_value = "ign-demo.png")]
    pub out: PathBuf,
    /// Applications of f shown.
    #[arg(long, short = 'k', default_value_t = 3)]
    pub steps: usize,
}

fn decode_bundled(bytes: &[u8], info: &crate::model::ModelInfo) -> Result<ImageBatch> {
    let img = image::load_from_memory(bytes)?;
    ImageBatch::new(
        imaging::image_to_chw(&img, info.channels, info.height, info.width),
        [1, info.channels, info.height, info.width],
    )
}

impl DemoCmd {
    pub fn run(self) -> Result<()> {
        let spec = ModelSpec::from(self.model.clone());
        let steps = self.steps.max(1);
        let t = Instant::now();
        let model = spec.load()?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "[1/4] loaded {} ({}x{}x{}, {:.2} M params, {:.1} MFLOP) in {load_ms:.1} ms",
            model.info.path.display(),
            model.info.channels,
            model.info.height,
            model.info.width,
            model.info.params as f64 / 1e6,
            model.info.flops as f64 / 1e6
        );
        let t = Instant::now();
        let mut f = spec.projector(&model)?;
        eprintln!(
            "[2/4] optimized the plan for {} in {:.1} ms",
            f.name(),
            t.elapsed().as_secs_f64() * 1e3
        );
        let info = &model.info;
        let noise = inputs::noise_batch(info, 4, 0);
        let digit = decode_bundled(DIGIT_PNG, info)?;
        let mut noisy = digit.clone();
        let extra = inputs::noise_batch(info, 1, 7);
        for (v, e) in noisy.data.iter_mut().zip(&extra.data) {
            *v = (*v + 0.6 * e).clamp(-1.0, 1.0);
        }
        let sketch = decode_bundled(SKETCH_PNG, info)?;
        let batch = ImageBatch::concat(&[noise, noisy, sketch])?;
        let t = Instant::now();
        let mut outs: Vec<Vec<ImageBatch>> = vec![Vec::new(); steps];
        // batch 1, the hot path of the live loop
        for i in 0..batch.len() {
            let one = batch.slice(i, i + 1);
            // the 4 noise rows start with the model's noise variant, when it has one
            let ys = f.project_as(&one, steps, i < 4)?;
            for (k, o) in ys.into_iter().enumerate() {
                outs[k].push(o);
            }
        }
        let dt = t.elapsed().as_secs_f64() * 1e3;
        let runs = batch.len() * steps;
        eprintln!(
            "[3/4] projected {} inputs x {steps} steps (batch 1) in {dt:.1} ms: {:.3} ms per application of f",
            batch.len(),
            dt / runs as f64
        );
        let outs: Vec<ImageBatch> = outs
            .iter()
            .map(|o| ImageBatch::concat(o))
            .collect::<Result<_>>()?;
        let t = Instant::now();
        let g = imaging::projection_grid(&batch, &outs)?;
        fsio::save_png(&self.out, &g)?;
        eprintln!(
            "[4/4] wrote {} in {:.1} ms (rows: 4 noise, noisy digit, sketch; columns: input, f, f², ...)",
            self.out.display(),
            t.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    }
}
