//! Fuse ign-train's LayerNorm (nine primitive ops) into one ONNX `LayerNormalization` (opset 17).
//!
//! ign-train exports the per-sample LayerNorm over (C, H, W) with a per-channel scale as
//! `ReduceMean → Sub → Mul → ReduceMean → Add(eps) → Sqrt → Div → Mul(weight) → Add(bias)`.
//! Rockchip's compiler (rknn-toolkit2 2.5.0) cannot build that pattern (its `swap_reshape_norm`
//! rule fails on the (C, 1, 1) scale) but builds `LayerNormalization(axis = 1)`, whose scale
//! and bias are then the per-channel values expanded to (C, H, W). Exact up to float rounding.

use anyhow::{Context, Result};
use std::collections::HashMap;
use tract_onnx::pb;

use super::dense::Shapes;
use super::graph::{f32_tensor, float_initializer, graph_mut, Names};

/// The input of every `ReduceMean`: [`fuse_layer_norms`] needs their shapes.
pub fn norm_inputs(model: &pb::ModelProto) -> Vec<String> {
    model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type == "ReduceMean")
        .map(|n| n.input[0].clone())
        .collect()
}

/// One matched LayerNorm: the indices of its nine nodes and what the fused node needs.
struct Match {
    nodes: Vec<usize>,
    input: String,
    output: String,
    eps: f32,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Whether `n` is a ReduceMean over C, H and W that keeps the dimensions.
fn reduces_chw(n: &pb::NodeProto) -> Result<bool> {
    Ok(n.op_type == "ReduceMean"
        && n.get_attr_opt_vec::<i64>("axes")?.as_deref() == Some(&[1, 2, 3][..])
        && n.get_attr_opt::<i64>("keepdims")?.unwrap_or(1) == 1)
}

fn find(graph: &pb::GraphProto, start: usize) -> Result<Option<Match>> {
    let nodes = &graph.node;
    let r1 = &nodes[start];
    if !reduces_chw(r1)? {
        return Ok(None);
    }
    let x = &r1.input[0];
    // the single consumer of `t` with this op type
    let by_input = |t: &str, op: &str| -> Option<usize> {
        nodes
            .iter()
            .position(|n| n.op_type == op && n.input.iter().any(|i| i == t))
    };
    let Some(sub) = by_input(&r1.output[0], "Sub") else {
        return Ok(None);
    };
    let centered = &nodes[sub].output[0];
    if nodes[sub].input[0] != *x {
        return Ok(None);
    }
    let Some(sq) = by_input(centered, "Mul") else {
        return Ok(None);
    };
    if nodes[sq].input[0] != nodes[sq].input[1] {
        return Ok(None);
    }
    let Some(r2) = by_input(&nodes[sq].output[0], "ReduceMean") else {
        return Ok(None);
    };
    if !reduces_chw(&nodes[r2])? {
        return Ok(None);
    }
    let Some(add_eps) = by_input(&nodes[r2].output[0], "Add") else {
        return Ok(None);
    };
    let eps_name = nodes[add_eps]
        .input
        .iter()
        .find(|i| **i != nodes[r2].output[0])
        .cloned()
        .unwrap_or_default();
    let Some(eps) = float_initializer(graph, &eps_name)? else {
        return Ok(None);
    };
    let Some(sqrt) = by_input(&nodes[add_eps].output[0], "Sqrt") else {
        return Ok(None);
    };
    let Some(div) = by_input(&nodes[sqrt].output[0], "Div") else {
        return Ok(None);
    };
    if nodes[div].input[0] != *centered {
        return Ok(None);
    }
    let Some(scale) = by_input(&nodes[div].output[0], "Mul") else {
        return Ok(None);
    };
    let Some(shift) = by_input(&nodes[scale].output[0], "Add") else {
        return Ok(None);
    };
    let other = |n: &pb::NodeProto, t: &str| n.input.iter().find(|i| *i != t).cloned();
    let (Some(wn), Some(bn)) = (
        other(&nodes[scale], &nodes[div].output[0]),
        other(&nodes[shift], &nodes[scale].output[0]),
    ) else {
        return Ok(None);
    };
    let (Some(w), Some(b)) = (
        float_initializer(graph, &wn)?,
        float_initializer(graph, &bn)?,
    ) else {
        return Ok(None);
    };
    // intermediate results must not be used elsewhere
    let inner: Vec<&String> = [start, sub, sq, r2, add_eps, sqrt, div, scale]
        .iter()
        .map(|&i| &nodes[i].output[0])
        .collect();
    let uses = |t: &String| {
        nodes
            .iter()
            .map(|n| n.input.iter().filter(|i| *i == t).count())
            .sum::<usize>()
            + graph.output.iter().filter(|o| o.name == *t).count()
    };
    let expected = [1usize, 3, 1, 1, 1, 1, 1, 1];
    if inner.iter().zip(expected).any(|(t, e)| uses(t) != e) {
        return Ok(None);
    }
    Ok(Some(Match {
        nodes: vec![start, sub, sq, r2, add_eps, sqrt, div, scale, shift],
        input: x.clone(),
        output: nodes[shift].output[0].clone(),
        eps: eps.data.first().copied().unwrap_or(1e-5),
        weight: w.data,
        bias: b.data,
    }))
}

/// Fuse every LayerNorm of `model` (the shapes of their inputs from `shapes`); returns how
/// many were fused. Raises the default-domain opset to 17 when one is.
pub fn fuse_layer_norms(model: &mut pb::ModelProto, shapes: &Shapes) -> Result<usize> {
    let graph = graph_mut(model)?;
    let mut names = Names::of(graph);
    let mut matches = Vec::new();
    for i in 0..graph.node.len() {
        if let Some(m) = find(graph, i)? {
            matches.push(m);
        }
    }
    let mut fused: HashMap<usize, pb::NodeProto> = HashMap::new();
    let mut drop = vec![false; graph.node.len()];
    for m in &matches {
        let shape = shapes
            .get(&m.input)
            .with_context(|| format!("no shape for LayerNorm input '{}'", m.input))?;
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        if m.weight.len() != c || m.bias.len() != c {
            continue;
        }
        let expand = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .flat_map(|&x| std::iter::repeat_n(x, h * w))
                .collect()
        };
        let base = m.output.trim_end_matches(".out").to_string();
        let (wn, bn) = (
            names.fresh(&format!("{base}.scale_chw")),
            names.fresh(&format!("{base}.bias_chw")),
        );
        graph
            .initializer
            .push(f32_tensor(&wn, &[c, h, w], &expand(&m.weight)));
        graph
            .initializer
            .push(f32_tensor(&bn, &[c, h, w], &expand(&m.bias)));
        let node = pb::NodeProto {
            name: names.fresh(&format!("{base}.layer_norm")),
            op_type: "LayerNormalization".into(),
            input: vec![m.input.clone(), wn, bn],
            output: vec![m.output.clone()],
            attribute: vec![
                super::super::model::writer::attr_int("axis", 1),
                super::super::model::writer::attr_float("epsilon", m.eps),
            ],
            ..Default::default()
        };
        for &i in &m.nodes {
            drop[i] = true;
        }
        fused.insert(*m.nodes.last().expect("nine nodes"), node);
    }
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| match fused.remove(&i) {
            Some(f) => Some(f),
            None if drop[i] => None,
            None => Some(n),
        })
        .collect();
    let count = drop.iter().filter(|d| **d).count() / 9;
    if count > 0 {
        for o in &mut model.opset_import {
            if o.domain.is_empty() || o.domain == "ai.onnx" {
                o.version = o.version.max(17);
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cpu::CpuBackend, Backend};
    use crate::model::writer::{attr_float, attr_int, attr_ints, Dim, OnnxWriter};
    use crate::model::Model;
    use prost::Message;

    /// Conv → ign-train's LayerNorm pattern → LeakyRelu → Conv → Tanh, on 1×8×8 images.
    fn ln_model() -> Vec<u8> {
        let mut w = OnnxWriter::new("ln");
        let shape = [Dim::param("N"), Dim::Fixed(1), Dim::Fixed(8), Dim::Fixed(8)];
        w.input_f32("x", &shape);
        let val = |n: usize, k: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 * k).sin()) * 0.5).collect()
        };
        let w1 = w.initializer_f32("w1", &[4, 1, 3, 3], &val(36, 0.7));
        let w2 = w.initializer_f32("w2", &[1, 4, 3, 3], &val(36, 1.3));
        let g = w.initializer_f32("ln.weight", &[1, 4, 1, 1], &[1.0, 0.5, 1.5, -0.7]);
        let b = w.initializer_f32("ln.bias", &[1, 4, 1, 1], &[0.1, -0.2, 0.0, 0.3]);
        let eps = w.initializer_f32("ln.eps", &[1], &[1e-5]);
        let conv = || {
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ]
        };
        let axes = || vec![attr_ints("axes", &[1, 2, 3]), attr_int("keepdims", 1)];
        w.node("Conv", &["x", &w1], &["c1"], conv());
        w.node("ReduceMean", &["c1"], &["mean"], axes());
        w.node("Sub", &["c1", "mean"], &["centered"], vec![]);
        w.node("Mul", &["centered", "centered"], &["sq"], vec![]);
        w.node("ReduceMean", &["sq"], &["var"], axes());
        w.node("Add", &["var", &eps], &["var_eps"], vec![]);
        w.node("Sqrt", &["var_eps"], &["std"], vec![]);
        w.node("Div", &["centered", "std"], &["normed"], vec![]);
        w.node("Mul", &["normed", &g], &["scaled"], vec![]);
        w.node("Add", &["scaled", &b], &["ln.out"], vec![]);
        w.node(
            "LeakyRelu",
            &["ln.out"],
            &["act"],
            vec![attr_float("alpha", 0.2)],
        );
        w.node("Conv", &["act", &w2], &["c2"], conv());
        w.node("Tanh", &["c2"], &["y"], vec![]);
        w.output_f32("y", &shape);
        w.to_bytes()
    }

    #[test]
    fn fuses_ign_train_layer_norms_exactly() {
        let path = std::path::Path::new("<ln test model>");
        let model = Model::from_bytes(path, &ln_model()).unwrap();
        let mut proto = pb::ModelProto::decode(model.bytes()).unwrap();
        let before = proto.graph.as_ref().unwrap().node.len();
        let x = crate::inputs::noise_batch(&model.info, 4, 5);
        let shapes =
            crate::quantize::calib::shapes(&proto, &norm_inputs(&proto), &x, None).unwrap();
        assert_eq!(fuse_layer_norms(&mut proto, &shapes).unwrap(), 1);
        let g = proto.graph.as_ref().unwrap();
        assert_eq!(g.node.len(), before - 8);
        assert_eq!(
            g.node
                .iter()
                .filter(|n| n.op_type == "LayerNormalization")
                .count(),
            1
        );
        assert!(!g.node.iter().any(|n| n.op_type == "ReduceMean"));
        assert!(proto.opset_import.iter().any(|o| o.version >= 17));
        let fused = Model::from_bytes(path, &proto.encode_to_vec()).unwrap();
        let want = CpuBackend::new(&model, None).unwrap().run(&x).unwrap();
        let got = CpuBackend::new(&fused, None).unwrap().run(&x).unwrap();
        assert!(want.max_abs_diff(&got) < 1e-5);
    }
}
