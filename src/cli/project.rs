//! `ign-edge project`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

use crate::app::model_spec::ModelSpec;
use crate::backend::select::BackendArgs;
use crate::backend::{cpu::CpuBackend, Backend, Projector};
use crate::{fsio, imaging, inputs};

/// Project images, .npy arrays or noise onto the model's manifold: f(x), f(f(x)), ...
///
/// Examples:
///   ign-edge project noise:8 --out samples.png
///   ign-edge project --model models/ign-mnist.onnx --steps 3 photo.jpg sketches/ --out grid.png
///   ign-edge project x.npy --out y.npy
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProjectCmd {
    #[command(flatten)]
    pub model: ModelSpec,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// How many times to apply f (f, f², ... f^K).
    #[arg(long, short = 'k', default_value_t = 1)]
    pub steps: usize,
    /// Images per batch sent to the model.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Image files, folders, .npy (float32 NCHW) or noise:<N>[:<seed>].
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output: .png (grid: input, f, f², ... per row) or .npy (f^K, float32 NCHW).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

impl ProjectCmd {
    pub fn run(self) -> Result<()> {
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        let ext = self
            .out
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        let as_npy = match ext.as_deref() {
            Some("png") => false,
            Some("npy") => true,
            _ => bail!(
                "{}: the output must end in .png (a grid) or .npy (float32 NCHW)",
                self.out.display()
            ),
        };
        let t0 = Instant::now();
        let opened = self.backend.open(&self.model)?;
        let info = &opened.info;
        let inp = inputs::load_inputs(&self.inputs, info)?;
        // noise inputs go through the model's noise variant first (BatchNorm models)
        let all_noise = self
            .inputs
            .iter()
            .all(|s| matches!(inputs::parse_noise_spec(s), Ok(Some(_))));
        let noise = match (&opened.model, all_noise) {
            (Some(m), true) => self
                .model
                .noise_variant(m)?
                .map(|n| {
                    CpuBackend::new(&n, Some(self.model.threads.unwrap_or(1)))
                        .map(|b| Box::new(b) as Box<dyn Backend>)
                })
                .transpose()?,
            _ => None,
        };
        let mut f = Projector::new(opened.backend, noise);
        let chunk = info.fixed_batch.unwrap_or(self.batch.max(1));
        let n = inp.batch.len();
        if let Some(fb) = info.fixed_batch {
            if n % fb != 0 {
                bail!(
                    "{}: the model's batch is fixed to {fb}; give a multiple of {fb} inputs (got {n})",
                    info.path.display()
                );
            }
        }
        let mut steps: Vec<Vec<crate::tensor::ImageBatch>> = vec![Vec::new(); self.steps];
        let mut first = None;
        let ti = Instant::now();
        for start in (0..n).step_by(chunk) {
            let part = inp.batch.slice(start, (start + chunk).min(n));
            let out = f.project_as(&part, self.steps, all_noise)?;
            first.get_or_insert(t0.elapsed());
            for (k, o) in out.into_iter().enumerate() {
                steps[k].push(o);
            }
        }
        let infer = ti.elapsed();
        let steps: Vec<crate::tensor::ImageBatch> = steps
            .iter()
            .map(|s| crate::tensor::ImageBatch::concat(s))
            .collect::<Result<_>>()?;
        if as_npy {
            inputs::write_npy(&self.out, steps.last().expect("steps >= 1"))?;
        } else {
            let g = imaging::projection_grid(&inp.batch, &steps)?;
            fsio::save_png(&self.out, &g)?;
        }
        eprintln!(
            "projected {n} input(s) x {} step(s) with {} in {:.1} ms ({:.2} ms per image per step; first output {:.1} ms after start) -> {}",
            self.steps,
            f.name(),
            infer.as_secs_f64() * 1e3,
            infer.as_secs_f64() * 1e3 / (n * self.steps) as f64,
            first.unwrap_or_default().as_secs_f64() * 1e3,
            self.out.display()
        );
        Ok(())
    }
}
