//! Backends run `f` on a batch of images. One trait, one file per implementation, chosen by
//! name: `cpu` (tract, fp32/fp16/int8) here, and the runtime's `rknn` (the Rockchip NPU,
//! `ign_edge::backend::rknn`, feature `rknn`).

pub mod cpu;
pub mod deconv_sum;
pub mod direct_conv;
pub mod direct_deconv;
pub mod fold;
pub mod packed_im2col;
pub mod pad;
pub mod projector;
pub mod quantize_linear;
mod tap_sums;

pub use projector::Projector;

use anyhow::{bail, Result};

use crate::tensor::ImageBatch;

/// Put this project's own ops into an optimized tract plan where they compute the same bytes
/// faster: the int8 im2col ([`packed_im2col`]), `QuantizeLinear` ([`quantize_linear`]) and
/// constant padding ([`pad`]). The fp32 scatter of transposed convs ([`deconv_sum`]), and the
/// fp32 convs with few input channels and transposed convs with few output channels
/// ([`direct_conv`], [`direct_deconv`], within rounding of tract's) need the model before
/// optimization and are put in by [`optimize`]. Returns how many nodes were replaced.
/// `IGN_EDGE_TRACT_OPS=1` in the environment keeps tract's own ops and folding (to compare
/// speed, or to rule these out).
///
/// Each op is named once: tract's profile prints `IgnPackedIm2col`, `IgnQuantizeLinear`,
/// `IgnPad`, `IgnDeconvSum`, `IgnDirectConv` and `IgnDirectDeconv`, the names of their
/// structs, in the files of the same name (`packed_im2col.rs`, ...).
pub fn own_ops(
    plan: &mut tract_onnx::prelude::TypedModel,
) -> tract_onnx::prelude::TractResult<usize> {
    if tract_only() {
        return Ok(0);
    }
    Ok(packed_im2col::replace_im2col(plan)?
        + quantize_linear::replace_quantize(plan)?
        + pad::replace_pad(plan)?)
}

/// Replace, in evaluation order, each node of `model` for which `new_op` gives an op: the op
/// and how many of the node's first inputs it keeps. Returns how many nodes were replaced.
/// The loop that puts each of this project's ops in place.
pub(crate) fn replace_nodes<O: tract_onnx::tract_core::internal::TypedOp>(
    model: &mut tract_onnx::prelude::TypedModel,
    mut new_op: impl FnMut(
        &tract_onnx::prelude::TypedModel,
        &tract_onnx::prelude::TypedNode,
    ) -> tract_onnx::prelude::TractResult<Option<(O, usize)>>,
) -> tract_onnx::prelude::TractResult<usize> {
    use tract_onnx::tract_core::internal::TypedModelPatch;
    let mut done = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some((op, inputs)) = new_op(model, node)? else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..inputs], op)?;
        patch.apply(model)?;
        done += 1;
    }
    Ok(done)
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
        direct_conv::replace_thin_convs(&mut typed)?;
        direct_deconv::replace_thin_deconvs(&mut typed)?;
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

/// For the tests of the ops that replace nodes before optimization: a shipped model (under
/// `models/`, batch 2) through tract's plan as it is and after `replace`, on the same noise.
/// Returns how many nodes `replace` replaced and the largest difference between the outputs.
#[cfg(test)]
pub(crate) fn shipped_model_with_and_without(
    file: &str,
    replace: impl FnOnce(&mut tract_onnx::prelude::TypedModel) -> usize,
) -> (usize, f32) {
    use rand::{Rng, SeedableRng};
    use tract_onnx::prelude::*;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    let typed = crate::model::Model::load(&path).unwrap().typed(2).unwrap();
    let mut ours = typed.clone();
    let replaced = replace(&mut ours);
    let shape = typed
        .input_fact(0)
        .unwrap()
        .shape
        .as_concrete()
        .unwrap()
        .to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let v: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let x = Tensor::from_shape(&shape, &v).unwrap();
    let run = |m: TypedModel| {
        let plan = m.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into_tvalue())).unwrap().remove(0)
    };
    let (a, b) = (run(typed), run(ours));
    let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
    let worst = a
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(b.as_slice::<f32>().unwrap())
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    (replaced, worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::{DatumType, Op};

    /// `T`'s module and name: `("deconv_sum", "IgnDeconvSum")`.
    fn module_and_name<T>() -> (&'static str, &'static str) {
        let mut path = std::any::type_name::<T>().rsplit("::");
        let name = path.next().unwrap();
        (path.next().unwrap(), name)
    }

    /// `IgnDeconvSum` → `deconv_sum`.
    fn file_of(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.trim_start_matches("Ign").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// tract's profile prints an op's `name()`: each op of ours prints its struct's name, which
    /// its file repeats in snake case, so that a line of the profile greps to its code.
    fn check(op: &dyn Op, (module, name): (&str, &str)) {
        assert_eq!(op.name(), name);
        assert_eq!(file_of(name), module, "{name} lives in {module}.rs");
    }

    #[test]
    fn each_op_of_ours_shows_in_the_profile_as_its_struct_and_file() {
        let conv = packed_im2col::ConvGeometry {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pad_before: [1, 1],
            output: [4, 4],
        };
        let packing = packed_im2col::Packing::KMajor(tract_linalg::pack::PackedFormat {
            dt: DatumType::I8,
            r: 8,
            alignment_bytes: 16,
            end_padding_record: 1,
        });
        check(
            &packed_im2col::IgnPackedIm2col::new(&conv, [1, 2, 4, 4], 1, packing),
            module_and_name::<packed_im2col::IgnPackedIm2col>(),
        );
        let quantize = quantize_linear::IgnQuantizeLinear {
            inv_scale: 10.0,
            zero_point: 0,
            signed: true,
        };
        check(
            &quantize,
            module_and_name::<quantize_linear::IgnQuantizeLinear>(),
        );
        let deconv = deconv_sum::DeconvGeometry {
            input_hw: [2, 2],
            kernel: [2, 2],
            strides: [1, 1],
            pad_before: [0, 0],
            output: [1, 1, 3, 3],
        };
        check(
            &deconv_sum::IgnDeconvSum::new(deconv, None),
            module_and_name::<deconv_sum::IgnDeconvSum>(),
        );
        let geometry = direct_conv::DirectGeometry {
            input: [1, 1, 8, 8],
            out_channels: 1,
            kernel: [1, 1],
            strides: [1, 1],
            pad_before: [0, 0],
            pad_after: [0, 0],
            output: [8, 8],
        };
        check(
            &direct_conv::IgnDirectConv::new(geometry, vec![1.0], vec![0.0]).unwrap(),
            module_and_name::<direct_conv::IgnDirectConv>(),
        );
        let deconv = deconv_sum::DeconvGeometry {
            input_hw: [8, 8],
            kernel: [2, 2],
            strides: [2, 2],
            pad_before: [0, 0],
            output: [1, 2, 16, 16],
        };
        check(
            &direct_deconv::IgnDirectDeconv::new(deconv, 1, vec![1.0; 8], vec![0.0; 2]).unwrap(),
            module_and_name::<direct_deconv::IgnDirectDeconv>(),
        );
        let pad = tract_onnx::tract_core::ops::array::Pad::new(vec![(1, 1)], Default::default());
        check(
            &pad::IgnPad::of(&pad, DatumType::F32).unwrap().unwrap(),
            module_and_name::<pad::IgnPad>(),
        );
    }
}
