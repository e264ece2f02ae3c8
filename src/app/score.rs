//! `score` as a plain configuration and the function that runs it: how much each input does
//! not look like the scene a model was trained on, with a verdict against the model's
//! calibrated threshold and a heatmap of where ([`crate::anomaly`]).

use anyhow::{bail, Result};
use serde::Serialize;
use std::path::PathBuf;

use crate::anomaly::{self, ScoreKind};
use crate::app::model_spec::ModelSpec;
use crate::backend::select::BackendOptions;
use crate::model::metadata::keys;
use crate::model::ModelInfo;
use crate::tensor::ImageBatch;
use crate::{fsio, inputs};

/// What `ign-edge score` does.
#[derive(Debug, Clone)]
pub struct ScoreConfig {
    pub model: ModelSpec,
    pub backend: BackendOptions,
    /// Image files, folders, `.npy` or `noise:<N>[:<seed>]`, as `project` takes them.
    pub inputs: Vec<String>,
    /// Overrides the model's calibrated threshold.
    pub threshold: Option<f32>,
    /// Overrides the model's score (default: the one its threshold was calibrated for).
    pub kind: Option<ScoreKind>,
    /// Write `input | f(input) | heatmap` per input into this folder.
    pub heatmaps: Option<PathBuf>,
}

/// One input's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreResult {
    pub input: String,
    pub score: f32,
    pub anomalous: bool,
    /// Where the heatmap peaks, `[x, y]` in model pixels.
    pub peak: [usize; 2],
}

/// What `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub schema: u32,
    pub model: String,
    pub score: String,
    /// The threshold used (`null`: none known, nothing is flagged).
    pub threshold: Option<f32>,
    /// Where it came from: `model` (its metadata), `option` (`--threshold`) or `none`.
    pub threshold_from: String,
    pub results: Vec<ScoreResult>,
}

/// The threshold (and where it came from: `option`, `model` or `none`) and the score kind of
/// `info` (its `ign.anomaly.*` metadata), as `threshold` and `kind` override them. The model's
/// threshold holds only for the score it was calibrated for.
pub fn calibration(
    threshold: Option<f32>,
    kind: Option<ScoreKind>,
    info: &ModelInfo,
) -> Result<(Option<f32>, &'static str, ScoreKind)> {
    if threshold.is_some_and(|t| !t.is_finite() || t < 0.0) {
        bail!("--threshold must be a finite score of at least 0");
    }
    let meta = |k: &str| info.metadata.get(k).map(|s| s.trim().to_string());
    let calibrated_for = meta(keys::ANOMALY_SCORE);
    let chosen = match (kind, &calibrated_for) {
        (Some(k), _) => k,
        (None, Some(s)) => s.parse().map_err(|e| {
            anyhow::anyhow!("{}: {}: {e}", info.path.display(), keys::ANOMALY_SCORE)
        })?,
        (None, None) => ScoreKind::default(),
    };
    let from_model = match meta(keys::ANOMALY_THRESHOLD) {
        Some(t) => Some(
            t.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: {} is {t:?}, not a number; re-export the model or give --threshold",
                        info.path.display(),
                        keys::ANOMALY_THRESHOLD
                    )
                })?,
        ),
        None => None,
    };
    let same_score = kind.is_none_or(|k| Some(k.as_str()) == calibrated_for.as_deref());
    Ok(match (threshold, from_model) {
        (Some(t), _) => (Some(t), "option", chosen),
        (None, Some(t)) if same_score => (Some(t), "model", chosen),
        _ => (None, "none", chosen),
    })
}

/// Score every input of `c`.
pub fn score(c: &ScoreConfig) -> Result<ScoreReport> {
    let opened = c.model.open(&c.backend)?;
    let info = opened.info.clone();
    let (threshold, threshold_from, kind) = calibration(c.threshold, c.kind, &info)?;
    if threshold.is_none() {
        log::warn!(
            "{}: no anomaly threshold for the {} score (ign-train export calibrates one for scene models); give --threshold to flag inputs",
            info.path.display(),
            kind.as_str()
        );
    }
    let inp = inputs::load_inputs(&c.inputs, &info)?;
    let mut backend = opened.backend;
    let shape = (info.channels, info.height, info.width);
    let n = inp.batch.len();
    let chunk = crate::app::project::batch_size(&info, 16, n)?;
    if let Some(dir) = &c.heatmaps {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create the folder ({e})", dir.display()))?;
    }
    let mut results = Vec::with_capacity(n);
    for start in (0..n).step_by(chunk) {
        let x = inp.batch.slice(start, (start + chunk).min(n));
        let outs = backend.project(&x, kind.applications())?;
        for i in 0..x.len() {
            let ffx = outs.get(1).map(|o| o.image(i));
            let s = anomaly::score(kind, x.image(i), outs[0].image(i), ffx, shape)?;
            let label = &inp.labels[start + i];
            if let Some(dir) = &c.heatmaps {
                let file = dir.join(format!("{:04}-{}.png", start + i, file_safe(label)));
                fsio::save_png(&file, &panels(&x, &outs[0], i, &s.map, threshold, &info))?;
            }
            let (px, py) = s.peak(info.width);
            results.push(ScoreResult {
                input: label.clone(),
                score: s.score,
                anomalous: threshold.is_some_and(|t| s.score > t),
                peak: [px, py],
            });
        }
    }
    Ok(ScoreReport {
        schema: 1,
        model: info.path.display().to_string(),
        score: kind.as_str().into(),
        threshold,
        threshold_from: threshold_from.into(),
        results,
    })
}

/// `label` with only letters, digits, `.`, `-` and `_` (the rest `_`), at most 60 characters.
fn file_safe(label: &str) -> String {
    let name = label.rsplit('/').next().unwrap_or(label);
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect()
}

/// `input | f(input) | heatmap` of image `i`, each panel scaled 4×; the heatmap runs from
/// black through red to yellow, full scale at twice the threshold (or the map's maximum).
fn panels(
    x: &ImageBatch,
    fx: &ImageBatch,
    i: usize,
    map: &[f32],
    threshold: Option<f32>,
    info: &ModelInfo,
) -> image::RgbImage {
    let (c, h, w) = (info.channels, info.height, info.width);
    let top = map.iter().copied().fold(1e-6f32, f32::max);
    let full = threshold.map_or(top, |t| 2.0 * t);
    let heat = image::RgbImage::from_fn(w as u32, h as u32, |px, py| {
        let [r, g] = anomaly::heat_colour(map[py as usize * w + px as usize], full);
        image::Rgb([(r * 255.0) as u8, (g * 255.0) as u8, 0])
    });
    let tiles = vec![vec![
        crate::imaging::chw_to_image(x.image(i), c, h, w),
        crate::imaging::chw_to_image(fx.image(i), c, h, w),
        heat,
    ]];
    crate::imaging::grid(&tiles, 4, 2).expect("three tiles of one size")
}
