//! Backends run `f` on a batch of images. One trait, one file per implementation, chosen by
//! name: `cpu` (tract, fp32/fp16/int8) today; the Rockchip NPU plugs in behind the same trait.

pub mod cpu;

use anyhow::Result;

use crate::tensor::ImageBatch;

/// Something that applies the model `f` to images.
pub trait Backend {
    /// Short name for reports (`cpu-fp32`, ...).
    fn name(&self) -> String;

    /// One application of `f`: `input` is `N×C×H×W` in `[-1, 1]`; returns the same shape.
    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch>;

    /// `f` applied `steps` times; returns `[f(x), f²(x), ..., f^steps(x)]`.
    fn project(&mut self, input: &ImageBatch, steps: usize) -> Result<Vec<ImageBatch>> {
        let mut out: Vec<ImageBatch> = Vec::with_capacity(steps);
        for k in 0..steps {
            let y = self.run(if k == 0 { input } else { &out[k - 1] })?;
            out.push(y);
        }
        Ok(out)
    }
}
