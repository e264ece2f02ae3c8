//! A training session in a run folder: create, resume or start it from another run's state,
//! then train until the steps, with the log, samples and checkpoints; SIGINT/SIGTERM save a
//! checkpoint first.

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
use crate::train::log::{LogRow, LogWriter};
use crate::train::loss::LossTerms;
use crate::train::trainer::Trainer;

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
    Ok(Some(ck))
}

/// What a run started `--from` another takes from this invocation: the z sources, the
/// learning rate, the restoration options, the moving average, the recipe stage and (when
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
    run.recipe = new.recipe.clone();
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
    let mut log = LogWriter::append(&log_path)?;
    let restoring = trainer.config.loss.lambda_restore > 0.0;
    let bar = progress_bar(opts, trainer.step);
    let t0 = Instant::now();
    let first = trainer.step;
    while trainer.step < opts.steps {
        let ts = Instant::now();
        let terms = trainer.step_once()?;
        let dt = ts.elapsed().as_secs_f64();
        log.write(&LogRow::new(trainer.step, &terms, dt, restoring))?;
        let ips = (trainer.step - first) as f64 * trainer.config.batch as f64
            / t0.elapsed().as_secs_f64();
        bar.set_position(trainer.step);
        bar.set_message(progress(&terms, ips, restoring));
        let interrupted = stop.load(Ordering::Relaxed);
        let done = trainer.step >= opts.steps;
        if opts.sample_every > 0 && (trainer.step.is_multiple_of(opts.sample_every) || done) {
            log.flush()?;
            let z = trainer.eval_noise(8, trainer.config.seed)?;
            samples::write_samples(&trainer.model, &trainer.test, &z, trainer.step, &opts.out)?;
            samples::write_loss_plot(&log_path, &opts.out.join("loss.png"))?;
        }
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
    }
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

/// The progress bar to `opts.steps`, at `step` (hidden when quiet).
fn progress_bar(opts: &RunOptions, step: u64) -> ProgressBar {
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("a valid progress template");
        ProgressBar::new(opts.steps).with_style(style)
    };
    bar.set_position(step);
    bar
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
