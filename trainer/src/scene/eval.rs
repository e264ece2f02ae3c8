//! `ign-train scene eval`: a scene model's figures on a benchmark of [`super::make`].
//!
//! Every test frame goes through the ONNX model on ign-core's CPU backend and is scored as
//! `ign-edge score` scores it ([`ign_core::anomaly`]; the model's `ign.anomaly.score`,
//! smooth-max when it has none), against the model's calibrated threshold
//! (`ign.anomaly.threshold`). The figures:
//! - image AUROC: the normal test frames against all anomalous ones, and against each kind's;
//! - pixel AUROC: the score's heatmap against the masks, over the pixels of the anomalous
//!   frames (the normal frames' pixels are not counted);
//! - the false-alarm rate (the share of normal test frames above the threshold) and the
//!   detection rate (the share of anomalous ones above it);
//! - restoration: the PSNR of `f(frame with the object)` to the clean frame inside the mask,
//!   beside the PSNR of the frame itself to the clean frame there (the baseline: what f starts
//!   from), and of `f` outside the mask (what f keeps of the rest); each the mean over frames
//!   of the frame's PSNR, with a peak-to-peak of 2 (the `[-1, 1]` range; 8-bit's 255).
//!
//! Works on any file of a model's family (`M.onnx`, `M.int8.onnx`, `M.fp16.onnx`).

use anyhow::{bail, Context, Result};
use ign_core::anomaly::{self, ScoreKind};
use ign_core::backend::cpu::CpuBackend;
use ign_core::backend::Backend;
use ign_core::model::metadata::keys;
use ign_core::model::Model;
use ign_core::tensor::ImageBatch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::make::read_manifest;
use super::{Kind, Layout, SCHEMA};

/// Frames per call of the backend.
const CHUNK: usize = 16;
/// The PSNR of two equal regions (no error to take the logarithm of).
pub const PSNR_CAP: f64 = 100.0;

/// What `scene eval` measures.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneEvalOptions {
    pub bench: PathBuf,
    pub model: PathBuf,
    /// CPU threads of the backend (default: all cores).
    pub threads: Option<usize>,
    /// A score instead of the model's.
    pub score: Option<ScoreKind>,
    /// A threshold instead of the model's.
    pub threshold: Option<f32>,
}

/// The figures of one model on one benchmark (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneReport {
    pub schema: u32,
    pub bench: String,
    pub model: String,
    /// `ign.precision` of the file.
    pub precision: String,
    pub score: String,
    /// The threshold, when the model has one (or `--threshold` gave one).
    pub threshold: Option<f32>,
    pub normal_frames: usize,
    pub anomalous_frames: usize,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
    /// The share of the normal test frames above the threshold.
    pub false_alarm_rate: Option<f64>,
    /// The share of the anomalous test frames above the threshold.
    pub detection_rate: Option<f64>,
    /// The mean score of the normal test frames.
    pub normal_mean_score: f64,
    /// Restoration over every anomalous frame.
    pub restoration: Restoration,
    pub kinds: Vec<KindReport>,
}

/// One kind's figures: its frames against the normal ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    pub kind: Kind,
    pub frames: usize,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
    pub detection_rate: Option<f64>,
    pub mean_score: f64,
    pub restoration: Restoration,
}

/// Restoration inside the objects' masks, in dB (means over frames).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restoration {
    /// The frame with the object against the clean frame, inside the mask.
    pub psnr_input: f64,
    /// `f(frame with the object)` against the clean frame, inside the mask.
    pub psnr_f: f64,
    /// `f(frame with the object)` against the clean frame, outside the mask.
    pub psnr_f_outside: f64,
}

/// One anomalous frame's measures.
#[derive(Clone, Debug)]
struct Measured {
    score: f32,
    map: Vec<f32>,
    mask: Vec<bool>,
    psnr: [f64; 3],
}

/// The PSNR of `a` against `b` (`C×H×W` in `[-1, 1]`) over the pixels where `mask` is
/// `inside` (all channels); [`PSNR_CAP`] when they are equal there, NaN when no pixel is.
pub fn psnr_where(a: &[f32], b: &[f32], mask: &[bool], inside: bool) -> f64 {
    let plane = mask.len();
    assert_eq!(a.len(), b.len(), "psnr_where: sizes");
    assert_eq!(a.len() % plane.max(1), 0, "psnr_where: the mask's size");
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if mask[i % plane] == inside {
            sum += ((x - y) as f64).powi(2);
            n += 1;
        }
    }
    if n == 0 {
        return f64::NAN;
    }
    let mse = sum / n as f64;
    if mse == 0.0 {
        PSNR_CAP
    } else {
        (10.0 * (4.0 / mse).log10()).min(PSNR_CAP)
    }
}

/// The AUROC of per-pixel `maps` against `masks` (the pixels inside are the positives), over
/// every pixel of every map.
pub fn pixel_auroc(maps: &[&[f32]], masks: &[&[bool]]) -> f64 {
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (map, mask) in maps.iter().zip(masks) {
        assert_eq!(map.len(), mask.len(), "pixel_auroc: a map and its mask");
        for (&v, &m) in map.iter().zip(mask.iter()) {
            if m {
                pos.push(v);
            } else {
                neg.push(v);
            }
        }
    }
    anomaly::auroc(&neg, &pos)
}

/// The share of `scores` above `threshold`.
pub fn rate_above(scores: &[f32], threshold: f32) -> f64 {
    scores.iter().filter(|&&s| s > threshold).count() as f64 / scores.len().max(1) as f64
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    s / n.max(1) as f64
}

/// Frames of a folder as `3×s×s` images, with their file names, in sorted order.
fn read_frames(dir: &Path, s: usize) -> Result<Vec<(String, Vec<f32>)>> {
    let files = ign_core::imaging::list_images(dir)?;
    if files.is_empty() {
        bail!("{}: no frame; is this a scene benchmark?", dir.display());
    }
    files
        .iter()
        .map(|p| {
            let img = ign_core::imaging::open_image(p)?;
            if (img.width() as usize, img.height() as usize) != (s, s) {
                bail!("{}: not {s}x{s} as the manifest says", p.display());
            }
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok((name, ign_core::imaging::image_to_chw(&img, 3, s, s)))
        })
        .collect()
}

/// A mask PNG (`s×s`, inside where the level is above half).
fn read_mask(path: &Path, s: usize) -> Result<Vec<bool>> {
    let img = ign_core::imaging::open_image(path)?.to_luma8();
    if (img.width() as usize, img.height() as usize) != (s, s) {
        bail!("{}: the mask is not {s}x{s}", path.display());
    }
    Ok(img.pixels().map(|p| p.0[0] > 127).collect())
}

/// Apply the model to `frames` and score each: `(score, map, f(x))` per frame.
fn project_and_score(
    backend: &mut CpuBackend,
    frames: &[Vec<f32>],
    kind: ScoreKind,
    s: usize,
) -> Result<Vec<(anomaly::Scored, Vec<f32>)>> {
    let shape = (3, s, s);
    let applications = kind.applications();
    let mut out = Vec::with_capacity(frames.len());
    for chunk in frames.chunks(CHUNK) {
        let x = ImageBatch::new(chunk.concat(), [chunk.len(), 3, s, s])?;
        let outs = backend.project(&x, applications)?;
        for i in 0..x.len() {
            let ffx = outs.get(1).map(|o| o.image(i));
            let scored = anomaly::score(kind, x.image(i), outs[0].image(i), ffx, shape)?;
            out.push((scored, outs[0].image(i).to_vec()));
        }
    }
    Ok(out)
}

/// The model's score and threshold, as `opts` overrides them (another score than the model's
/// has no threshold unless `opts` gives one).
fn verdict_of(model: &Model, opts: &SceneEvalOptions) -> Result<(ScoreKind, Option<f32>)> {
    let meta = |k: &str| model.info.metadata.get(k).map(|s| s.trim().to_string());
    let score = match (opts.score, meta(keys::ANOMALY_SCORE)) {
        (Some(k), _) => k,
        (None, Some(s)) => s.parse().with_context(|| {
            format!("{}: its {}", model.info.path.display(), keys::ANOMALY_SCORE)
        })?,
        (None, None) => ScoreKind::default(),
    };
    let own_score = meta(keys::ANOMALY_SCORE).map_or(Ok(ScoreKind::default()), |s| s.parse())?;
    let threshold = match (opts.threshold, meta(keys::ANOMALY_THRESHOLD)) {
        (Some(t), _) => Some(t),
        // the model's threshold is for its own score
        (None, Some(_)) if score != own_score => None,
        (None, Some(t)) => Some(t.parse::<f32>().with_context(|| {
            format!(
                "{}: its {} {t:?}",
                model.info.path.display(),
                keys::ANOMALY_THRESHOLD
            )
        })?),
        (None, None) => None,
    };
    Ok((score, threshold))
}

/// Measure the model of `opts` on the benchmark of `opts`.
pub fn evaluate(opts: &SceneEvalOptions) -> Result<SceneReport> {
    let manifest = read_manifest(&opts.bench)?;
    let s = manifest.size;
    let layout = Layout::new(&opts.bench);
    let model = Model::load(&opts.model)?;
    let info = &model.info;
    if (info.channels, info.height, info.width) != (3, s, s) {
        bail!(
            "{}: the model takes {}x{}x{} images, the benchmark's frames are 3x{s}x{s}",
            opts.model.display(),
            info.channels,
            info.height,
            info.width
        );
    }
    let (score_kind, threshold) = verdict_of(&model, opts)?;
    if threshold.is_none() {
        log::warn!(
            "{}: no anomaly threshold ({}); the false-alarm and detection rates are left out (give --threshold)",
            opts.model.display(),
            keys::ANOMALY_THRESHOLD
        );
    }
    let mut backend = CpuBackend::new(&model, opts.threads)?;
    let normal: Vec<Vec<f32>> = read_frames(&layout.normal, s)?
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    let normal_scores: Vec<f32> = project_and_score(&mut backend, &normal, score_kind, s)?
        .into_iter()
        .map(|(sc, _)| sc.score)
        .collect();
    let mut per_kind = Vec::new();
    for entry in &manifest.kinds {
        let m = measure_kind(&mut backend, &layout, entry.kind, score_kind, s)?;
        log::debug!("{}: {} frames scored", entry.kind, m.len());
        per_kind.push((entry.kind, m));
    }
    Ok(report(
        opts,
        &model,
        score_kind,
        threshold,
        &normal_scores,
        &per_kind,
    ))
}

/// Score one kind's frames and measure their restoration.
fn measure_kind(
    backend: &mut CpuBackend,
    layout: &Layout,
    kind: Kind,
    score_kind: ScoreKind,
    s: usize,
) -> Result<Vec<Measured>> {
    let frames = read_frames(&layout.anomalous(kind), s)?;
    let images: Vec<Vec<f32>> = frames.iter().map(|(_, f)| f.clone()).collect();
    let scored = project_and_score(backend, &images, score_kind, s)?;
    let mut out = Vec::with_capacity(frames.len());
    for ((name, x), (sc, fx)) in frames.iter().zip(scored) {
        let mask = read_mask(&layout.masks(kind).join(name), s)?;
        let clean_path = layout.clean(kind).join(name);
        let clean =
            ign_core::imaging::image_to_chw(&ign_core::imaging::open_image(&clean_path)?, 3, s, s);
        let psnr = [
            psnr_where(x, &clean, &mask, true),
            psnr_where(&fx, &clean, &mask, true),
            psnr_where(&fx, &clean, &mask, false),
        ];
        out.push(Measured {
            score: sc.score,
            map: sc.map,
            mask,
            psnr,
        });
    }
    Ok(out)
}

fn restoration(frames: &[&Measured]) -> Restoration {
    let at = |k: usize| mean(frames.iter().map(|m| m.psnr[k]));
    Restoration {
        psnr_input: at(0),
        psnr_f: at(1),
        psnr_f_outside: at(2),
    }
}

/// The report from the scores and measures.
fn report(
    opts: &SceneEvalOptions,
    model: &Model,
    score: ScoreKind,
    threshold: Option<f32>,
    normal: &[f32],
    per_kind: &[(Kind, Vec<Measured>)],
) -> SceneReport {
    let all: Vec<&Measured> = per_kind.iter().flat_map(|(_, m)| m.iter()).collect();
    let scores = |ms: &[&Measured]| ms.iter().map(|m| m.score).collect::<Vec<f32>>();
    let pixels = |ms: &[&Measured]| {
        let maps: Vec<&[f32]> = ms.iter().map(|m| m.map.as_slice()).collect();
        let masks: Vec<&[bool]> = ms.iter().map(|m| m.mask.as_slice()).collect();
        pixel_auroc(&maps, &masks)
    };
    let kinds = per_kind
        .iter()
        .map(|(kind, ms)| {
            let ms: Vec<&Measured> = ms.iter().collect();
            let sc = scores(&ms);
            KindReport {
                kind: *kind,
                frames: ms.len(),
                image_auroc: anomaly::auroc(normal, &sc),
                pixel_auroc: pixels(&ms),
                detection_rate: threshold.map(|t| rate_above(&sc, t)),
                mean_score: mean(sc.iter().map(|&v| v as f64)),
                restoration: restoration(&ms),
            }
        })
        .collect();
    let sc = scores(&all);
    SceneReport {
        schema: SCHEMA,
        bench: opts.bench.display().to_string(),
        model: opts.model.display().to_string(),
        precision: model.info.precision.to_string(),
        score: score.as_str().to_string(),
        threshold,
        normal_frames: normal.len(),
        anomalous_frames: all.len(),
        image_auroc: anomaly::auroc(normal, &sc),
        pixel_auroc: pixels(&all),
        false_alarm_rate: threshold.map(|t| rate_above(normal, t)),
        detection_rate: threshold.map(|t| rate_above(&sc, t)),
        normal_mean_score: mean(normal.iter().map(|&v| v as f64)),
        restoration: restoration(&all),
        kinds,
    }
}

/// The report as a table for the terminal.
pub fn summary(r: &SceneReport) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let mut out = format!(
        "{} ({}) on {}: {} score, threshold {}\n",
        r.model,
        r.precision,
        r.bench,
        r.score,
        r.threshold.map_or("none".to_string(), |t| t.to_string())
    );
    out += "kind          frames  image AUROC  pixel AUROC  detected  PSNR in mask: input -> f   f outside\n";
    let row = |name: &str, n: usize, img: f64, px: f64, det: Option<f64>, re: &Restoration| {
        format!(
            "{name:<12} {n:>7}  {img:>11.4}  {px:>11.4}  {:>8}  {:>17.1} -> {:<5.1}  {:>9.1}\n",
            pct(det),
            re.psnr_input,
            re.psnr_f,
            re.psnr_f_outside
        )
    };
    for k in &r.kinds {
        out += &row(
            &k.kind.to_string(),
            k.frames,
            k.image_auroc,
            k.pixel_auroc,
            k.detection_rate,
            &k.restoration,
        );
    }
    out += &row(
        "all",
        r.anomalous_frames,
        r.image_auroc,
        r.pixel_auroc,
        r.detection_rate,
        &r.restoration,
    );
    out += &format!(
        "false alarms: {} of the {} normal test frames above the threshold (mean normal score {:.4})\n",
        pct(r.false_alarm_rate),
        r.normal_frames,
        r.normal_mean_score
    );
    out
}
