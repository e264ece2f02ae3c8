//! `ign-edge refine`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

use super::args::ModelArgs;
use crate::app::model_spec::ModelSpec;
use crate::backend::Backend;
use crate::{fsio, imaging, inputs, plot};

/// Apply f again and again: the sequence f, f², ..., f^K and how far each step still moves.
///
/// Prints mean|f^k − f^(k−1)| for k = 1..K (f^0 = the input): an idempotent model moves a lot
/// at k = 1 and hardly after. Writes the sequences as a grid (one row per input).
///
/// Example: ign-edge refine noise:4 drawing.png --steps 6 --out seq.png --plot dist.png
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RefineCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images, folders, .npy, IDX files or noise:<N>[:<seed>].
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// K: applications of f.
    #[arg(long, short = 'k', default_value_t = 5)]
    pub steps: usize,
    /// Output .png grid (input, f, f², ... per row).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Plot of the distance against k (.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The distances as CSV (k,mean_abs_change).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

impl RefineCmd {
    pub fn run(self) -> Result<()> {
        let spec = ModelSpec::from(self.model.clone());
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        let model = spec.load()?;
        let inp = inputs::load_inputs(&self.inputs, &model.info)?;
        let mut backend = spec.backend(&model)?;
        let seq = backend.project(&inp.batch, self.steps)?;
        let d = crate::tensor::step_distances(&inp.batch, &seq);
        println!("{:>3}  mean|f^k - f^(k-1)|", "k");
        for (k, v) in d.iter().enumerate() {
            println!("{:>3}  {v:.6}", k + 1);
        }
        fsio::save_png(&self.out, &imaging::projection_grid(&inp.batch, &seq)?)?;
        if let Some(p) = &self.plot {
            let series = plot::Series {
                name: "mean|f^k - f^(k-1)|".into(),
                points: d
                    .iter()
                    .enumerate()
                    .map(|(k, v)| ((k + 1) as f64, *v))
                    .collect(),
            };
            fsio::save_png(
                p,
                &plot::line_plot(
                    "refinement: change per application of f",
                    "k",
                    &[series],
                    480,
                    300,
                ),
            )?;
        }
        if let Some(c) = &self.csv {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["k", "mean_abs_change"])?;
            for (k, v) in d.iter().enumerate() {
                w.serialize((k + 1, v))?;
            }
            fsio::atomic_write(c, &w.into_inner()?)?;
        }
        eprintln!(
            "{} input(s), {} steps -> {}",
            inp.batch.len(),
            self.steps,
            self.out.display()
        );
        Ok(())
    }
}
