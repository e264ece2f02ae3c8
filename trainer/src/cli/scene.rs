//! `ign-train scene`: the scene benchmark (make it, measure a model on it).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use crate::cli::choice;
use crate::scene::eval::{self, SceneEvalOptions};
use crate::scene::make::{self, MakeOptions};
use crate::scene::Kind;
use ign_core::anomaly::ScoreKind;

/// The scene benchmark: photos seen through a simulated fixed camera, with objects of 1-6% of
/// the frame drawn in, their masks, and the same frames without them.
#[derive(Args, Debug)]
pub struct SceneCmd {
    #[command(subcommand)]
    pub command: SceneCommand,
}

#[derive(Subcommand, Debug)]
pub enum SceneCommand {
    Make(MakeCmd),
    Eval(EvalCmd),
}

impl SceneCmd {
    pub fn run(self) -> Result<()> {
        match self.command {
            SceneCommand::Make(c) => c.run(),
            SceneCommand::Eval(c) => c.run(),
        }
    }
}

/// Make a scene benchmark folder from photos.
///
/// The first photo is the scene: its largest centred square at --size is the view of a fixed
/// camera, and every frame is that view through its own draw of the camera's nuisances
/// (--augment camera's: exposure and white-balance drift, sensor noise, a few pixels of
/// jitter, JPEG). The other photos give the foreign patches. Writes OUT/train (normal frames,
/// for `ign-train train --recipe scene --data OUT/train`), OUT/test/normal,
/// OUT/test/anomalous/KIND with OUT/test/masks/KIND and OUT/test/clean/KIND (the same frames
/// without the object), and OUT/manifest.json. Deterministic given --seed.
///
/// Example: ign-train scene make --photos /usr/share/backgrounds/mate/nature/Garden.jpg /usr/share/backgrounds/mate/nature --out bench
#[derive(Args, Debug)]
pub struct MakeCmd {
    /// Photos, files or folders (listed in sorted order): the first is the scene, the others
    /// give the foreign patches (a photo named twice counts once).
    #[arg(long, num_args = 1.., required = true)]
    pub photos: Vec<PathBuf>,
    /// The benchmark folder to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the frames, in pixels.
    #[arg(long, default_value_t = MakeOptions::default().size)]
    pub size: usize,
    /// Normal training frames.
    #[arg(long, default_value_t = MakeOptions::default().train)]
    pub train: usize,
    /// Normal test frames, on which `scene eval` measures the false-alarm rate (1,000 resolve
    /// a rate of 1% to about ±0.3%).
    #[arg(long, default_value_t = MakeOptions::default().normal)]
    pub normal: usize,
    /// Anomalous test frames of each kind.
    #[arg(long, default_value_t = MakeOptions::default().test)]
    pub test: usize,
    #[arg(long, default_value_t = MakeOptions::default().seed)]
    pub seed: u64,
    /// The kinds of anomalies [default: all].
    #[arg(long, num_args = 1.., value_parser = choice::<Kind>(Kind::NAMES))]
    pub kinds: Vec<Kind>,
}

impl MakeCmd {
    pub fn run(self) -> Result<()> {
        let mut photos: Vec<PathBuf> = Vec::new();
        for p in &self.photos {
            let listed = if p.is_dir() {
                ign_core::imaging::list_images(p)?
            } else {
                vec![p.clone()]
            };
            for f in listed {
                if !photos.iter().any(|q| ign_core::fsio::same_file(q, &f)) {
                    photos.push(f);
                }
            }
        }
        if photos.is_empty() {
            bail!("no photo in --photos");
        }
        let opts = MakeOptions {
            photos,
            size: self.size,
            train: self.train,
            normal: self.normal,
            test: self.test,
            seed: self.seed,
            kinds: if self.kinds.is_empty() {
                Kind::ALL.to_vec()
            } else {
                self.kinds
            },
        };
        let m = make::make(&self.out, &opts)?;
        println!(
            "{}: {} training frames, {} normal test frames, {} anomalous ({} of each of {}); scene {}",
            self.out.display(),
            m.train,
            m.normal,
            m.objects.len(),
            m.test,
            m.kinds.iter().map(|k| k.kind.to_string()).collect::<Vec<_>>().join(", "),
            m.photo
        );
        Ok(())
    }
}

/// Measure a scene model on a benchmark of `scene make`.
///
/// Scores every test frame as ign-edge score does (the model's score and calibrated threshold,
/// ign.anomaly.*) and reports, overall and per kind of anomaly: image AUROC (normal against
/// anomalous frames), pixel AUROC (the heatmap against the masks, over the anomalous frames),
/// the false-alarm rate on the normal test frames and the detection rate at the threshold, and
/// restoration: the PSNR of f(frame with the object) to the clean frame inside the mask,
/// beside the frame's own (the baseline) and f's outside the mask. Any file of a model's
/// family: M.onnx, M.int8.onnx, M.fp16.onnx.
///
/// Example: ign-train scene eval --bench bench --model models/scene/garden.onnx --json garden.json
#[derive(Args, Debug)]
pub struct EvalCmd {
    /// The benchmark folder (made by `ign-train scene make`).
    #[arg(long)]
    pub bench: PathBuf,
    /// The .onnx model (or its .int8.onnx / .fp16.onnx variant).
    #[arg(long)]
    pub model: PathBuf,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The score instead of the model's (ign.anomaly.score; smooth-max without one).
    #[arg(long, value_parser = choice::<ScoreKind>(&ScoreKind::NAMES))]
    pub score: Option<ScoreKind>,
    /// The threshold instead of the model's (ign.anomaly.threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl EvalCmd {
    pub fn run(self) -> Result<()> {
        let opts = SceneEvalOptions {
            bench: self.bench,
            model: self.model,
            threads: self.threads,
            score: self.score,
            threshold: self.threshold,
        };
        let report = eval::evaluate(&opts)?;
        print!("{}", eval::summary(&report));
        if let Some(j) = &self.json {
            ign_core::fsio::atomic_write(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
        }
        Ok(())
    }
}
