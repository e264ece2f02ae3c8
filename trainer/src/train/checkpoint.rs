//! Checkpoints: one safetensors file holding the weights (`model/<name>`, BN running statistics
//! included), the Adam moments (`adam.m/<name>`, `adam.v/<name>`), with `--ema` the moving
//! average of the weights (`ema/<name>`, see [`crate::train::ema`]) and, in its metadata, the
//! step, the Adam step count, the seconds of training spent in the run folder (`ign.seconds`,
//! what `--minutes` counts) and the whole training configuration (JSON).
//!
//! The random state needs no saving: data order and noise are pure functions of
//! `(seed, step)` (see [`crate::data::BatchSampler`]), so a resumed run is exact.
//! Files are written atomically (temporary file, fsync, rename).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::Path;

use crate::model::Ign;
use crate::train::config::TrainConfig;
use crate::train::optim::Adam;

/// The file name of the checkpoint inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// A loaded checkpoint.
pub struct Checkpoint {
    pub config: TrainConfig,
    pub step: u64,
    pub adam_t: u64,
    /// Seconds of training spent in the run folder it was saved in (0 in checkpoints from
    /// before time budgets).
    pub seconds: f64,
    pub tensors: HashMap<String, Tensor>,
}

/// Write a checkpoint atomically.
pub fn save(
    path: &Path,
    config: &TrainConfig,
    step: u64,
    seconds: f64,
    varmap: &VarMap,
    adam: Option<&Adam>,
    ema: Option<&crate::train::ema::Ema>,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (format!("model/{k}"), v.as_tensor().clone()))
        .collect();
    if let Some(a) = adam {
        tensors.extend(a.state());
    }
    if let Some(e) = ema {
        tensors.extend(e.state());
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut meta = HashMap::new();
    meta.insert("ign.step".to_string(), step.to_string());
    meta.insert("ign.seconds".to_string(), format!("{seconds:.3}"));
    meta.insert(
        "ign.adam_t".to_string(),
        adam.map(|a| a.t).unwrap_or(0).to_string(),
    );
    meta.insert("ign.config".to_string(), serde_json::to_string(config)?);
    meta.insert(
        "ign.trainer".to_string(),
        format!("ign-train {}", env!("CARGO_PKG_VERSION")),
    );
    let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
        .context("cannot serialize checkpoint")?;
    ign_core::fsio::atomic_write(path, &bytes)
}

/// Read a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    // a checkpoint holds the weights and two Adam moments: far below this
    const MAX_CHECKPOINT: u64 = 4 << 30;
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_CHECKPOINT) {
        anyhow::bail!(
            "{}: larger than 4 GiB, not an ign-train checkpoint",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "{}: cannot read checkpoint (give a run folder's {CHECKPOINT_FILE})",
            path.display()
        )
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors checkpoint ({e})", path.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: not an ign-train checkpoint (metadata {k} missing)",
                path.display()
            )
        })
    };
    let config: TrainConfig = serde_json::from_str(&get("ign.config")?)
        .with_context(|| format!("{}: bad ign.config metadata", path.display()))?;
    // the network is built from these before any tensor is checked: bound them first
    let m = &config.model;
    if !matches!(m.channels, 1 | 3)
        || !matches!(m.image_size, 28 | 32 | 64)
        || !(1..=1024).contains(&m.width)
        || !(1..=65_536).contains(&config.batch)
    {
        anyhow::bail!(
            "{}: ign.config describes no network ign-train builds (channels {}, size {}, width {}, batch {}); the checkpoint is corrupt",
            path.display(),
            m.channels,
            m.image_size,
            m.width,
            config.batch
        );
    }
    let step = get("ign.step")?.parse()?;
    let adam_t = get("ign.adam_t")?.parse()?;
    let seconds = match meta.get("ign.seconds") {
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("{}: bad ign.seconds {s:?}", path.display()))?,
        None => 0.0,
    };
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("{}: corrupt checkpoint tensors", path.display()))?;
    Ok(Checkpoint {
        config,
        step,
        adam_t,
        seconds,
        tensors,
    })
}

impl Checkpoint {
    /// Copy the weights into the variables of `varmap` (which must hold the same model).
    pub fn restore_weights(&self, varmap: &VarMap) -> Result<()> {
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let Some(t) = self.tensors.get(&format!("model/{name}")) else {
                bail!("checkpoint lacks weight {name}");
            };
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// Whether it holds a moving average of the weights (a run with `--ema`).
    pub fn has_ema(&self) -> bool {
        crate::train::ema::has_shadows(&self.tensors)
    }

    /// Copy the moving average of the weights into `varmap` (BatchNorm running statistics,
    /// which are not averaged, stay as they are).
    pub fn restore_ema_weights(&self, varmap: &VarMap) -> Result<()> {
        for (name, var) in crate::train::trainable_vars(varmap) {
            let Some(t) = self
                .tensors
                .get(&format!("{}{name}", crate::train::ema::PREFIX))
            else {
                bail!("checkpoint lacks the moving average of {name}");
            };
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// The model in it, with its own variables.
    pub fn model(&self) -> Result<(Ign, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Ign::new(&self.config.model, vb)?;
        self.restore_weights(&varmap)?;
        Ok((model, varmap))
    }
}

/// Load the model of a checkpoint file, of a run folder holding one, or of a recipe's run
/// folder (its last stage's, [`crate::train::recipe::checkpoint_file`]).
pub fn load_model(path: &Path) -> Result<(Ign, Checkpoint)> {
    let ck = load(&crate::train::recipe::checkpoint_file(path)?)?;
    let (model, _vm) = ck.model()?;
    Ok((model, ck))
}
