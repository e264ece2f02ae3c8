//! `ign-train eval`

use anyhow::{bail, Result};
use clap::Args;

use crate::cli::choice;
use std::path::PathBuf;

use crate::eval::{self, CandleBackend, EvalOptions};
use crate::z::noise::NoiseKind;
use ign_core::backend::Projector;

/// Evaluate a checkpoint or an exported ONNX model on held-out data.
///
/// Reports reconstruction, the idempotence gap, a classifier-feature Fréchet distance, the
/// class histogram of f(z), and writes pictures (samples.png, projections.png of noisy,
/// half-masked and sketched test images).
///
/// Example: ign-train eval --model models/ign-mnist.onnx --data ../shared/data/mnist-10k --out-dir models/ign-mnist
///
/// With --one-class, the one-class anomaly protocol instead (no model given: it trains one per
/// class): ign-train eval --one-class --data ../shared/data/mnist-10k --minutes-per-class 1.5
/// --threads 1 --out-dir runs/one-class-mnist --json one-class.json
#[derive(Args, Debug)]
pub struct EvalCmd {
    /// A checkpoint file, a run folder, or the run folder of a recipe (its last stage).
    #[arg(long, conflicts_with = "model", required_unless_present_any = ["model", "one_class"])]
    pub checkpoint: Option<PathBuf>,
    /// An exported .onnx model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The data (same forms as `train --data`); its test split is used.
    #[arg(long)]
    pub data: PathBuf,
    /// Noise samples for the generation metrics.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Noise kind (default: the checkpoint's, Gaussian for ONNX models).
    #[arg(long, value_parser = choice::<NoiseKind>(NoiseKind::NAMES))]
    pub noise: Option<NoiseKind>,
    /// Epochs of the evaluation classifier.
    #[arg(long, default_value_t = 3)]
    pub classifier_epochs: usize,
    /// Cache file of the evaluation classifier (default under runs/).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Folder for samples.png and projections.png; with --one-class, the folder of the
    /// per-class runs (default runs/one-class-<data folder's name>).
    #[arg(long, visible_alias = "out")]
    pub out_dir: Option<PathBuf>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A reference .onnx model (e.g. the fp32 original of an int8 or fp16 file): report how
    /// often f(z) gets the same top-1 class under both.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Also evaluate inputs other than noise (occluded, thick, thin, blurred, noisy-background,
    /// shifted and rotated test images, ...): accuracy and distance to real images of the
    /// input, f and f∘f per kind, with ood.png in --out-dir. The value is the test images per
    /// kind.
    #[arg(long, num_args = 0..=1, default_missing_value = "1000")]
    pub ood: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub one_class: crate::cli::one_class::OneClassArgs,
}

impl EvalCmd {
    pub fn run(self) -> Result<()> {
        crate::set_threads(self.threads);
        if self.one_class.one_class {
            return self
                .one_class
                .run(self.data, self.out_dir, self.json.as_deref());
        }
        let (mut projector, name, shape, noise) = match (&self.checkpoint, &self.model) {
            (Some(ck), _) => {
                let (m, c) = crate::train::checkpoint::load_model(ck)?;
                let shape = (m.config.channels, m.config.image_size);
                let name = format!("{} (step {})", ck.display(), c.step);
                let f: Projector = Projector::new(Box::new(CandleBackend(Box::new(m))), None);
                (f, name, shape, c.config.noise)
            }
            (None, Some(p)) => {
                let m = ign_core::model::Model::load(p)?;
                if m.info.height != m.info.width {
                    bail!("{}: eval needs square images", p.display());
                }
                let shape = (m.info.channels, m.info.height);
                // a BatchNorm model's variant for noise inputs (ign-train export writes it
                // beside): the projector finds it
                let f = Projector::cpu(&m, None)?;
                if f.has_noise_variant() {
                    eprintln!(
                        "f(z) by {} (BatchNorm statistics of noise)",
                        crate::export::noise_variant_path(p).display()
                    );
                }
                (
                    f.boxed(),
                    p.display().to_string(),
                    shape,
                    NoiseKind::Gaussian,
                )
            }
            (None, None) => bail!("pass --checkpoint or --model"),
        };
        let opts =
            EvalOptions {
                classifier_cache: Some(self.classifier.clone().unwrap_or_else(|| {
                    eval::default_classifier_cache(&self.data, shape.0, shape.1)
                })),
                data: self.data,
                samples: self.samples,
                seed: self.seed,
                noise: self.noise.unwrap_or(noise),
                classifier_epochs: self.classifier_epochs,
                out_dir: self.out_dir,
                ood: self.ood,
            };
        let mut reference = match &self.reference {
            Some(p) => {
                let m = ign_core::model::Model::load(p)?;
                if (m.info.channels, m.info.height) != shape {
                    bail!(
                        "{}: the reference model's shape differs from the evaluated one",
                        p.display()
                    );
                }
                // as before: the reference applies its main model to noise too
                let f = Projector::cpu_with(&m, None, None)?;
                Some((f.boxed(), p.display().to_string()))
            }
            None => None,
        };
        let reference = reference.as_mut().map(|(projector, name)| eval::Reference {
            projector,
            name: name.clone(),
        });
        let report = eval::evaluate(&mut projector, &name, &opts, shape, reference)?;
        print!("{}", eval::summary(&report));
        if let Some(j) = &self.json {
            ign_core::fsio::atomic_write(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
        }
        Ok(())
    }
}
