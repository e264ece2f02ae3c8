//! What the int8 schemes share ([`super::int8`]'s `conv-integer` and `q-linear-conv`, and
//! [`super::fused`]): the activation ranges and the tensors they are taken on, the uint8 and
//! per-channel int8 rounding, and the nodes that bring an integer op's int32 accumulator back
//! to float.

use std::collections::BTreeMap;
use tract_onnx::pb;

use super::graph::{f32_tensor, Names};
use crate::model::writer::attr_int;

/// Activation range `(min, max)` per tensor name.
pub type Ranges = BTreeMap<String, (f32, f32)>;

/// The tensors whose ranges the quantizer needs: the input and output of every `Conv` with
/// constant weights, in graph order, without repeats.
pub fn calibration_tensors(model: &pb::ModelProto) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(graph) = model.graph.as_ref() else {
        return out;
    };
    for n in graph.node.iter().filter(|n| is_quantizable_conv(graph, n)) {
        for t in [&n.input[0], &n.output[0]] {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    out
}

pub(super) fn is_quantizable_conv(graph: &pb::GraphProto, n: &pb::NodeProto) -> bool {
    let const_weights = || {
        n.input.len() >= 2
            && graph
                .initializer
                .iter()
                .any(|t| t.name == n.input[1] && (n.op_type == "Conv" || t.dims.len() == 2))
    };
    (n.op_type == "Conv" || n.op_type == "MatMul") && const_weights()
}

/// uint8 scale and zero point of a range (widened to hold 0).
pub fn u8_params(min: f32, max: f32) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = if max - min > 1e-12 {
        (max - min) / 255.0
    } else {
        1.0
    };
    let zp = (-min / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Per-output-channel symmetric int8 weights: `(values, scales)`.
pub fn i8_per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for c in 0..channels {
        let row = &w[c * per..(c + 1) * per];
        let m = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

pub(crate) fn tensor_of(
    name: &str,
    dims: &[usize],
    dt: pb::tensor_proto::DataType,
    raw: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// Drop the float weights nothing reads any more.
pub(crate) fn drop_unused_initializers(graph: &mut pb::GraphProto) {
    let used: std::collections::HashSet<&String> =
        graph.node.iter().flat_map(|n| n.input.iter()).collect();
    let keep: Vec<bool> = graph
        .initializer
        .iter()
        .map(|t| used.contains(&t.name))
        .collect();
    let mut k = keep.iter();
    graph.initializer.retain(|_| *k.next().unwrap());
}

/// The float output `y` of an integer conv with `cout = scale.len()` channels: its int32
/// accumulator `acc` rescaled per channel ([`emit_rescale`]), then the float bias added
/// (`bias`: its name and values).
pub(crate) fn emit_conv_output(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    new_nodes: &mut Vec<pb::NodeProto>,
    y: String,
    acc: String,
    scale: &[f32],
    bias: Option<(String, Vec<f32>)>,
) {
    let cout = scale.len();
    let scaled = if bias.is_some() {
        names.fresh(&format!("{y}.rescaled"))
    } else {
        y.clone()
    };
    emit_rescale(
        graph,
        names,
        new_nodes,
        &y,
        acc,
        scale,
        &[1, cout, 1, 1],
        scaled.clone(),
    );
    if let Some((b_name, b)) = bias {
        let bn = names.fresh(&format!("{b_name}.per_channel"));
        graph
            .initializer
            .push(f32_tensor(&bn, &[1, cout, 1, 1], &b));
        new_nodes.push(pb::NodeProto {
            name: names.fresh(&format!("{y}.bias_add")),
            op_type: "Add".into(),
            input: vec![scaled, bn],
            output: vec![y],
            ..Default::default()
        });
    }
}

/// `out = float(acc) · scale`: the int32 accumulator of an integer conv or matmul back in
/// float (`Cast`, then `Mul` by a constant of shape `dims` named after `y`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_rescale(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    new_nodes: &mut Vec<pb::NodeProto>,
    y: &str,
    acc: String,
    scale: &[f32],
    dims: &[usize],
    out: String,
) {
    let accf = names.fresh(&format!("{y}.int32_as_float"));
    new_nodes.push(pb::NodeProto {
        name: names.fresh(&format!("{y}.cast")),
        op_type: "Cast".into(),
        input: vec![acc],
        output: vec![accf.clone()],
        attribute: vec![attr_int("to", pb::tensor_proto::DataType::Float as i64)],
        ..Default::default()
    });
    let sc_name = names.fresh(&format!("{y}.rescale"));
    graph.initializer.push(f32_tensor(&sc_name, dims, scale));
    new_nodes.push(pb::NodeProto {
        name: names.fresh(&format!("{y}.rescale_mul")),
        op_type: "Mul".into(),
        input: vec![accf, sc_name],
        output: vec![out],
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_params_hold_zero_exactly() {
        let (s, zp) = u8_params(-1.0, 1.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        assert!(zp == 127 || zp == 128, "{zp}");
        // A Relu output: zero point 0, so QuantizeLinear's saturation is the Relu.
        assert_eq!(u8_params(0.0, 3.0).1, 0);
        assert_eq!(u8_params(0.5, 3.0).1, 0);
        assert_eq!(u8_params(-3.0, -0.5).1, 255);
    }

    #[test]
    fn per_channel_weights_round_trip_within_half_a_step() {
        let w = [0.5f32, -1.0, 0.25, 0.0, 0.01, -0.02, 0.04, 0.0];
        let (q, s) = i8_per_channel(&w, 2);
        assert_eq!(q[1], -127);
        assert_eq!(q[6], 127);
        for (i, (&v, &qv)) in w.iter().zip(&q).enumerate() {
            let back = qv as f32 * s[i / 4];
            assert!(
                (back - v).abs() <= s[i / 4] / 2.0 + 1e-9,
                "{i}: {v} vs {back}"
            );
        }
    }
}
