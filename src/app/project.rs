//! `project` as a plain configuration and the function that runs it: inputs through f, f², …
//! into a grid or a `.npy` file.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::app::model_spec::ModelSpec;
use crate::backend::select::BackendOptions;
use crate::backend::{Backend, Projector};
use crate::tensor::ImageBatch;
use crate::{fsio, imaging, inputs};

/// What `ign-edge project` does: which model, which inputs, how many steps, where to.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    pub model: ModelSpec,
    pub backend: BackendOptions,
    /// Applications of f (f, f², … f^steps).
    pub steps: usize,
    /// Images per batch sent to the model (a fixed-batch model takes its own).
    pub batch: usize,
    /// Image files, folders, `.npy` (float32 NCHW) or `noise:<N>[:<seed>]`.
    pub inputs: Vec<String>,
    /// `.png` (grid: input, f, f², … per row) or `.npy` (f^steps, float32 NCHW).
    pub out: PathBuf,
}

/// What a projection did, for the closing line.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    pub images: usize,
    pub steps: usize,
    /// The backend's name.
    pub backend: String,
    /// Time in the model, all batches.
    pub infer: Duration,
    /// From the start (loading included) to the first output.
    pub first_output: Duration,
}

impl ProjectSummary {
    /// One line: how many, with what, how fast, where to.
    pub fn line(&self, out: &std::path::Path) -> String {
        let ms = self.infer.as_secs_f64() * 1e3;
        format!(
            "projected {} input(s) x {} step(s) with {} in {ms:.1} ms ({:.2} ms per image per step; first output {:.1} ms after start) -> {}",
            self.images,
            self.steps,
            self.backend,
            ms / (self.images * self.steps).max(1) as f64,
            self.first_output.as_secs_f64() * 1e3,
            out.display()
        )
    }
}

/// The images per call for `n` inputs: the model's fixed batch (of which `n` must be a
/// multiple), else `wanted`.
pub(crate) fn batch_size(info: &crate::model::ModelInfo, wanted: usize, n: usize) -> Result<usize> {
    match info.fixed_batch {
        Some(fb) if !n.is_multiple_of(fb) => bail!(
            "{}: the model's batch is fixed to {fb}; give a multiple of {fb} inputs (got {n})",
            info.path.display()
        ),
        Some(fb) => Ok(fb),
        None => Ok(wanted.max(1)),
    }
}

/// Project `c.inputs` and write `c.out`. Inputs that are all noise go through the model's
/// noise variant first (BatchNorm models).
pub fn project(c: &ProjectConfig) -> Result<ProjectSummary> {
    if c.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let ext = c
        .out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let as_npy = match ext.as_deref() {
        Some("png") => false,
        Some("npy") => true,
        _ => bail!(
            "{}: the output must end in .png (a grid) or .npy (float32 NCHW)",
            c.out.display()
        ),
    };
    let t0 = Instant::now();
    let opened = c.model.open(&c.backend)?;
    let info = opened.info.clone();
    let inp = inputs::load_inputs(&c.inputs, &info)?;
    let all_noise = c
        .inputs
        .iter()
        .all(|s| matches!(inputs::parse_noise_spec(s), Ok(Some(_))));
    let noise = match (&opened.model, all_noise) {
        (Some(m), true) => c.model.noise_backend(m)?.map(|b| b as Box<dyn Backend>),
        _ => None,
    };
    let mut f = Projector::new(opened.backend, noise);
    let n = inp.batch.len();
    let chunk = batch_size(&info, c.batch, n)?;
    let mut steps: Vec<Vec<ImageBatch>> = vec![Vec::new(); c.steps];
    let mut first = None;
    let ti = Instant::now();
    for start in (0..n).step_by(chunk) {
        let part = inp.batch.slice(start, (start + chunk).min(n));
        let out = f.project_as(&part, c.steps, all_noise)?;
        first.get_or_insert(t0.elapsed());
        for (k, o) in out.into_iter().enumerate() {
            steps[k].push(o);
        }
    }
    let infer = ti.elapsed();
    let steps: Vec<ImageBatch> = steps
        .iter()
        .map(|s| ImageBatch::concat(s))
        .collect::<Result<_>>()?;
    if as_npy {
        inputs::write_npy(&c.out, steps.last().expect("steps >= 1"))?;
    } else {
        fsio::save_png(&c.out, &imaging::projection_grid(&inp.batch, &steps)?)?;
    }
    Ok(ProjectSummary {
        images: n,
        steps: c.steps,
        backend: f.name(),
        infer,
        first_output: first.unwrap_or_default(),
    })
}
