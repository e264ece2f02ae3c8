//! `ign-train eval`: how good is a model, in numbers and pictures.
//!
//! - reconstruction L1 of held-out real images, `mean|f(x) − x|`
//! - idempotence gap, `mean|f(f(z)) − f(z)|` on noise
//! - a Fréchet distance in the feature space of a small classifier trained on the same labelled
//!   data (its test accuracy is reported), for f(z), f(f(z)) and the floor test-vs-train
//! - the class histogram of f(z), the largest class share and the mean top-1 probability
//! - pictures: 100 samples f(z), and projections of corrupted test images (noise, a masked
//!   half, an edge-map sketch: [`GRID_KINDS`]) next to f and f(f(...)).

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ign_core::backend::{Backend, Projector};
use ign_core::tensor::mean_abs_diff;
use ign_core::tensor::ImageBatch;
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::data::{self, mix, DataOptions, Dataset};
use crate::eval::classifier::{self, argmax, frechet_distance, Classifier};
use crate::model::Ign;
use crate::z::corrupt::{make, GRID_KINDS};
use crate::z::noise::{Noise, NoiseKind};

/// `f` of a checkpoint (candle, eval mode) as a [`Backend`], so that checkpoints and ONNX files
/// are evaluated through the same [`Projector`].
pub struct CandleBackend(pub Box<Ign>);

impl Backend for CandleBackend {
    fn name(&self) -> String {
        "candle".into()
    }

    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
        let x = Tensor::from_slice(&input.data, &input.shape[..], &Device::Cpu)?;
        let y = self
            .0
            .forward_t(&x, false)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        ImageBatch::new(y, input.shape)
    }
}

/// `f` on flat image buffers (`n` images of `shape`), in batches of 250: of noise (`noise`:
/// through the model's noise variant when it has one) or of anything else.
pub fn apply(
    projector: &mut Projector,
    images: &[f32],
    shape: (usize, usize, usize),
    noise: bool,
) -> Result<Vec<f32>> {
    let (c, h, w) = shape;
    let per = c * h * w;
    let n = images.len() / per;
    let mut out = Vec::with_capacity(images.len());
    for start in (0..n).step_by(250) {
        let end = (start + 250).min(n);
        let x = ImageBatch::new(
            images[start * per..end * per].to_vec(),
            [end - start, c, h, w],
        )?;
        let mut ys = projector.project_as(&x, 1, noise)?;
        out.extend(ys.remove(0).data);
    }
    Ok(out)
}

/// The figures of an evaluation (the `--json` schema).
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub samples: usize,
    pub rec_l1: f64,
    pub idempotence_gap: f64,
    /// `mean|f(f(f(z))) − f(f(z))|`: does a second step still move?
    pub idempotence_gap_k2: f64,
    pub classifier_accuracy: Option<f64>,
    pub fd_fz: Option<f64>,
    pub fd_ffz: Option<f64>,
    /// Test images against train images: the best a model could hope for.
    pub fd_test_floor: Option<f64>,
    pub class_histogram_fz: Option<Vec<usize>>,
    pub max_class_fraction_fz: Option<f64>,
    pub classes_present_fz: Option<usize>,
    pub mean_top1_prob_fz: Option<f64>,
    /// With a reference model (`--reference`, e.g. the fp32 original of an int8 model): the
    /// fraction of noise samples whose f(z) gets the same top-1 class under both (f(f(z)) when
    /// a noise variant makes the shared f(z)).
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub top1_agreement_fz: Option<f64>,
    /// The same on f(x) of the real test images.
    #[serde(default)]
    pub top1_agreement_fx: Option<f64>,
    /// `--ood`: accuracy and distance to real images of inputs other than noise, per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood: Option<Vec<crate::eval::ood::OodRow>>,
    pub seconds: f64,
}

/// Options of an evaluation.
pub struct EvalOptions {
    pub data: PathBuf,
    pub samples: usize,
    pub seed: u64,
    pub noise: NoiseKind,
    pub classifier_epochs: usize,
    /// Where the trained classifier is cached (trained again when absent).
    pub classifier_cache: Option<PathBuf>,
    /// Folder for the pictures (samples.png, projections.png, ood.png).
    pub out_dir: Option<PathBuf>,
    /// Test images per kind for the out-of-distribution evaluation (`None`: skipped).
    pub ood: Option<usize>,
}

/// A second model to compare top-1 classes with, and its name.
pub struct Reference<'a> {
    pub projector: &'a mut Projector,
    pub name: String,
}

/// Load or train the classifier for `split`.
fn classifier_for(
    train: &Dataset,
    test: &Dataset,
    opts: &EvalOptions,
) -> Result<Option<(Classifier, f64)>> {
    let Some(classes) = train.num_classes() else {
        return Ok(None);
    };
    if let Some(cache) = &opts.classifier_cache {
        if cache.exists() {
            let mut vm = VarMap::new();
            let c = Classifier::new(
                train.channels,
                train.height,
                classes,
                VarBuilder::from_varmap(&vm, candle_core::DType::F32, &Device::Cpu),
            )?;
            vm.load(cache).with_context(|| {
                format!(
                    "{}: cannot load the cached classifier (delete it to retrain)",
                    cache.display()
                )
            })?;
            let acc = classifier::accuracy(&c, test)?;
            return Ok(Some((c, acc)));
        }
    }
    log::info!(
        "training the evaluation classifier ({} epochs on {} images)...",
        opts.classifier_epochs,
        train.len()
    );
    let (c, vm, acc) =
        classifier::train_classifier(train, test, opts.classifier_epochs, opts.seed)?;
    if let Some(cache) = &opts.classifier_cache {
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        vm.save(cache)
            .with_context(|| format!("{}: cannot save the classifier", cache.display()))?;
    }
    Ok(Some((c, acc)))
}

/// Evaluate `projector` on the data in `opts`. Its noise variant, when it has one, makes f(z)
/// (the first application to noise); f(f(z)) and everything else use its main model (see
/// [`crate::train::bnstats`]).
pub fn evaluate(
    projector: &mut Projector,
    model_name: &str,
    opts: &EvalOptions,
    shape: (usize, usize),
    reference: Option<Reference>,
) -> Result<EvalReport> {
    let t0 = std::time::Instant::now();
    let (channels, size) = shape;
    let split = data::load(
        &opts.data,
        &DataOptions {
            image_size: Some(size),
            channels: Some(channels),
            ..Default::default()
        },
    )?;
    let (train, test) = (&split.train, &split.test);
    let sh = (channels, size, size);

    let x = &test.images;
    let fx = apply(projector, x, sh, false)?;
    let rec_l1 = mean_abs_diff(&fx, x);

    let noise = Noise::new(opts.noise, train);
    let z = noise.sample_vec(opts.samples, mix(opts.seed, 0, 0xe7a1));
    let shared_first_step = projector.has_noise_variant();
    let fz = apply(projector, &z, sh, true)?;
    let ffz = apply(projector, &fz, sh, false)?;
    let fffz = apply(projector, &ffz, sh, false)?;
    let idempotence_gap = mean_abs_diff(&ffz, &fz);
    let idempotence_gap_k2 = mean_abs_diff(&fffz, &ffz);

    let mut report = EvalReport {
        model: model_name.to_string(),
        data: split.description.clone(),
        samples: opts.samples,
        rec_l1,
        idempotence_gap,
        idempotence_gap_k2,
        classifier_accuracy: None,
        fd_fz: None,
        fd_ffz: None,
        fd_test_floor: None,
        class_histogram_fz: None,
        max_class_fraction_fz: None,
        classes_present_fz: None,
        mean_top1_prob_fz: None,
        reference: None,
        top1_agreement_fz: None,
        top1_agreement_fx: None,
        ood: None,
        seconds: 0.0,
    };
    let gen = Generated {
        z: &z,
        fx: &fx,
        fz: &fz,
        ffz: &ffz,
        shared_first_step,
    };
    if let Some((clf, acc)) = classifier_for(train, test, opts)? {
        report.classifier_accuracy = Some(acc);
        classifier_figures(&mut report, &clf, train, test, &gen, sh)?;
        if let Some(r) = reference {
            compare_with_reference(&mut report, r, &clf, x, &gen, sh)?;
        }
        if let Some(n) = opts.ood {
            out_of_distribution(&mut report, projector, &clf, test, n, opts, sh)?;
        }
    } else if opts.ood.is_some() {
        anyhow::bail!("--ood needs labelled data (IDX images with their labels file)");
    }
    if let Some(dir) = &opts.out_dir {
        write_pictures(dir, projector, test, &fz, opts, sh)?;
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// What the model made of the test images and of noise.
struct Generated<'a> {
    z: &'a [f32],
    fx: &'a [f32],
    fz: &'a [f32],
    ffz: &'a [f32],
    /// f(z) came from the noise variant.
    shared_first_step: bool,
}

/// The classifier's view of f(z): Fréchet distances, class histogram, mean top-1.
fn classifier_figures(
    report: &mut EvalReport,
    clf: &Classifier,
    train: &Dataset,
    test: &Dataset,
    gen: &Generated,
    sh: (usize, usize, usize),
) -> Result<()> {
    let per = sh.0 * sh.1 * sh.2;
    let (fz, ffz) = (gen.fz, gen.ffz);
    let n_ref = train.len().min(5000);
    let (f_train, _) = clf.features_probs(&train.images[..n_ref * per], sh)?;
    let (f_test, _) = clf.features_probs(&test.images, sh)?;
    let (f_fz, p_fz) = clf.features_probs(fz, sh)?;
    let (f_ffz, _) = clf.features_probs(ffz, sh)?;
    let mut hist = vec![0usize; clf.classes];
    let mut top1 = 0.0;
    for p in &p_fz {
        let k = argmax(p);
        hist[k] += 1;
        top1 += p[k] as f64;
    }
    report.fd_fz = Some(frechet_distance(&f_fz, &f_train));
    report.fd_ffz = Some(frechet_distance(&f_ffz, &f_train));
    report.fd_test_floor = Some(frechet_distance(&f_test, &f_train));
    report.max_class_fraction_fz =
        Some(*hist.iter().max().unwrap() as f64 / p_fz.len().max(1) as f64);
    report.classes_present_fz = Some(hist.iter().filter(|&&c| c > 0).count());
    report.class_histogram_fz = Some(hist);
    report.mean_top1_prob_fz = Some(top1 / p_fz.len().max(1) as f64);
    Ok(())
}

/// Top-1 agreement with a second model, on generations and on test images.
fn compare_with_reference(
    report: &mut EvalReport,
    r: Reference,
    clf: &Classifier,
    x: &[f32],
    gen: &Generated,
    sh: (usize, usize, usize),
) -> Result<()> {
    let (z, fx, fz, ffz, shared_first_step) =
        (gen.z, gen.fx, gen.fz, gen.ffz, gen.shared_first_step);
    let agreement = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        let same = a
            .iter()
            .zip(b)
            .filter(|(p, q)| argmax(p) == argmax(q))
            .count();
        same as f64 / a.len().max(1) as f64
    };
    // with a noise variant both share f(z): compare what each makes of it, f(f(z))
    let (gen, gen_ref) = if shared_first_step {
        (&ffz, apply(r.projector, fz, sh, false)?)
    } else {
        (&fz, apply(r.projector, z, sh, true)?)
    };
    let (_, p_gen) = clf.features_probs(gen, sh)?;
    let (_, p_ref) = clf.features_probs(&gen_ref, sh)?;
    report.top1_agreement_fz = Some(agreement(&p_gen, &p_ref));
    let fx_ref = apply(r.projector, x, sh, false)?;
    let (_, p_fx) = clf.features_probs(fx, sh)?;
    let (_, p_fx_ref) = clf.features_probs(&fx_ref, sh)?;
    report.top1_agreement_fx = Some(agreement(&p_fx, &p_fx_ref));
    report.reference = Some(r.name);
    Ok(())
}

/// The out-of-distribution section (and ood.png).
fn out_of_distribution(
    report: &mut EvalReport,
    projector: &mut Projector,
    clf: &Classifier,
    test: &Dataset,
    n: usize,
    opts: &EvalOptions,
    sh: (usize, usize, usize),
) -> Result<()> {
    // printed digits for digit data (the garments of Fashion-MNIST have no print)
    let digits = !opts
        .data
        .to_string_lossy()
        .to_lowercase()
        .contains("fashion");
    let (rows, pictures) = crate::eval::ood::evaluate(projector, clf, test, n, opts.seed, digits)?;
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
        let g = crate::eval::ood::grid(&pictures, sh)?;
        ign_core::fsio::save_png(&dir.join("ood.png"), &g)?;
    }
    report.ood = Some(rows);
    Ok(())
}

/// samples.png (100 f(z)) and projections.png (corrupted test images, f, f(f)).
fn write_pictures(
    dir: &Path,
    projector: &mut Projector,
    test: &Dataset,
    fz: &[f32],
    opts: &EvalOptions,
    sh: (usize, usize, usize),
) -> Result<()> {
    let (channels, size, _) = sh;
    let per = channels * size * size;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    // 10x10 samples f(z)
    let tiles = |buf: &[f32], n: usize| -> Vec<image::RgbImage> {
        (0..n)
            .map(|i| {
                ign_core::imaging::chw_to_image(&buf[i * per..(i + 1) * per], channels, size, size)
            })
            .collect()
    };
    let n = opts.samples.min(100);
    let t = tiles(fz, n);
    let rows: Vec<Vec<image::RgbImage>> = t.chunks(10).map(|c| c.to_vec()).collect();
    let g = ign_core::imaging::grid(&rows, ign_core::imaging::default_scale(size).min(2), 1)?;
    ign_core::fsio::save_png(&dir.join("samples.png"), &g)?;
    // make it real: original, corrupted, f, f(f)
    let mut rows = Vec::new();
    for (ki, kind) in GRID_KINDS.iter().enumerate() {
        for j in 0..4.min(test.len()) {
            let i = (j * 37 + ki * 11) % test.len();
            let orig = test.image(i);
            let c = make(kind, orig, sh, mix(opts.seed, i as u64, ki as u64))?;
            let f1 = apply(projector, &c, sh, false)?;
            let f2 = apply(projector, &f1, sh, false)?;
            rows.push(
                [orig, &c[..], &f1[..], &f2[..]]
                    .iter()
                    .map(|b| ign_core::imaging::chw_to_image(b, channels, size, size))
                    .collect(),
            );
        }
    }
    let g = ign_core::imaging::grid(&rows, ign_core::imaging::default_scale(size), 2)?;
    ign_core::fsio::save_png(&dir.join("projections.png"), &g)?;
    Ok(())
}

/// Human-readable summary lines of a report.
pub fn summary(r: &EvalReport) -> String {
    let mut s = format!(
        "model {}\ndata  {}\nreconstruction L1 (test)      {:.4}\nidempotence gap |f(f(z))-f(z)| {:.4}  (k=2->3: {:.4})\n",
        r.model, r.data, r.rec_l1, r.idempotence_gap, r.idempotence_gap_k2
    );
    if let (Some(acc), Some(fz), Some(ffz), Some(floor)) =
        (r.classifier_accuracy, r.fd_fz, r.fd_ffz, r.fd_test_floor)
    {
        s += &format!(
            "classifier test accuracy      {:.3}\nFrechet distance f(z)         {fz:.2}\nFrechet distance f(f(z))      {ffz:.2}\nFrechet distance test (floor) {floor:.2}\n",
            acc
        );
        s += &format!(
            "f(z) classes present          {} / {}\nf(z) largest class share      {:.3}\nf(z) mean top-1 probability   {:.3}\nf(z) class histogram          {:?}\n",
            r.classes_present_fz.unwrap_or(0),
            r.class_histogram_fz.as_ref().map(|h| h.len()).unwrap_or(0),
            r.max_class_fraction_fz.unwrap_or(0.0),
            r.mean_top1_prob_fz.unwrap_or(0.0),
            r.class_histogram_fz.clone().unwrap_or_default()
        );
    }
    if let (Some(a), Some(b), Some(name)) = (r.top1_agreement_fz, r.top1_agreement_fx, &r.reference)
    {
        s += &format!("top-1 agreement with {name}: f(z) {a:.3}, f(x) of test images {b:.3}\n");
    }
    if let Some(rows) = &r.ood {
        s += &crate::eval::ood::table(rows);
    }
    s
}

/// Default cache path of the classifier for a data path and shape.
pub fn default_classifier_cache(data: &Path, channels: usize, size: usize) -> PathBuf {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    PathBuf::from("runs").join(format!("classifier-{name}-{channels}x{size}.safetensors"))
}
