//! A training session in a run folder: create, resume or start it from another run's state,
//! then train until the steps or the time budget, with the log, samples and checkpoints;
//! SIGINT/SIGTERM save a checkpoint first.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::data::{self, DataOptions};
use crate::eval::samples;
use crate::train::checkpoint::{self, CHECKPOINT_FILE};
use crate::train::config::TrainConfig;
use crate::train::heldout;
use crate::train::log::{LogRow, LogWriter};
use crate::train::loss::LossTerms;
use crate::train::trainer::Trainer;

/// Options of one training invocation that are not part of the run's identity.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    /// Train until this many steps in total (a resumed run counts its earlier steps;
    /// `u64::MAX`: no limit but the time budget).
    pub steps: u64,
    /// Stop when the training time spent in this run folder reaches this many minutes (earlier
    /// invocations' time counts; a run started `--from` another starts at 0), the checkpoint
    /// saved; `None`: no budget.
    pub minutes: Option<f64>,
    pub resume: bool,
    /// Start from another run's folder (state and step), with this invocation's `z_mix`.
    pub from: Option<PathBuf>,
    /// With `from`: a batch size that replaces the source run's (None: keep it).
    pub from_batch: Option<usize>,
    /// With `from`: loss weights that replace the source run's.
    pub from_weights: FromWeights,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Hide the progress bar (tests).
    pub quiet: bool,
}

/// The idempotence and tightness weights of a run started `--from` another, when given (`None`:
/// the source run's): a reconstruction warm-up (both 0) hands over to the IGN objective.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FromWeights {
    pub lambda_idem: Option<f64>,
    pub lambda_tight: Option<f64>,
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
    if let Some(m) = opts.minutes.filter(|&m| trainer.seconds >= m * 60.0) {
        log::info!(
            "{}: already trained {:.1} of {m} minutes; nothing to do (raise --minutes to train longer)",
            opts.out.display(),
            trainer.seconds / 60.0
        );
        return Ok(trainer);
    }
    if !opts.quiet {
        log::info!(
            "training {} params ({}x{}x{}, width {}) on {} — {} train / {} test images, batch {}, from step {} {}",
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
            until(opts, trainer.seconds)
        );
    }
    train_until(&mut trainer, opts, ck_path)?;
    Ok(trainer)
}

/// The checkpoint the run starts from: its own (`--resume`), another run's (`--from`, with this
/// invocation's z sources, learning rate and restoration weight), or none (a fresh run). An
/// existing run is never overwritten.
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
    if existing {
        return Ok(Some(checkpoint::load(ck_path)?));
    }
    let Some(from) = &opts.from else {
        return Ok(None);
    };
    let src = from.join(CHECKPOINT_FILE);
    let mut ck = checkpoint::load(&src)
        .with_context(|| format!("{}: cannot start from this run", from.display()))?;
    let (new, old) = (config, &ck.config);
    log::info!(
        "starting {} from {} at step {} with z-mix {}, z-printed {}, z-fonts {}, z-tight {:?}, z-bn {:?}, lr {}, lambda-restore {}, restore-printed {} (were {}, {}, {}, {:?}, {:?}, {}, {}, {})",
        opts.out.display(),
        src.display(),
        ck.step,
        new.z_mix,
        new.z_printed,
        new.z_fonts,
        new.z_tight,
        new.z_bn,
        new.adam.lr,
        new.loss.lambda_restore,
        new.loss.restore_printed,
        old.z_mix,
        old.z_printed,
        old.z_fonts,
        old.z_tight,
        old.z_bn,
        old.adam.lr,
        old.loss.lambda_restore,
        old.loss.restore_printed
    );
    take_invocation_settings(&mut ck.config, config, opts.from_batch);
    take_weights(&mut ck.config, opts.from_weights);
    // a time budget counts the training done in this run folder
    ck.seconds = 0.0;
    Ok(Some(ck))
}

/// What a run started `--from` another takes from this invocation: the z sources, the
/// augmentation, the learning rate, the restoration options, the moving average, the recipe stage and (when
/// given) the batch size; model, data, seed and the other loss weights stay the source's.
fn take_invocation_settings(run: &mut TrainConfig, new: &TrainConfig, batch: Option<usize>) {
    if run.loss.restore_match != new.loss.restore_match {
        log::info!(
            "restoration targets --restore-match {:?} (was {:?})",
            new.loss.restore_match,
            run.loss.restore_match
        );
    }
    if run.ema != new.ema {
        log::info!("weight average --ema {} (was {})", new.ema, run.ema);
    }
    if let Some(batch) = batch {
        log::info!("batch {batch} (was {})", run.batch);
        run.batch = batch;
    }
    run.adam.lr = new.adam.lr;
    run.loss.lambda_restore = new.loss.lambda_restore;
    run.loss.restore_printed = new.loss.restore_printed;
    run.loss.restore_match = new.loss.restore_match;
    run.z_mix = new.z_mix;
    run.z_printed = new.z_printed;
    run.z_fonts = new.z_fonts.clone();
    run.ema = new.ema;
    run.z_tight = new.z_tight;
    run.z_bn = new.z_bn;
    if run.augment != new.augment {
        log::info!(
            "augmentation --augment {} (was {})",
            new.augment,
            run.augment
        );
    }
    run.augment = new.augment;
    run.recipe = new.recipe.clone();
}

/// The loss weights of `weights` that are given replace those of `run`.
fn take_weights(run: &mut TrainConfig, weights: FromWeights) {
    let loss = &mut run.loss;
    for (name, given, weight) in [
        ("idem", weights.lambda_idem, &mut loss.lambda_idem),
        ("tight", weights.lambda_tight, &mut loss.lambda_tight),
    ] {
        if let Some(w) = given.filter(|w| w != weight) {
            log::info!("--lambda-{name} {w} (was {weight})");
            *weight = w;
        }
    }
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
    // A resumed run, or one started from another, keeps its model and data settings.
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
            // the held-out split stays the run's: export calibrates on it
            data_opts.test_fraction = ck.config.test_fraction;
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

/// Where the run stops, for the log: `to step N`, `for M minutes`, or both.
fn until(opts: &RunOptions, seconds: f64) -> String {
    let steps = (opts.steps < u64::MAX).then(|| format!("to step {}", opts.steps));
    let time = opts.minutes.map(|m| {
        let spent = if seconds > 0.0 {
            format!(", {:.1} spent", seconds / 60.0)
        } else {
            String::new()
        };
        format!("for a budget of {m} minutes{spent}")
    });
    [steps, time]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Train `trainer` until `opts.steps` or its time budget, logging every step, writing samples
/// and checkpoints; SIGINT/SIGTERM save a checkpoint and return [`Interrupted`].
fn train_until(trainer: &mut Trainer, opts: &RunOptions, ck_path: PathBuf) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }
    let log_path = opts.out.join("log.csv");
    let mut log = LogWriter::append(&log_path)?;
    let restoring = trainer.config.loss.lambda_restore > 0.0;
    let budget = opts.minutes.map(|m| m * 60.0);
    let bar = progress_bar(opts, trainer);
    let (t0, spent) = (Instant::now(), trainer.seconds);
    let first = trainer.step;
    let mut watch = heldout::Watch::default();
    let mut heldout_rec = None;
    loop {
        let ts = Instant::now();
        let terms = trainer.step_once()?;
        watch.step(terms.rec);
        let dt = ts.elapsed().as_secs_f64();
        log.write(&LogRow::new(trainer.step, &terms, dt, restoring))?;
        let ips = (trainer.step - first) as f64 * trainer.config.batch as f64
            / t0.elapsed().as_secs_f64();
        let interrupted = stop.load(Ordering::Relaxed);
        trainer.seconds = spent + t0.elapsed().as_secs_f64();
        let out_of_time = budget.is_some_and(|b| trainer.seconds >= b);
        let done = trainer.step >= opts.steps || out_of_time;
        if opts.sample_every > 0 && (trainer.step.is_multiple_of(opts.sample_every) || done) {
            log.flush()?;
            let z = trainer.eval_noise(8, trainer.config.seed)?;
            samples::write_samples(&trainer.model, &trainer.test, &z, trainer.step, &opts.out)?;
            samples::write_loss_plot(&log_path, &opts.out.join("loss.png"))?;
            let csv = opts.out.join("heldout.csv");
            let distance = trainer.config.loss.distance;
            let row = watch.measure(&trainer.model, &trainer.test, distance, trainer.step, &csv)?;
            heldout_rec = row.map(|r| r.heldout_rec).or(heldout_rec);
        }
        // the time of the samples counts too
        trainer.seconds = spent + t0.elapsed().as_secs_f64();
        let mut msg = progress(&terms, ips, restoring);
        if let Some(h) = heldout_rec {
            msg += &format!(" | held-out rec {h:.3}");
        }
        show(&bar, trainer, budget, msg);
        let every = opts.checkpoint_every;
        if interrupted || done || (every > 0 && trainer.step.is_multiple_of(every)) {
            log.flush()?;
            trainer.save(&ck_path)?;
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
        if done {
            break;
        }
    }
    bar.finish();
    if !opts.quiet {
        let reached = match opts.minutes {
            Some(m) if trainer.step < opts.steps => {
                format!("time budget of {m} minutes reached (continue with a larger --minutes)")
            }
            _ => "done".into(),
        };
        log::info!(
            "{reached}: step {} in {:.1} s; checkpoint {}; samples {}",
            trainer.step,
            t0.elapsed().as_secs_f64(),
            ck_path.display(),
            opts.out.join("samples/latest.png").display()
        );
    }
    Ok(())
}

/// The progress bar (hidden when quiet): to `opts.steps`, or with a time budget over its
/// seconds, so that its ETA is the time left of the budget.
fn progress_bar(opts: &RunOptions, trainer: &Trainer) -> ProgressBar {
    if opts.quiet {
        return ProgressBar::hidden();
    }
    let (len, template) = match opts.minutes {
        Some(m) => (
            (m * 60.0).ceil() as u64,
            "{bar:30} {prefix} [{elapsed_precise}, {left} of the budget left] {msg}",
        ),
        None => (
            opts.steps,
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .with_key(
            "left",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let s = state.len().unwrap_or(0).saturating_sub(state.pos());
                let _ = write!(w, "{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
            },
        );
    let bar = ProgressBar::new(len).with_style(style);
    show(&bar, trainer, opts.minutes.map(|m| m * 60.0), String::new());
    bar
}

/// Move the bar to where `trainer` is: its step, or with a `budget` its seconds.
fn show(bar: &ProgressBar, trainer: &Trainer, budget: Option<f64>, msg: String) {
    match budget {
        Some(b) => {
            bar.set_position((trainer.seconds.min(b)) as u64);
            bar.set_prefix(format!("step {}", trainer.step));
        }
        None => bar.set_position(trainer.step),
    }
    bar.set_message(msg);
}
/// The progress bar's message: the loss terms and the speed.
fn progress(terms: &LossTerms, ips: f64, restoring: bool) -> String {
    let restore = if restoring {
        format!(" restore {:.3}", terms.restore)
    } else {
        String::new()
    };
    format!(
        "loss {:.3} rec {:.3} idem {:.3} tight {:.3}{restore} | {ips:.0} img/s",
        terms.total, terms.rec, terms.idem, terms.tight
    )
}
