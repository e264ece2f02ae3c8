//! Adam, with its state exposed so that checkpoints can resume a run exactly.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// Adam hyper-parameters (paper: lr 1e-4, betas 0.5 / 0.999).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam over named variables.
pub struct Adam {
    pub config: AdamConfig,
    /// `(name, variable, first moment, second moment)`, sorted by name.
    params: Vec<(String, Var, Tensor, Tensor)>,
    /// Number of updates taken so far.
    pub t: u64,
}

impl Adam {
    /// An optimizer over `vars` (only those that receive a gradient are updated).
    pub fn new(mut vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(n, v)| {
                let z = v.as_tensor().zeros_like()?;
                Ok((n, v, z.clone(), z))
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            config,
            params,
            t: 0,
        })
    }

    /// One update from the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (_, var, m, v) in self.params.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            *m = ((&*m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let mhat = (&*m / bc1)?;
            let vhat = (&*v / bc2)?;
            let upd = (mhat / (vhat.sqrt()? + c.eps)?)?;
            var.set(&(var.as_tensor() - (upd * c.lr)?)?)?;
        }
        Ok(())
    }

    /// The moments as named tensors: `adam.m/<name>`, `adam.v/<name>`.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (n, _, m, v) in &self.params {
            out.insert(format!("adam.m/{n}"), m.clone());
            out.insert(format!("adam.v/{n}"), v.clone());
        }
        out
    }

    /// Restore moments saved by [`Adam::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) -> anyhow::Result<()> {
        for (n, _, m, v) in self.params.iter_mut() {
            let get = |k: String| {
                state
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks optimizer state {k}"))
            };
            *m = get(format!("adam.m/{n}"))?;
            *v = get(format!("adam.v/{n}"))?;
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let v = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), v.clone())], AdamConfig::default()).unwrap();
        // loss = 3*w0 - w1: gradient (3, -1)
        let loss = (v.as_tensor().get(0).unwrap() * 3.0 - v.as_tensor().get(1).unwrap()).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let w = v.as_tensor().to_vec1::<f32>().unwrap();
        assert!((w[0] - (1.0 - 1e-4)).abs() < 1e-7, "{w:?}");
        assert!((w[1] - (-2.0 + 1e-4)).abs() < 1e-7, "{w:?}");
    }
}
