//! The one-class protocol (Ruff et al. 2018, Deep SVDD) of `ign-train eval --one-class`: for
//! each class `c`, train on the training images of `c` alone, score the whole test split
//! (normal: class `c`; anomalous: every other class) and report the AUROC per class and the
//! mean over the classes, for the IGN and for the autoencoder baseline (the same network and
//! schedule on reconstruction alone, for the same time).
//!
//! Training is the built-in recipe `one-class` (`models/recipes/one-class.toml`) run by
//! [`crate::train::recipe::run`], one run folder per method and class (`OUT/ign/class-3`,
//! `OUT/autoencoder/class-3`). A finished class leaves `result.json` there and is skipped
//! when the command runs again; an interrupted one resumes where its checkpoint stopped (the
//! recipe runner's resume). The report ([`report`]) gives the table and the JSON, with the
//! published anchors beside the means.
//!
//! Scores: every score kind of [`ign_core::anomaly`] is measured for every class (the
//! distance `x ↔ f(x)` as its mean or as its smoothed maximum, the idempotence gap
//! `f(x) ↔ f(f(x))`, and `sum`, the smoothed maxima of both added); the report's headline
//! uses one ([`OneClassConfig::score`], `sum` by default; models/MODELS.md compares them).
//! A finished class whose `result.json` lacks a kind is scored again from its checkpoint,
//! without training.

pub mod report;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use ign_core::anomaly::{self, ScoreKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::{self, DataOptions, Dataset, Split};
use crate::train::bnstats::{recalibrate_with, BnStats, PASSES};
use crate::train::recipe::{self, Recipe, RecipeOptions};
use crate::z::noise::Noise;

pub use report::{table, Anchor, ClassResult, OneClassReport, ANCHORS};

/// The built-in recipe that trains each class.
pub const RECIPE: &str = "one-class";

/// The file a finished class leaves in its run folder.
pub const RESULT_FILE: &str = "result.json";

/// Test images per application of f while scoring.
const CHUNK: usize = 250;

/// What a class is trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The recipe as it is: a reconstruction warm-up, then the IGN terms.
    Ign,
    /// The same recipe with both IGN weights 0 in every stage: reconstruction alone.
    Autoencoder,
}

named_choices!(Method { Ign = "ign", Autoencoder = "autoencoder" });

/// How `eval --one-class` runs.
#[derive(Clone, Debug)]
pub struct OneClassConfig {
    /// IDX images with labels (a folder with train-/t10k- pairs, or one images file whose
    /// last 20% is the test split).
    pub data: PathBuf,
    /// The folder of the per-class runs.
    pub out: PathBuf,
    /// The normal classes to run, each on its own (`None`: every class of the data).
    pub classes: Option<Vec<u8>>,
    /// The training budget of each class and method, in minutes.
    pub minutes: f64,
    pub methods: Vec<Method>,
    /// The recipe that trains each class: a built-in name or a TOML file ([`RECIPE`] by
    /// default). The autoencoder is the same recipe with both IGN weights 0.
    pub recipe: String,
    /// The score of the headline figures (every kind is measured and kept).
    pub score: ScoreKind,
    /// Train each stage at most this many steps (tests).
    pub step_cap: Option<u64>,
    /// Batches of the class's training images that set the BatchNorm statistics before
    /// scoring ([`PASSES`]; fewer in tests).
    pub bn_passes: usize,
    /// Hide the training progress bars.
    pub quiet: bool,
}

impl Default for OneClassConfig {
    fn default() -> Self {
        OneClassConfig {
            data: PathBuf::new(),
            out: PathBuf::from("runs/one-class"),
            classes: None,
            minutes: 1.5,
            methods: vec![Method::Ign, Method::Autoencoder],
            recipe: RECIPE.to_string(),
            score: ScoreKind::Sum,
            step_cap: None,
            bn_passes: PASSES,
            quiet: false,
        }
    }
}

/// The run folder of `class` by `method` under `out`.
pub fn class_dir(out: &Path, method: Method, class: u8) -> PathBuf {
    out.join(method.to_string()).join(format!("class-{class}"))
}

/// The recipe and how it loads the data (its split: the warm-up stage's test fraction).
fn recipe_and_data(recipe: &str, data: &Path) -> Result<(Recipe, DataOptions)> {
    let recipe = Recipe::load(recipe)?;
    let (_, data_opts, _) = recipe
        .stage_cmd(0, data, Path::new("RUN"), &[])?
        .settings()?;
    Ok((recipe, data_opts))
}

/// The classes to run: `asked` checked against the data's labels, or all of them.
pub fn resolve_classes(asked: Option<&[u8]>, split: &Split, data: &Path) -> Result<Vec<u8>> {
    let (Some(train), Some(test)) = (&split.train.labels, &split.test.labels) else {
        bail!(
            "{}: the one-class protocol needs labelled data: IDX images with their labels file beside them",
            data.display()
        );
    };
    let n = split.train.num_classes().unwrap_or(0);
    let Some(asked) = asked else {
        return Ok((0..n as u8).filter(|c| train.contains(c)).collect());
    };
    if asked.is_empty() {
        bail!("--classes: give at least one class, e.g. --classes 0,1 (the data's classes are 0 to {})", n.saturating_sub(1));
    }
    for (i, c) in asked.iter().enumerate() {
        if asked[..i].contains(c) {
            bail!("--classes: class {c} is listed twice");
        }
        if !train.contains(c) || !test.contains(c) {
            bail!(
                "--classes: {}: no image of class {c} in the training and test splits (the data's classes are 0 to {})",
                data.display(),
                n.saturating_sub(1)
            );
        }
    }
    Ok(asked.to_vec())
}

/// Run the protocol: train and score each class by each method (skipping those already
/// finished in `cfg.out`) and gather the report.
pub fn run(cfg: &OneClassConfig) -> Result<OneClassReport> {
    if !(cfg.minutes.is_finite() && cfg.minutes > 0.0) {
        bail!(
            "--minutes-per-class {}: give a budget above 0 minutes",
            cfg.minutes
        );
    }
    if cfg.methods.is_empty() {
        bail!("no method to run; give --method ign, autoencoder or both");
    }
    let (recipe, data_opts) = recipe_and_data(&cfg.recipe, &cfg.data)?;
    let split = data::load(&cfg.data, &data_opts)?;
    let classes = resolve_classes(cfg.classes.as_deref(), &split, &cfg.data)?;
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("{}: cannot create the run folder", cfg.out.display()))?;
    // class by class, each by every method, so that a cut-short run compares what it has
    let units: Vec<(Method, u8)> = classes
        .iter()
        .flat_map(|&c| cfg.methods.iter().map(move |&m| (m, c)))
        .collect();
    log::info!(
        "one-class protocol on {}: {} classes x {} method(s), {} minutes of training each (about {:.0} minutes in all)",
        split.description,
        classes.len(),
        cfg.methods.len(),
        cfg.minutes,
        units.len() as f64 * cfg.minutes
    );
    let (t0, mut ran) = (Instant::now(), 0usize);
    let mut results = Vec::new();
    for (k, &(method, class)) in units.iter().enumerate() {
        let dir = class_dir(&cfg.out, method, class);
        if let Some(done) = finished(&dir, cfg.minutes, &recipe)? {
            let done = with_every_score(cfg, &split, &dir, done)?;
            log::info!(
                "[{}/{}] {method} class {class}: done ({} AUROC {:.4}), skipped",
                k + 1,
                units.len(),
                cfg.score.as_str(),
                done.auroc_of(cfg.score)
            );
            results.push(done);
            continue;
        }
        let eta = eta_minutes(
            t0.elapsed().as_secs_f64(),
            ran,
            units.len() - k,
            cfg.minutes,
        );
        log::info!(
            "[{}/{}] {method} class {class}: training {} minutes in {} (about {eta:.1} minutes left in all)",
            k + 1,
            units.len(),
            cfg.minutes,
            dir.display()
        );
        let r = run_class(cfg, &recipe, &split, method, class, &dir)?;
        log::info!(
            "[{}/{}] {method} class {class}: AUROC {} {:.4} ({} steps)",
            k + 1,
            units.len(),
            cfg.score.as_str(),
            r.auroc_of(cfg.score),
            r.steps
        );
        results.push(r);
        ran += 1;
    }
    Ok(OneClassReport::new(cfg, &split.description, results))
}

/// Minutes left: the units to go at the pace of those run so far (or at their budget).
fn eta_minutes(elapsed: f64, ran: usize, left: usize, budget: f64) -> f64 {
    let per = if ran > 0 {
        elapsed / 60.0 / ran as f64
    } else {
        budget
    };
    per * left as f64
}

/// The result a finished class left in `dir`, when it was trained on this budget (with a
/// warning when another recipe than `recipe` trained it: its figures are that recipe's).
fn finished(dir: &Path, minutes: f64, recipe: &Recipe) -> Result<Option<ClassResult>> {
    let path = dir.join(RESULT_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let copy = dir.join(crate::train::recipe::RECIPE_FILE);
    if std::fs::read_to_string(&copy).is_ok_and(|t| t != recipe.text) {
        log::warn!(
            "{}: trained by another recipe than {}@{} (its copy is {}): its figures are that recipe's; delete the folder to train it again",
            dir.display(),
            recipe.name,
            recipe.hash,
            copy.display()
        );
    }
    let r: ClassResult = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a one-class result; delete it", path.display()))?;
    if (r.minutes - minutes).abs() > 1e-9 {
        log::info!(
            "{}: trained on {} minutes, not {minutes}: training on",
            path.display(),
            r.minutes
        );
        return Ok(None);
    }
    Ok(Some(r))
}

/// Train `class` by `method` in `dir` (resuming what is there), score the test split and
/// write `result.json`.
fn run_class(
    cfg: &OneClassConfig,
    recipe: &Recipe,
    split: &Split,
    method: Method,
    class: u8,
    dir: &Path,
) -> Result<ClassResult> {
    let opts = RecipeOptions {
        data: cfg.data.clone(),
        out: dir.to_path_buf(),
        // the samples of the last step only, checkpoints every 100 steps
        sample_every: 1_000_000,
        checkpoint_every: 100,
        step_cap: cfg.step_cap,
        minutes: Some(cfg.minutes),
        quiet: cfg.quiet,
        classes: Some(vec![class]),
        reconstruction_only: method == Method::Autoencoder,
        ..Default::default()
    };
    recipe::run(recipe, &opts)?;
    let t0 = Instant::now();
    let (auroc, train_images, steps) = score_class(cfg, split, class, dir)?;
    let labels = split.test.labels.as_ref().expect("checked labelled");
    let normal = labels.iter().filter(|&&l| l == class).count();
    let result = ClassResult {
        class,
        method,
        minutes: cfg.minutes,
        steps,
        warm_up_steps: warm_up_steps(recipe, dir)?,
        train_images,
        normal,
        anomalous: labels.len() - normal,
        auroc,
        score_seconds: t0.elapsed().as_secs_f64(),
    };
    write_result(dir, &result)?;
    Ok(result)
}

/// A finished class's result with every score kind: the kinds that one written before they
/// existed lacks are scored from its checkpoint (no training) and added; the figures it has
/// stay. Without its checkpoint it is kept as it is (the missing kinds then read NaN).
fn with_every_score(
    cfg: &OneClassConfig,
    split: &Split,
    dir: &Path,
    mut done: ClassResult,
) -> Result<ClassResult> {
    if ScoreKind::NAMES.iter().all(|k| done.auroc.contains_key(*k)) {
        return Ok(done);
    }
    let t0 = Instant::now();
    let (auroc, _, steps) = match score_class(cfg, split, done.class, dir) {
        Ok(scored) => scored,
        Err(e) => {
            log::warn!(
                "{}: lacks score kinds and cannot be scored again ({e:#}); kept as it is",
                dir.display()
            );
            return Ok(done);
        }
    };
    if steps != done.steps {
        log::warn!(
            "{}: its checkpoint is at step {steps}, its result at {}; the added scores are the checkpoint's",
            dir.display(),
            done.steps
        );
    }
    for (kind, a) in auroc {
        done.auroc.entry(kind).or_insert(a);
    }
    log::info!(
        "{}: scored the kinds it lacked from its checkpoint in {:.1} s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    write_result(dir, &done)?;
    Ok(done)
}

/// Write `result` as the class's `result.json` (atomically: a crash leaves the old one).
fn write_result(dir: &Path, result: &ClassResult) -> Result<()> {
    ign_core::fsio::atomic_write(
        &dir.join(RESULT_FILE),
        serde_json::to_string_pretty(result)?.as_bytes(),
    )
}

/// The AUROC of every score kind on the test split, by the model trained in `dir` on `class`
/// (in eval mode, with the BatchNorm statistics of the class's training images, as export
/// folds them), the number of those training images and the steps the model was trained.
fn score_class(
    cfg: &OneClassConfig,
    split: &Split,
    class: u8,
    dir: &Path,
) -> Result<(BTreeMap<String, f64>, usize, u64)> {
    let train = data::keep_classes(split.train.clone(), &[class], "training", &cfg.data)?;
    let (model, ck) = crate::train::checkpoint::load_model(dir)?;
    let noise = Noise::new(ck.config.noise, &train);
    recalibrate_with(
        &model,
        BnStats::Data,
        &train,
        &noise,
        ck.config.batch,
        ck.config.seed,
        cfg.bn_passes,
    )?;
    let scores = score_all(&model, &split.test)?;
    let labels = split.test.labels.as_ref().expect("checked labelled");
    let mut auroc = BTreeMap::new();
    for (kind, s) in &scores {
        auroc.insert(kind.as_str().to_string(), class_auroc(s, labels, class));
    }
    Ok((auroc, train.len(), ck.step))
}

/// The AUROC of `scores` with the images of `class` (by `labels`) normal and the rest
/// anomalous.
pub fn class_auroc(scores: &[f32], labels: &[u8], class: u8) -> f64 {
    let pick = |normal: bool| -> Vec<f32> {
        scores
            .iter()
            .zip(labels)
            .filter(|&(_, &l)| (l == class) == normal)
            .map(|(&v, _)| v)
            .collect()
    };
    anomaly::auroc(&pick(true), &pick(false))
}

/// The step at which the recipe's first stage handed over.
fn warm_up_steps(recipe: &Recipe, dir: &Path) -> Result<u64> {
    let first = dir
        .join(&recipe.stages[0].name)
        .join(crate::train::checkpoint::CHECKPOINT_FILE);
    Ok(crate::train::checkpoint::load(&first)?.step)
}

/// Every score kind of every image of `test` by `model` (eval mode): f applied twice.
pub fn score_all(model: &crate::model::Ign, test: &Dataset) -> Result<Vec<(ScoreKind, Vec<f32>)>> {
    let mut out: Vec<(ScoreKind, Vec<f32>)> = ScoreKind::ALL
        .iter()
        .map(|&k| (k, Vec::with_capacity(test.len())))
        .collect();
    let shape = test.shape();
    let ids: Vec<usize> = (0..test.len()).collect();
    for chunk in ids.chunks(CHUNK) {
        let x = test.batch(chunk, &Device::Cpu)?;
        let fx = model.forward_t(&x, false)?;
        let ffx = model.forward_t(&fx, false)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let (x, fx, ffx) = (flat(&x)?, flat(&fx)?, flat(&ffx)?);
        let per = test.image_len();
        for i in 0..chunk.len() {
            let at = |v: &[f32]| v[i * per..(i + 1) * per].to_vec();
            let (xi, fi, ffi) = (at(&x), at(&fx), at(&ffx));
            for (kind, s) in out.iter_mut() {
                s.push(anomaly::score(*kind, &xi, &fi, Some(&ffi), shape)?.score);
            }
        }
    }
    Ok(out)
}
