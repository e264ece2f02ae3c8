//! The training loop: data → IGN loss → Adam, with progress, samples, logs and checkpoints.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{self, CHECKPOINT_FILE};
use crate::data::{self, mix, BatchSampler, DataOptions, Dataset};
use crate::loss::{ign_loss_planned, LossTerms, Restore, RestoreMatch, ZPlan};
use crate::model::{Ign, ModelConfig};
use crate::noise::Noise;
use crate::optim::Adam;
use crate::samples;

pub use crate::config::{TrainConfig, ZBatchNorm, ZFonts, ZTight};

/// Options of one training invocation that are not part of the run's identity.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    /// Train until this many steps in total (a resumed run counts its earlier steps).
    pub steps: u64,
    pub resume: bool,
    /// Start from another run's folder (state and step), with this invocation's `z_mix`.
    pub from: Option<PathBuf>,
    /// With `from`: a batch size that replaces the source run's (None: keep it).
    pub from_batch: Option<usize>,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Hide the progress bar (tests).
    pub quiet: bool,
}

/// The frozen copy of `f`: same weights (shared storage, so it always holds the current
/// values) but detached tensors, so that no gradient reaches the weights through it. BatchNorm
/// running statistics are copies, so the frozen forward passes do not disturb them.
pub fn frozen_copy(varmap: &VarMap, cfg: &ModelConfig) -> Result<Ign> {
    let dtype = varmap
        .all_vars()
        .first()
        .map(|v| v.dtype())
        .unwrap_or(DType::F32);
    let map: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let t = if k.ends_with("running_mean") || k.ends_with("running_var") {
                v.as_tensor().copy()
            } else {
                Ok(v.as_detached_tensor())
            };
            t.map(|t| (k.clone(), t))
        })
        .collect::<candle_core::Result<_>>()?;
    Ign::new(cfg, VarBuilder::from_tensors(map, dtype, &Device::Cpu))
}

/// DCGAN initialisation from `seed`: conv weights `N(0, 0.02)`, norm scales `N(1, 0.02)`,
/// biases 0.
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, 0x1417));
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let vals: Vec<f32> = if name.ends_with("conv.weight") {
            let d = Normal::new(0.0f32, 0.02).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        } else if name.ends_with("bn.weight") || name.ends_with("ln.weight") {
            let d = Normal::new(1.0f32, 0.02).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        } else if name.ends_with("running_var") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(vals, var.shape(), &Device::Cpu)?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The trainable variables (BN running statistics excluded), by name.
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A live training session: model, frozen copy, optimizer, data and noise.
pub struct Trainer {
    pub config: TrainConfig,
    pub varmap: VarMap,
    pub model: Ign,
    frozen: Ign,
    pub adam: Adam,
    pub step: u64,
    sampler: BatchSampler,
    noise: Noise,
    pub train: Dataset,
    pub test: Dataset,
    /// The training faces, loaded when `z_printed` > 0.
    fonts: Vec<crate::fonts::Face>,
    /// The restoration candidates of each class, when printed digits are restored
    /// (`restore_printed`): all its training images, or those of typical ink
    /// ([`RestoreMatch::Typical`]).
    by_class: Vec<Vec<usize>>,
    /// The moving average of the weights, with `ema` > 0.
    pub ema: Option<crate::ema::Ema>,
}

impl Trainer {
    /// A fresh run (weights initialised from the seed).
    pub fn new(config: TrainConfig, train: Dataset, test: Dataset) -> Result<Self> {
        let varmap = VarMap::new();
        let model = Ign::new(
            &config.model,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        init_weights(&varmap, config.seed)?;
        let frozen = frozen_copy(&varmap, &config.model)?;
        let adam = Adam::new(trainable_vars(&varmap), config.adam.clone())?;
        let ema = if config.ema != 0.0 {
            Some(crate::ema::Ema::new(&trainable_vars(&varmap), config.ema)?)
        } else {
            None
        };
        let noise = Noise::new(config.noise, &train);
        if !(0.0..=1.0).contains(&config.z_mix)
            || !(0.0..=1.0).contains(&config.z_printed)
            || config.z_mix + config.z_printed > 1.0
        {
            bail!(
                "--z-mix {} and --z-printed {} must be fractions that add up to at most 1",
                config.z_mix,
                config.z_printed
            );
        }
        let restore = config.loss.lambda_restore;
        if !(restore.is_finite() && restore >= 0.0) {
            bail!("--lambda-restore {restore} must be a finite weight of at least 0");
        }
        let printed_restored = config.loss.restore_printed;
        if restore > 0.0 && config.z_mix <= 0.0 && !printed_restored {
            bail!(
                "--lambda-restore {restore} is taken over the corrupted z: set --z-mix above 0 too"
            );
        }
        if printed_restored && (restore <= 0.0 || config.z_printed <= 0.0) {
            bail!("--restore-printed needs --lambda-restore and --z-printed above 0");
        }
        if !printed_restored && config.loss.restore_match != RestoreMatch::Nearest {
            bail!("--restore-match picks the targets of --restore-printed: add --restore-printed");
        }
        let by_class = if printed_restored {
            let all = by_class(&train).context("--restore-printed")?;
            match config.loss.restore_match {
                RestoreMatch::Nearest => all,
                RestoreMatch::Typical => typical_ink(&train, all),
            }
        } else {
            Vec::new()
        };
        let fonts = if config.z_printed > 0.0 {
            if (train.channels, train.height) != (1, 28) {
                bail!("--z-printed renders 28x28 gray digits; this data is not MNIST-like");
            }
            let fonts = &config.z_fonts;
            fonts
                .catalogue()
                .and_then(|c| c.load_all())
                .with_context(|| {
                    format!("--z-printed with --z-fonts {fonts} needs each of its faces")
                })?
        } else {
            Vec::new()
        };
        Ok(Trainer {
            ema,
            fonts,
            by_class,
            sampler: BatchSampler::new(train.len(), config.seed),
            config,
            varmap,
            model,
            frozen,
            adam,
            step: 0,
            noise,
            train,
            test,
        })
    }

    /// Continue the run saved in `ck`.
    pub fn resume(ck: &checkpoint::Checkpoint, train: Dataset, test: Dataset) -> Result<Self> {
        let mut t = Trainer::new(ck.config.clone(), train, test)?;
        ck.restore_weights(&t.varmap)?;
        t.adam.load_state(&ck.tensors, ck.adam_t)?;
        if let Some(ema) = &mut t.ema {
            // the source of --from may have no average: it then starts at its weights
            if !ema.load(&ck.tensors)? {
                *ema = crate::ema::Ema::new(&trainable_vars(&t.varmap), ck.config.ema)?;
            }
        }
        t.step = ck.step;
        Ok(t)
    }

    /// The `z` batch of a given step (a pure function of seed and step): noise, and with
    /// `z_mix` that fraction of the batch made of corrupted training images (other images
    /// than the step's reconstruction batch, drawn at random), with `z_printed` that fraction
    /// rendered as printed digits (random digit and training face).
    pub fn noise_batch(&self, step: u64, n: usize) -> Result<Tensor> {
        Ok(self.z_batch(step, n)?.0)
    }

    /// [`Trainer::noise_batch`] with the restoration targets of its digits: the corrupted
    /// images as they were before corruption and, with `restore_printed`, the nearest
    /// restoration candidate of each printed digit's class ([`Trainer::nearest_of_class`];
    /// `[k, C, H, W]`, in the order of z from
    /// [`Trainer::noise_count`] on; `None` when z has none of them).
    pub fn z_batch(&self, step: u64, n: usize) -> Result<(Tensor, Option<Tensor>)> {
        let seed = self.config.seed;
        let (corrupted, printed) = self.z_counts(n);
        if corrupted + printed == 0 {
            return Ok((
                self.noise.sample(n, mix(seed, step, 0x2), &Device::Cpu)?,
                None,
            ));
        }
        let (c, h, w) = (self.train.channels, self.train.height, self.train.width);
        let mut z = self
            .noise
            .sample_vec(n - corrupted - printed, mix(seed, step, 0x2));
        let mut targets = Vec::with_capacity((corrupted + printed) * c * h * w);
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, step, 0xc0de));
        for _ in 0..corrupted {
            let i = rand::Rng::random_range(&mut rng, 0..self.train.len());
            let mut img = self.train.image(i).to_vec();
            targets.extend_from_slice(&img);
            crate::corrupt::Corruption::random(&mut img, (c, h, w), &mut rng);
            z.extend(img);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, step, 0xf0e7));
        for _ in 0..printed {
            let font = &self.fonts[rand::Rng::random_range(&mut rng, 0..self.fonts.len())].font;
            let digit = rand::Rng::random_range(&mut rng, 0..10u8);
            let img = crate::printed::render_digit(font, digit, h, &mut rng)?;
            if self.config.loss.restore_printed {
                let near = self.nearest_of_class(&img, digit)?;
                targets.extend_from_slice(self.train.image(near));
            }
            z.extend(img);
        }
        let k = targets.len() / (c * h * w);
        let targets = (k > 0)
            .then(|| Tensor::from_vec(targets, (k, c, h, w), &Device::Cpu))
            .transpose()?;
        Ok((Tensor::from_vec(z, (n, c, h, w), &Device::Cpu)?, targets))
    }

    /// The restoration candidate of class `class` nearest to `img` in L1 (the restoration
    /// target of a printed digit): among all its training images, or those of typical ink with
    /// [`RestoreMatch::Typical`]; an error when the class has none.
    pub fn nearest_of_class(&self, img: &[f32], class: u8) -> Result<usize> {
        let l1 = |i: usize| -> f32 {
            let t = self.train.image(i);
            t.iter().zip(img).map(|(a, b)| (a - b).abs()).sum()
        };
        self.by_class
            .get(class as usize)
            .and_then(|ids| {
                ids.iter()
                    .map(|&i| (l1(i), i))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
            })
            .map(|(_, i)| i)
            .with_context(|| format!("--restore-printed: no training image of class {class}"))
    }

    /// How many of `n` z are corrupted training images and how many printed digits (the rest,
    /// first in the batch, are noise).
    fn z_counts(&self, n: usize) -> (usize, usize) {
        let count = |f: f64| ((f.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
        let corrupted = count(self.config.z_mix);
        (corrupted, count(self.config.z_printed).min(n - corrupted))
    }

    /// How many of `n` z are noise (they come first in [`Trainer::noise_batch`]).
    pub fn noise_count(&self, n: usize) -> usize {
        let (c, p) = self.z_counts(n);
        n - c - p
    }

    /// Noise for samples and evaluation (fixed per seed, independent of the training stream).
    pub fn eval_noise(&self, n: usize, seed: u64) -> Result<Tensor> {
        self.noise.sample(n, mix(seed, 0, 0xe7a1), &Device::Cpu)
    }

    /// One optimisation step.
    pub fn step_once(&mut self) -> Result<LossTerms> {
        let idx = self.sampler.indices(self.step, self.config.batch);
        let x = self.train.batch(&idx, &Device::Cpu)?;
        let (z, sources) = self.z_batch(self.step, self.config.batch)?;
        let noise = self.noise_count(self.config.batch);
        let plan = ZPlan {
            tight_samples: match self.config.z_tight {
                ZTight::All => self.config.batch,
                ZTight::Noise => noise,
            },
            bn_split: (self.config.z_bn == ZBatchNorm::Separate).then_some(noise),
            restore: sources
                .filter(|_| self.config.loss.lambda_restore > 0.0)
                .map(|targets| Restore {
                    start: noise,
                    targets,
                }),
        };
        let (loss, terms) =
            ign_loss_planned(&self.model, &self.frozen, &x, &z, &self.config.loss, plan)?;
        if !terms.total.is_finite() {
            bail!(
                "loss became {} at step {}: lower --lr or check the data",
                terms.total,
                self.step
            );
        }
        let grads = loss.backward()?;
        self.adam.step(&grads)?;
        if let Some(ema) = &mut self.ema {
            ema.update(&trainable_vars(&self.varmap))?;
        }
        self.step += 1;
        Ok(terms)
    }

    /// Save a checkpoint of the current state.
    pub fn save(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &self.config,
            self.step,
            &self.varmap,
            Some(&self.adam),
            self.ema.as_ref(),
        )
    }
}

/// The indices of each class's training images (0 to 9 at least, for printed digits).
fn by_class(train: &Dataset) -> Result<Vec<Vec<usize>>> {
    let labels = train
        .labels
        .as_ref()
        .context("the data has no labels (IDX labels or one folder per class)")?;
    let classes = (labels.iter().copied().max().unwrap_or(0) as usize + 1).max(10);
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    Ok(by_class)
}

/// Of each class's images, those with the middle half of its ink amounts (the sum of their
/// pixels): the restoration targets of `--restore-match typical`. A class with any image
/// keeps at least one.
pub fn typical_ink(train: &Dataset, by_class: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    let ink: Vec<f32> = (0..train.len())
        .map(|i| train.image(i).iter().sum())
        .collect();
    by_class
        .into_iter()
        .map(|mut ids| {
            ids.sort_by(|&a, &b| ink[a].total_cmp(&ink[b]).then(a.cmp(&b)));
            let n = ids.len();
            ids[n / 4..n - n / 4].to_vec()
        })
        .collect()
}

/// Training stopped by SIGINT/SIGTERM after saving its checkpoint: the caller decides how to
/// exit (`ign-train` exits 130).
#[derive(Debug)]
pub struct Interrupted {
    pub step: u64,
    pub checkpoint: PathBuf,
    /// How to continue: `--resume`, or for a recipe its command again.
    pub resume_with: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted: checkpoint saved at step {} in {} (continue with {})",
            self.step,
            self.checkpoint.display(),
            self.resume_with
        )
    }
}

impl std::error::Error for Interrupted {}

/// Load the data, create or resume the run in `opts.out`, and train until `opts.steps`.
///
/// Writes into the run folder: `checkpoint.safetensors`, `log.csv`, `loss.png`,
/// `samples/step-NNNNNNN.png` and `samples/latest.png` (rows: x, f(x), z, f(z), f(f(z))).
/// SIGINT/SIGTERM save a checkpoint before exiting.
pub fn run(
    config: TrainConfig,
    data_path: &Path,
    data_opts: &DataOptions,
    opts: &RunOptions,
) -> Result<Trainer> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create the run folder", opts.out.display()))?;
    let ck_path = opts.out.join(CHECKPOINT_FILE);
    let ck = starting_state(&config, opts, &ck_path)?;
    let (mut trainer, description) = open_trainer(config, ck, data_path, data_opts, &ck_path)?;
    if trainer.step >= opts.steps {
        log::info!(
            "{}: already at step {} of {}; nothing to do (raise --steps to train longer)",
            opts.out.display(),
            trainer.step,
            opts.steps
        );
        return Ok(trainer);
    }
    if !opts.quiet {
        log::info!(
            "training {} params ({}x{}x{}, width {}) on {} — {} train / {} test images, batch {}, from step {} to {}",
            trainer.config.model.num_params(),
            trainer.config.model.channels,
            trainer.config.model.image_size,
            trainer.config.model.image_size,
            trainer.config.model.width,
            description,
            trainer.train.len(),
            trainer.test.len(),
            trainer.config.batch,
            trainer.step,
            opts.steps
        );
    }
    train_until(&mut trainer, opts, ck_path)?;
    Ok(trainer)
}

/// The checkpoint the run starts from: its own (`--resume`), another run's (`--from`, with this
/// invocation's z sources, learning rate and restoration weight), or none (a fresh run). An existing run is never overwritten.
fn starting_state(
    config: &TrainConfig,
    opts: &RunOptions,
    ck_path: &Path,
) -> Result<Option<checkpoint::Checkpoint>> {
    let existing = ck_path.exists();
    if existing && !opts.resume {
        bail!(
            "{}: a run already exists here; pass --resume to continue it, or choose another --out",
            ck_path.display()
        );
    }
    Ok(if existing {
        Some(checkpoint::load(ck_path)?)
    } else if let Some(from) = &opts.from {
        let src = from.join(CHECKPOINT_FILE);
        let mut ck = checkpoint::load(&src)
            .with_context(|| format!("{}: cannot start from this run", from.display()))?;
        log::info!(
            "starting {} from {} at step {} with z-mix {}, z-printed {}, z-fonts {}, z-tight {:?}, z-bn {:?}, lr {}, lambda-restore {}, restore-printed {} (were {}, {}, {}, {:?}, {:?}, {}, {}, {})",
            opts.out.display(),
            src.display(),
            ck.step,
            config.z_mix,
            config.z_printed,
            config.z_fonts,
            config.z_tight,
            config.z_bn,
            config.adam.lr,
            config.loss.lambda_restore,
            config.loss.restore_printed,
            ck.config.z_mix,
            ck.config.z_printed,
            ck.config.z_fonts,
            ck.config.z_tight,
            ck.config.z_bn,
            ck.config.adam.lr,
            ck.config.loss.lambda_restore,
            ck.config.loss.restore_printed
        );
        ck.config.adam.lr = config.adam.lr;
        ck.config.loss.lambda_restore = config.loss.lambda_restore;
        ck.config.loss.restore_printed = config.loss.restore_printed;
        if ck.config.loss.restore_match != config.loss.restore_match {
            log::info!(
                "restoration targets --restore-match {:?} (was {:?})",
                config.loss.restore_match,
                ck.config.loss.restore_match
            );
            ck.config.loss.restore_match = config.loss.restore_match;
        }
        ck.config.z_mix = config.z_mix;
        ck.config.z_printed = config.z_printed;
        ck.config.z_fonts = config.z_fonts.clone();
        if ck.config.ema != config.ema {
            log::info!(
                "weight average --ema {} (was {})",
                config.ema,
                ck.config.ema
            );
            ck.config.ema = config.ema;
        }
        if let Some(batch) = opts.from_batch {
            log::info!("batch {batch} (was {})", ck.config.batch);
            ck.config.batch = batch;
        }
        ck.config.z_tight = config.z_tight;
        ck.config.z_bn = config.z_bn;
        ck.config.recipe = config.recipe.clone();
        Some(ck)
    } else {
        None
    })
}

/// Load the data (in the checkpoint's shape when there is one) and build the trainer; also
/// returns the data's description.
fn open_trainer(
    config: TrainConfig,
    ck: Option<checkpoint::Checkpoint>,
    data_path: &Path,
    data_opts: &DataOptions,
    ck_path: &Path,
) -> Result<(Trainer, String)> {
    // A resumed run keeps its own model and data settings.
    let mut data_opts = data_opts.clone();
    let config = match &ck {
        Some(ck) => {
            if ck_path.exists() && ck.config != config {
                log::info!(
                    "resuming {}: using the checkpoint's settings (seed {}, batch {}, width {})",
                    ck_path.display(),
                    ck.config.seed,
                    ck.config.batch,
                    ck.config.model.width
                );
            }
            data_opts.image_size = Some(ck.config.model.image_size);
            data_opts.channels = Some(ck.config.model.channels);
            ck.config.clone()
        }
        None => config,
    };
    let split = data::load(data_path, &data_opts)?;
    if (split.train.channels, split.train.height)
        != (config.model.channels, config.model.image_size)
    {
        bail!(
            "{}: images are {}x{}x{}, the model expects {}x{}x{} (set --image-size/--channels)",
            data_path.display(),
            split.train.channels,
            split.train.height,
            split.train.width,
            config.model.channels,
            config.model.image_size,
            config.model.image_size
        );
    }
    let trainer = match &ck {
        Some(ck) => Trainer::resume(ck, split.train, split.test)?,
        None => Trainer::new(config, split.train, split.test)?,
    };
    Ok((trainer, split.description))
}

/// Train `trainer` until `opts.steps`, logging every step, writing samples and checkpoints;
/// SIGINT/SIGTERM save a checkpoint and return [`Interrupted`].
fn train_until(trainer: &mut Trainer, opts: &RunOptions, ck_path: PathBuf) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }

    let log_path = opts.out.join("log.csv");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("{}: cannot open the log", log_path.display()))?;
    // The restoration term gets a last column in runs that have it (a run's loss settings
    // never change on --resume, so a log keeps one layout).
    let restoring = trainer.config.loss.lambda_restore > 0.0;
    if log.metadata()?.len() == 0 {
        let extra = if restoring { ",restore" } else { "" };
        writeln!(log, "step,total,rec,idem,tight,seconds{extra}")?;
    }
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(opts.steps).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap(),
        )
    };
    bar.set_position(trainer.step);
    let t0 = Instant::now();
    let first = trainer.step;
    let mut last_saved = trainer.step;
    while trainer.step < opts.steps {
        let ts = Instant::now();
        let terms = trainer.step_once()?;
        let dt = ts.elapsed().as_secs_f64();
        let extra = if restoring {
            format!(",{:.6}", terms.restore)
        } else {
            String::new()
        };
        writeln!(
            log,
            "{},{:.6},{:.6},{:.6},{:.6},{:.4}{extra}",
            trainer.step, terms.total, terms.rec, terms.idem, terms.tight, dt
        )?;
        let ips = (trainer.step - first) as f64 * trainer.config.batch as f64
            / t0.elapsed().as_secs_f64();
        bar.set_position(trainer.step);
        let restore = if restoring {
            format!(" restore {:.3}", terms.restore)
        } else {
            String::new()
        };
        bar.set_message(format!(
            "loss {:.3} rec {:.3} idem {:.3} tight {:.3}{restore} | {ips:.0} img/s",
            terms.total, terms.rec, terms.idem, terms.tight
        ));
        let interrupted = stop.load(Ordering::Relaxed);
        let done = trainer.step >= opts.steps;
        if opts.sample_every > 0 && (trainer.step.is_multiple_of(opts.sample_every) || done) {
            log.flush()?;
            let z = trainer.eval_noise(8, trainer.config.seed)?;
            samples::write_samples(&trainer.model, &trainer.test, &z, trainer.step, &opts.out)?;
            samples::write_loss_plot(&log_path, &opts.out.join("loss.png"))?;
        }
        if interrupted
            || done
            || (opts.checkpoint_every > 0 && trainer.step.is_multiple_of(opts.checkpoint_every))
        {
            log.flush()?;
            trainer.save(&ck_path)?;
            last_saved = trainer.step;
        }
        if interrupted {
            bar.abandon();
            return Err(Interrupted {
                step: trainer.step,
                checkpoint: ck_path,
                resume_with: "--resume".into(),
            }
            .into());
        }
    }
    debug_assert_eq!(last_saved, trainer.step);
    bar.finish();
    if !opts.quiet {
        log::info!(
            "done: step {} in {:.1} s; checkpoint {}; samples {}",
            trainer.step,
            t0.elapsed().as_secs_f64(),
            ck_path.display(),
            opts.out.join("samples/latest.png").display()
        );
    }
    Ok(())
}
