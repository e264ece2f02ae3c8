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
    ///
    /// Each variable is updated in one pass over its values (moments, bias correction, step),
    /// spread across threads for the large ones; the same arithmetic as
    /// `m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; w −= lr·m̂/(√v̂ + ε)` written with tensor ops
    /// (13 passes, each allocating), which [`Adam::step_reference`] keeps for the tests.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = self.config.clone();
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        // the coefficients rounded to f32 as candle's scalar ops round them (`t / s` is
        // `t · (1/s)`)
        let k = AdamStep {
            b1: c.beta1 as f32,
            omb1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            omb2: (1.0 - c.beta2) as f32,
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            lr: c.lr as f32,
            eps: c.eps as f32,
        };
        for (_, var, m, v) in self.params.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            if var.dtype() != candle_core::DType::F32 {
                // gradient checks run in f64: the tensor form serves them
                reference_update(var, m, v, g, &c, bc1, bc2)?;
                continue;
            }
            let mut w = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let mut mv = m.flatten_all()?.to_vec1::<f32>()?;
            let mut vv = v.flatten_all()?.to_vec1::<f32>()?;
            let gv = g.flatten_all()?.to_vec1::<f32>()?;
            k.apply(&mut w, &mut mv, &mut vv, &gv);
            let (shape, dev) = (var.shape().clone(), var.device().clone());
            *m = Tensor::from_vec(mv, &shape, &dev)?;
            *v = Tensor::from_vec(vv, &shape, &dev)?;
            var.set(&Tensor::from_vec(w, &shape, &dev)?)?;
        }
        Ok(())
    }

    /// [`Adam::step`] written with candle's tensor ops: the reference the fused step is
    /// checked against.
    pub fn step_reference(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = self.config.clone();
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (_, var, m, v) in self.params.iter_mut() {
            if let Some(g) = grads.get(var.as_tensor()) {
                reference_update(var, m, v, g, &c, bc1, bc2)?;
            }
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

/// One variable's Adam update with tensor ops.
fn reference_update(
    var: &Var,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    c: &AdamConfig,
    bc1: f64,
    bc2: f64,
) -> Result<()> {
    *m = ((&*m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let mhat = (&*m / bc1)?;
    let vhat = (&*v / bc2)?;
    let upd = (mhat / (vhat.sqrt()? + c.eps)?)?;
    var.set(&(var.as_tensor() - (upd * c.lr)?)?)
}

/// The coefficients of one Adam step, in f32 as the tensor form applies them.
struct AdamStep {
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    inv_bc1: f32,
    inv_bc2: f32,
    lr: f32,
    eps: f32,
}

impl AdamStep {
    /// Below this many values a variable is updated on the calling thread.
    const PAR_MIN: usize = 1 << 15;

    fn apply(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        use rayon::prelude::*;
        let one = |w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
            for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
                *m = *m * self.b1 + g * self.omb1;
                *v = *v * self.b2 + (g * g) * self.omb2;
                let upd = (*m * self.inv_bc1) / ((*v * self.inv_bc2).sqrt() + self.eps);
                *w -= upd * self.lr;
            }
        };
        if w.len() < Self::PAR_MIN {
            return one(w, m, v, g);
        }
        const CHUNK: usize = 1 << 13;
        w.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((w, m), v), g)| one(w, m, v, g));
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

    /// The fused step equals the tensor-op form over several steps, on a variable large enough
    /// to be split across threads and on a small one.
    #[test]
    fn fused_step_matches_the_tensor_form() {
        let make = |n: usize, seed: u64| {
            let mut s = seed;
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    s = crate::data::mix(s, 3, 5);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            Var::from_vec(vals, n, &Device::Cpu).unwrap()
        };
        let cfg = AdamConfig {
            lr: 1e-2,
            ..Default::default()
        };
        let (a_big, a_small) = (make(100_003, 1), make(37, 2));
        let (b_big, b_small) = (make(100_003, 1), make(37, 2));
        let mut fused = Adam::new(
            vec![
                ("big".into(), a_big.clone()),
                ("small".into(), a_small.clone()),
            ],
            cfg.clone(),
        )
        .unwrap();
        let mut reference = Adam::new(
            vec![
                ("big".into(), b_big.clone()),
                ("small".into(), b_small.clone()),
            ],
            cfg,
        )
        .unwrap();
        for step in 0..5u64 {
            // loss = Σ w·t + Σ w² with a fixed t: gradients that change with w
            let loss = |big: &Var, small: &Var| {
                let t = make(100_003, 10 + step);
                let ts = make(37, 20 + step);
                let l = ((big.as_tensor() * t.as_tensor())
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    + big.as_tensor().sqr().unwrap().sum_all().unwrap())
                .unwrap();
                (l + (small.as_tensor() * ts.as_tensor())
                    .unwrap()
                    .sum_all()
                    .unwrap())
                .unwrap()
                .backward()
                .unwrap()
            };
            fused.step(&loss(&a_big, &a_small)).unwrap();
            reference.step_reference(&loss(&b_big, &b_small)).unwrap();
        }
        let max_diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let starts = [make(100_003, 1), make(37, 2)];
        for ((a, b), start) in [(&a_big, &b_big), (&a_small, &b_small)]
            .into_iter()
            .zip(&starts)
        {
            let d = max_diff(a.as_tensor(), b.as_tensor());
            let moved = max_diff(a.as_tensor(), start.as_tensor());
            assert!(d <= 1e-6, "fused and tensor Adam differ by {d}");
            assert!(moved > 1e-3, "the weights did not move ({moved})");
        }
        let (sf, sr) = (fused.state(), reference.state());
        for (k, t) in &sf {
            assert!(max_diff(t, &sr[k]) <= 1e-6, "{k}");
        }
    }
}
