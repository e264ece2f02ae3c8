//! An exponential moving average of the weights (`ign-train train --ema DECAY`).
//!
//! After every optimizer step each trainable weight's shadow moves towards it:
//! `shadow = decay · shadow + (1 − decay) · weight`. With a decay of 0.999 the shadow is an
//! average over about the last 1,000 steps, so a checkpoint stands for a stretch of training
//! rather than for its last, noisy step. Checkpoints keep the shadows as `ema/<name>`, and
//! `ign-train export` writes them instead of the last weights (`--raw-weights` for those).
//! BatchNorm running statistics are not averaged: export measures them again anyway.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use ign_train::train::ema::Ema;
//!
//! let w = Var::from_tensor(&Tensor::new(&[0f32, 10.0], &Device::Cpu)?)?;
//! let vars = vec![("w".to_string(), w.clone())];
//! let mut ema = Ema::new(&vars, 0.9)?;
//! w.set(&Tensor::new(&[10f32, 0.0], &Device::Cpu)?)?;
//! ema.update(&vars)?;
//! let shadow = ema.state()[0].1.to_vec1::<f32>()?;
//! assert!((shadow[0] - 1.0).abs() < 1e-6 && (shadow[1] - 9.0).abs() < 1e-6);
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use std::collections::HashMap;

/// The prefix of the shadows' names in a checkpoint.
pub const PREFIX: &str = "ema/";

/// Whether `tensors` (a checkpoint's) hold shadows.
pub fn has_shadows(tensors: &HashMap<String, Tensor>) -> bool {
    tensors.keys().any(|k| k.starts_with(PREFIX))
}

/// The shadow weights and their decay.
pub struct Ema {
    decay: f64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Shadows equal to the current values of `vars` (the trainable weights, by name).
    pub fn new(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            bail!("--ema {decay}: the decay is at least 0 and below 1 (0.999 averages about the last 1,000 steps)");
        }
        let shadow = vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Ema { decay, shadow })
    }

    /// Take the shadows saved in a checkpoint's `tensors` (`ema/<name>`). Returns false, and
    /// keeps the current ones, when it has none (a run started with `--from` a run without
    /// `--ema` starts its average at the weights it starts from); an error when it has only
    /// some or of other shapes.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>) -> Result<bool> {
        if !has_shadows(tensors) {
            return Ok(false);
        }
        for (name, t) in &mut self.shadow {
            let Some(saved) = tensors.get(&format!("{PREFIX}{name}")) else {
                bail!("the checkpoint's moving average lacks {name}: the checkpoint is corrupt");
            };
            if saved.dims() != t.dims() {
                bail!(
                    "the checkpoint's moving average of {name} is {:?}, the weight {:?}: the checkpoint is corrupt",
                    saved.dims(),
                    t.dims()
                );
            }
            *t = saved.to_dtype(t.dtype())?.detach();
        }
        Ok(true)
    }

    /// Move every shadow towards the current value of its weight.
    pub fn update(&mut self, vars: &[(String, Var)]) -> Result<()> {
        let d = self.decay;
        for ((name, s), (vname, v)) in self.shadow.iter_mut().zip(vars) {
            debug_assert_eq!(name, vname);
            // detached: a shadow computed from a variable would record the operation, and
            // each one would keep every earlier shadow alive (gigabytes within a few
            // thousand steps)
            *s = ((&*s * d)? + (v.as_tensor().detach() * (1.0 - d))?)?;
        }
        Ok(())
    }

    /// The shadows under their checkpoint names (`ema/<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.shadow
            .iter()
            .map(|(k, t)| (format!("{PREFIX}{k}"), t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(v: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(v, &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn the_shadow_follows_the_weights_geometrically() {
        let w = var(&[1.0, -2.0, 4.0]);
        let vars = vec![("a".to_string(), w.clone())];
        let mut ema = Ema::new(&vars, 0.75).unwrap();
        // the weight jumps to 0 and stays: the shadow decays by 0.75 per step
        w.set(&Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        for _ in 0..3 {
            ema.update(&vars).unwrap();
        }
        let s = ema.state()[0].1.to_vec1::<f32>().unwrap();
        let k = 0.75f32.powi(3);
        for (got, want) in s.iter().zip([k, -2.0 * k, 4.0 * k]) {
            assert!((got - want).abs() < 1e-6, "{got} against {want}");
        }
        assert_eq!(ema.state()[0].0, "ema/a");
        // no operation recorded: a shadow must not keep the earlier ones alive
        assert!(!ema.state()[0].1.track_op());
    }

    #[test]
    fn saved_shadows_come_back_and_bad_ones_are_refused() {
        let vars = vec![("a".to_string(), var(&[1.0, 2.0]))];
        let mut ema = Ema::new(&vars, 0.5).unwrap();
        let mut saved = HashMap::new();
        assert!(!ema.load(&saved).unwrap(), "no shadows: keep the weights");
        saved.insert(
            "ema/a".to_string(),
            Tensor::new(&[5f32, 6.0], &Device::Cpu).unwrap(),
        );
        assert!(ema.load(&saved).unwrap());
        assert_eq!(ema.state()[0].1.to_vec1::<f32>().unwrap(), vec![5.0, 6.0]);
        saved.insert(
            "ema/a".to_string(),
            Tensor::new(&[5f32], &Device::Cpu).unwrap(),
        );
        assert!(ema
            .load(&saved)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
        assert!(Ema::new(&vars, 1.0).is_err() && Ema::new(&vars, -0.1).is_err());
    }
}
