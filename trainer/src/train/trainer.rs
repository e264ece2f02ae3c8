//! One training session's state and step: the model `f`, its frozen copy, Adam, the moving
//! average, the data and the source of `z`; [`Trainer::step_once`] is one optimisation step.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::Path;

use crate::data::augment::augment_batch;
use crate::data::{mix, BatchSampler, Dataset};
use crate::model::{Ign, ModelConfig};
use crate::ops::Kernels;
use crate::train::checkpoint;
use crate::train::config::{TrainConfig, ZBatchNorm, ZTight};
use crate::train::loss::{ign_loss_planned, LossTerms, Restore, RestoreMatch, ZPlan};
use crate::train::optim::Adam;
use crate::z::batch::{by_class, typical_ink, ZSource};
use crate::z::noise::Noise;

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

/// A live training session: model, frozen copy, optimizer, data and the source of `z`.
pub struct Trainer {
    pub config: TrainConfig,
    pub varmap: VarMap,
    pub model: Ign,
    frozen: Ign,
    pub adam: Adam,
    pub step: u64,
    /// Seconds of training spent in this run folder (what `--minutes` counts).
    pub seconds: f64,
    sampler: BatchSampler,
    /// Where each step's `z` comes from.
    pub z: ZSource,
    pub train: Dataset,
    pub test: Dataset,
    /// The moving average of the weights, with `ema` > 0.
    pub ema: Option<crate::train::ema::Ema>,
}

impl Trainer {
    /// A fresh run (weights initialised from the seed).
    pub fn new(config: TrainConfig, train: Dataset, test: Dataset) -> Result<Self> {
        check(&config)?;
        let varmap = VarMap::new();
        let model = Ign::new(
            &config.model,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        init_weights(&varmap, config.seed)?;
        let frozen = frozen_copy(&varmap, &config.model)?;
        let adam = Adam::new(trainable_vars(&varmap), config.adam.clone())?;
        let ema = if config.ema != 0.0 {
            Some(crate::train::ema::Ema::new(
                &trainable_vars(&varmap),
                config.ema,
            )?)
        } else {
            None
        };
        let z = z_source(&config, &train)?;
        Ok(Trainer {
            ema,
            z,
            sampler: BatchSampler::new(train.len(), config.seed),
            config,
            varmap,
            model,
            frozen,
            adam,
            step: 0,
            seconds: 0.0,
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
                *ema = crate::train::ema::Ema::new(&trainable_vars(&t.varmap), ck.config.ema)?;
            }
        }
        t.step = ck.step;
        t.seconds = ck.seconds;
        Ok(t)
    }

    /// Run the model and its frozen copy on `kernels` (default: the fast and fused ones).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.model.set_kernels(kernels);
        self.frozen.set_kernels(kernels);
    }

    /// The `z` batch of a given step (a pure function of seed and step): noise, and with
    /// `z_mix` that fraction of the batch made of corrupted training images, with `z_printed`
    /// that fraction rendered as printed digits ([`ZSource::batch`]).
    pub fn noise_batch(&self, step: u64, n: usize) -> Result<Tensor> {
        Ok(self.z_batch(step, n)?.0)
    }

    /// [`Trainer::noise_batch`] with the restoration targets of its digits
    /// ([`ZSource::batch`]).
    pub fn z_batch(&self, step: u64, n: usize) -> Result<(Tensor, Option<Tensor>)> {
        self.z.batch(&self.train, step, n)
    }

    /// How many of `n` z are noise (they come first in [`Trainer::noise_batch`]).
    pub fn noise_count(&self, n: usize) -> usize {
        self.z.noise_count(n)
    }

    /// Noise for samples and evaluation (fixed per seed, independent of the training stream).
    pub fn eval_noise(&self, n: usize, seed: u64) -> Result<Tensor> {
        self.z.noise.sample(n, mix(seed, 0, 0xe7a1), &Device::Cpu)
    }

    /// One optimisation step.
    pub fn step_once(&mut self) -> Result<LossTerms> {
        let idx = self.sampler.indices(self.step, self.config.batch);
        let mut pixels = self.train.gather(&idx);
        let (augment, shape) = (self.config.augment, self.train.shape());
        augment_batch(augment, &mut pixels, shape, self.config.seed, self.step)?;
        let x = self.train.tensor(pixels, &Device::Cpu)?;
        // reconstruction alone (an autoencoder) never reads z: none is drawn or corrupted
        // (drawn, z may bring restoration targets, hence `true`)
        let (z, sources) = if self.config.loss.reads_z(true) {
            self.z_batch(self.step, self.config.batch)?
        } else {
            (x.clone(), None)
        };
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
            self.seconds,
            &self.varmap,
            Some(&self.adam),
            self.ema.as_ref(),
        )
    }
}

/// Refuse z fractions and restoration settings that do not make a run.
fn check(config: &TrainConfig) -> Result<()> {
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
        bail!("--lambda-restore {restore} is taken over the corrupted z: set --z-mix above 0 too");
    }
    if printed_restored && (restore <= 0.0 || config.z_printed <= 0.0) {
        bail!("--restore-printed needs --lambda-restore and --z-printed above 0");
    }
    if !printed_restored && config.loss.restore_match != RestoreMatch::Nearest {
        bail!("--restore-match picks the targets of --restore-printed: add --restore-printed");
    }
    Ok(())
}

/// The source of a run's `z`: its noise, the faces of its printed digits and the restoration
/// candidates of each class.
fn z_source(config: &TrainConfig, train: &Dataset) -> Result<ZSource> {
    let candidates = if config.loss.restore_printed {
        let all = by_class(train).context("--restore-printed")?;
        Some(match config.loss.restore_match {
            RestoreMatch::Nearest => all,
            RestoreMatch::Typical => typical_ink(train, all),
        })
    } else {
        None
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
    Ok(ZSource {
        noise: Noise::new(config.noise, train),
        seed: config.seed,
        z_mix: config.z_mix,
        z_printed: config.z_printed,
        fonts,
        candidates,
    })
}
