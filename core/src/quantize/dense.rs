//! Rewrite convolutions that are really fully connected layers as `MatMul`.
//!
//! In a DCGAN-style IGN the encoder's last `Conv` (kernel = its whole 4×4 input, output 1×1)
//! and the decoder's first `ConvTranspose` (1×1 latent in, 4×4 out) are dense layers. As
//! convolutions they pay for an im2col and, for the transposed one, a 16× larger product
//! over the zero padding; as `MatMul` they are one small matrix product, which also has an
//! integer form (`MatMulInteger`). Exact in fp32.

use anyhow::{Context, Result};
use std::collections::HashMap;
use tract_onnx::pb;

use super::graph::{
    f32_tensor, float_initializer, graph_mut, i64_tensor, node_label, FloatTensor, Names,
};

/// Spatial size `[H, W]` of each tensor that feeds a convolution, from a calibration run.
pub type Shapes = HashMap<String, Vec<usize>>;

/// The inputs whose shape [`rewrite_dense`] needs: the data input of every Conv/ConvTranspose.
pub fn conv_inputs(model: &pb::ModelProto) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(g) = &model.graph {
        for n in &g.node {
            if (n.op_type == "Conv" || n.op_type == "ConvTranspose") && !out.contains(&n.input[0]) {
                out.push(n.input[0].clone());
            }
        }
    }
    out
}

/// Whether `node` has no padding, dilation, groups or output shape (an attribute of the
/// wrong type is an error, as tract would make it).
fn plain(node: &pb::NodeProto) -> Result<bool> {
    let zeros = |name: &str| -> Result<bool> {
        Ok(node
            .get_attr_opt_vec::<i64>(name)?
            .is_none_or(|p| p.iter().all(|&v| v == 0)))
    };
    let auto_pad = node
        .get_attr_opt::<&str>("auto_pad")?
        .is_none_or(|a| a.is_empty() || a == "NOTSET" || a == "VALID");
    let dil = node
        .get_attr_opt_vec::<i64>("dilations")?
        .is_none_or(|d| d.iter().all(|&v| v == 1));
    Ok(zeros("pads")?
        && auto_pad
        && dil
        && zeros("output_padding")?
        && node.get_attr_opt::<i64>("group")?.unwrap_or(1) == 1
        && node.get_attr_opt_vec::<i64>("output_shape")?.is_none())
}

/// What a dense layer becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseForm {
    /// Reshape → MatMul → Reshape (→ Add for the bias): `MatMulInteger` in the int8 file.
    MatMul,
    /// Reshape to `[N, K, 1, 1]` → 1×1 Conv with the bias → Reshape: `QLinearConv` in the
    /// int8 file, which carries the bias and requantizes inside the integer kernel.
    Conv1x1,
}

/// Rewrite every dense-layer convolution of `model` (shapes from `shapes`, `[N, C, H, W]` per
/// input tensor) into `form`; returns the output tensor of each dense product (the MatMul or
/// the 1×1 Conv).
pub fn rewrite_dense(
    model: &mut pb::ModelProto,
    shapes: &Shapes,
    form: DenseForm,
) -> Result<Vec<String>> {
    let graph = graph_mut(model)?;
    let mut names = Names::of(graph);
    let nodes = std::mem::take(&mut graph.node);
    let mut out = Vec::with_capacity(nodes.len());
    let mut dense = Vec::new();
    for node in nodes {
        match dense_weights(graph, shapes, &node)? {
            Some(w) => {
                dense.push(emit_dense(graph, &mut names, &mut out, &node, w, form)?);
            }
            None => out.push(node),
        }
    }
    graph.node = out;
    Ok(dense)
}

/// The weights of `node` when it is a dense layer: a plain Conv whose kernel covers its whole
/// input, or a ConvTranspose of a 1x1 input.
fn dense_weights(
    graph: &pb::GraphProto,
    shapes: &Shapes,
    node: &pb::NodeProto,
) -> Result<Option<FloatTensor>> {
    let is_conv = node.op_type == "Conv";
    if !(is_conv || node.op_type == "ConvTranspose") || !plain(node)? {
        return Ok(None);
    }
    let (Some(shape), Some(w)) = (
        shapes.get(&node.input[0]),
        float_initializer(graph, &node.input[1])?,
    ) else {
        return Ok(None);
    };
    if shape.len() != 4 || w.dims.len() != 4 {
        return Ok(None);
    }
    let (h, wd) = (shape[2], shape[3]);
    let dense = if is_conv {
        [w.dims[2], w.dims[3]] == [h, wd]
    } else {
        (h, wd) == (1, 1)
    };
    Ok(dense.then_some(w))
}

/// Reshape → MatMul → Reshape (→ Add for the bias) in place of the dense layer `node`.
fn emit_dense(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    out: &mut Vec<pb::NodeProto>,
    node: &pb::NodeProto,
    w: FloatTensor,
    form: DenseForm,
) -> Result<String> {
    let is_conv = node.op_type == "Conv";
    let base = node_label(node).to_string();
    let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
        Some(b) => Some(
            float_initializer(graph, b)?
                .context("bias is not a constant")?
                .data,
        ),
        None => None,
    };
    // B: [K, M] with x flattened to [N, K].
    let (k, m, b_data, out_shape): (usize, usize, Vec<f32>, Vec<i64>) = if is_conv {
        let (cout, kk) = (w.dims[0], w.dims[1] * w.dims[2] * w.dims[3]);
        let mut t = vec![0f32; kk * cout];
        for o in 0..cout {
            for i in 0..kk {
                t[i * cout + o] = w.data[o * kk + i];
            }
        }
        (kk, cout, t, vec![-1, cout as i64, 1, 1])
    } else {
        let (cin, cout, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        (
            cin,
            cout * kh * kw,
            w.data.clone(),
            vec![-1, cout as i64, kh as i64, kw as i64],
        )
    };
    if form == DenseForm::Conv1x1 {
        // Conv weights [M, K, 1, 1] are B transposed; the bias per output channel of the
        // layer, repeated over its kh·kw positions for a transposed conv.
        let mut wt = vec![0f32; k * m];
        for i in 0..k {
            for j in 0..m {
                wt[j * k + i] = b_data[i * m + j];
            }
        }
        let bias = bias.map(|b| {
            let per = m / b.len().max(1);
            b.iter()
                .flat_map(|&v| std::iter::repeat_n(v, per))
                .collect::<Vec<f32>>()
        });
        return emit_dense_conv(graph, names, out, node, (k, m), &wt, bias, &out_shape);
    }
    let b_name = names.fresh(&format!("{}.dense", node.input[1]));
    graph
        .initializer
        .push(f32_tensor(&b_name, &[k, m], &b_data));
    let (flat, out_shape_name) = emit_flatten(graph, names, out, node, &[-1, k as i64], &out_shape);
    let prod = names.fresh(&format!("{base}.matmul"));
    out.push(pb::NodeProto {
        name: names.fresh(&format!("{base}.dense")),
        op_type: "MatMul".into(),
        input: vec![flat, b_name],
        output: vec![prod.clone()],
        ..Default::default()
    });
    let dense = prod.clone();
    let final_out = node.output[0].clone();
    let shaped = if bias.is_some() {
        names.fresh(&format!("{base}.shaped"))
    } else {
        final_out.clone()
    };
    out.push(pb::NodeProto {
        name: names.fresh(&format!("{base}.unflatten")),
        op_type: "Reshape".into(),
        input: vec![prod, out_shape_name],
        output: vec![shaped.clone()],
        ..Default::default()
    });
    if let Some(b) = bias {
        let bn = names.fresh(&format!("{}.per_channel", node.input[2]));
        graph
            .initializer
            .push(f32_tensor(&bn, &[1, b.len(), 1, 1], &b));
        out.push(pb::NodeProto {
            name: names.fresh(&format!("{base}.bias")),
            op_type: "Add".into(),
            input: vec![shaped, bn],
            output: vec![final_out],
            ..Default::default()
        });
    }
    Ok(dense)
}

/// Reshape to `[N, K, 1, 1]` → 1×1 Conv (weights `wt` as `[M, K, 1, 1]`, bias per M) →
/// Reshape to `out_shape`, in place of the dense layer `node`.
#[allow(clippy::too_many_arguments)]
fn emit_dense_conv(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    out: &mut Vec<pb::NodeProto>,
    node: &pb::NodeProto,
    (k, m): (usize, usize),
    wt: &[f32],
    bias: Option<Vec<f32>>,
    out_shape: &[i64],
) -> Result<String> {
    let base = node_label(node).to_string();
    let w_name = names.fresh(&format!("{}.dense_1x1", node.input[1]));
    graph
        .initializer
        .push(f32_tensor(&w_name, &[m, k, 1, 1], wt));
    let (flat, out_shape_name) =
        emit_flatten(graph, names, out, node, &[-1, k as i64, 1, 1], out_shape);
    let prod = names.fresh(&format!("{base}.dense"));
    let mut inputs = vec![flat, w_name];
    if let Some(b) = bias {
        let bn = names.fresh(&format!("{}.dense_1x1", node.input[2]));
        graph.initializer.push(f32_tensor(&bn, &[m], &b));
        inputs.push(bn);
    }
    out.push(pb::NodeProto {
        name: names.fresh(&format!("{base}.dense_1x1")),
        op_type: "Conv".into(),
        input: inputs,
        output: vec![prod.clone()],
        attribute: vec![crate::model::writer::attr_ints("kernel_shape", &[1, 1])],
        ..Default::default()
    });
    out.push(pb::NodeProto {
        name: names.fresh(&format!("{base}.unflatten")),
        op_type: "Reshape".into(),
        input: vec![prod.clone(), out_shape_name],
        output: vec![node.output[0].clone()],
        ..Default::default()
    });
    Ok(prod)
}

/// The shape constants and the `Reshape` of `node`'s input to `flat_dims` that start a dense
/// layer; returns (the flattened tensor, the name of the output shape constant).
fn emit_flatten(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    out: &mut Vec<pb::NodeProto>,
    node: &pb::NodeProto,
    flat_dims: &[i64],
    out_shape: &[i64],
) -> (String, String) {
    let base = node_label(node).to_string();
    let flat_shape = names.fresh(&format!("{base}.flat_shape"));
    graph
        .initializer
        .push(i64_tensor(&flat_shape, &[flat_dims.len()], flat_dims));
    let out_shape_name = names.fresh(&format!("{base}.out_shape"));
    graph
        .initializer
        .push(i64_tensor(&out_shape_name, &[out_shape.len()], out_shape));
    let flat = names.fresh(&format!("{base}.flat"));
    out.push(pb::NodeProto {
        name: names.fresh(&format!("{base}.flatten")),
        op_type: "Reshape".into(),
        input: vec![node.input[0].clone(), flat_shape],
        output: vec![flat.clone()],
        ..Default::default()
    });
    (flat, out_shape_name)
}
