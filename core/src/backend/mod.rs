//! Backends run `f` on a batch of images. One trait, one file per implementation, chosen by
//! name: `cpu` (tract, fp32/fp16/int8) here, and the runtime's `rknn` (the Rockchip NPU,
//! `ign_edge::backend::rknn`, feature `rknn`).

pub mod cpu;
pub mod deconv_sum;
pub mod fold;
pub mod patches;
pub mod projector;
pub mod quantize_op;

pub use projector::Projector;

use anyhow::{bail, Result};

use crate::tensor::ImageBatch;

/// Put this project's own ops into an optimized tract plan where they compute the same bytes
/// faster: the int8 im2col ([`patches`]) and `QuantizeLinear` ([`quantize_op`]); the fp32
/// scatter of transposed convs ([`deconv_sum`]) needs the model before optimization and is
/// put in by [`optimize`]. Returns how
/// many nodes were replaced. `IGN_EDGE_TRACT_OPS=1` in the environment keeps tract's own ops
/// and folding (to compare speed, or to rule these out).
pub fn own_ops(
    plan: &mut tract_onnx::prelude::TypedModel,
) -> tract_onnx::prelude::TractResult<usize> {
    if tract_only() {
        return Ok(0);
    }
    Ok(patches::replace_im2col(plan)? + quantize_op::replace_quantize(plan)?)
}

fn tract_only() -> bool {
    std::env::var_os("IGN_EDGE_TRACT_OPS").is_some()
}

/// A typed model as the CPU backend runs it: constants folded whatever their size
/// ([`fold`]), optimized by tract, constants folded again (what codegen made of the weights),
/// and [`own_ops`] in place.
pub fn optimize(
    typed: tract_onnx::prelude::TypedModel,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TypedModel> {
    let mut typed = typed;
    if !tract_only() {
        fold::fold_constants(&mut typed)?;
    }
    let deconvs = deconv_sum::geometries(&typed)?;
    let mut plan = typed.into_optimized()?;
    if !tract_only() {
        fold::fold_constants(&mut plan)?;
        deconv_sum::replace_deconv_sum(&mut plan, &deconvs)?;
    }
    own_ops(&mut plan)?;
    Ok(plan)
}

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

    /// How many frames may be in flight at once ([`Backend::submit`]); 1 for backends that
    /// compute in the caller's thread. The NPU backend has one per context.
    fn depth(&self) -> usize {
        1
    }

    /// Start `f^steps` on one frame (batch 1) without waiting; [`Backend::receive`] returns
    /// the results in submission order. Only for backends with `depth() > 1`.
    fn submit(&mut self, _input: &ImageBatch, _steps: usize) -> Result<()> {
        bail!(
            "{} computes in the caller's thread: use project",
            self.name()
        )
    }

    /// The oldest submitted frame's `[f(x), ..., f^steps(x)]`.
    fn receive(&mut self) -> Result<Vec<ImageBatch>> {
        bail!(
            "{} computes in the caller's thread: use project",
            self.name()
        )
    }
}
