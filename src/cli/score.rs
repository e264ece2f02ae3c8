//! `ign-edge score`: parses into [`ScoreConfig`] and runs it ([`crate::app::score`]).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use super::args::{choice, BackendArgs, ModelArgs};
use crate::anomaly::ScoreKind;
use crate::app::score::{score, ScoreConfig};

/// Score how much each input does not belong to the scene a model was trained on.
///
/// A scene model maps frames of its scene to themselves; where f(x) differs from x, x holds
/// something the scene does not (an object left behind, a person, a smudge on the lens). Each
/// input gets a score, a verdict against the threshold the model was calibrated with
/// (`ign-train export` stores it; --threshold overrides it) and, with --heatmaps, a picture
/// of input | f(input) | heatmap.
///
/// Scores: smooth-max (default: the largest value of the 5x5-averaged per-pixel |x - f(x)|,
/// for small objects), mean (the mean |x - f(x)|, an autoencoder's error), idem (the
/// smoothed maximum of |f(x) - f(f(x))|) and sum (smooth-max + idem, f applied twice).
///
/// Examples:
///   ign-edge score --model scene.onnx frames/ --json scores.json
///   ign-edge score --model scene.onnx photo.jpg --heatmaps heat/ --threshold 0.3
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ScoreCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Image files, folders, .npy (float32 NCHW) or noise:<N>[:<seed>].
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Write the scores as JSON: {"threshold", "results": [{"input", "score", "anomalous"}]}.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write input | f(input) | heatmap per input into this folder.
    #[arg(long)]
    pub heatmaps: Option<PathBuf>,
    /// A score above this is anomalous (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// The score (default: the one the model was calibrated for, else smooth-max).
    #[arg(long, value_parser = choice::<ScoreKind>(&ScoreKind::NAMES))]
    pub score: Option<ScoreKind>,
}

impl ScoreCmd {
    pub fn run(self) -> Result<()> {
        let c = ScoreConfig {
            model: self.model.into(),
            backend: self.backend.into(),
            inputs: self.inputs,
            threshold: self.threshold,
            kind: self.score,
            heatmaps: self.heatmaps,
        };
        let r = score(&c)?;
        for s in &r.results {
            println!(
                "{:>9.4}  {:<9}  {}",
                s.score,
                if s.anomalous { "ANOMALY" } else { "ok" },
                s.input
            );
        }
        let flagged = r.results.iter().filter(|s| s.anomalous).count();
        eprintln!(
            "{} input(s), {flagged} above the threshold {} ({} score)",
            r.results.len(),
            r.threshold
                .map(|t| format!("{t:.4} (from the {})", r.threshold_from))
                .unwrap_or_else(|| "(none)".into()),
            r.score
        );
        if let Some(j) = &self.json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(&r)?.as_bytes())?;
        }
        Ok(())
    }
}
