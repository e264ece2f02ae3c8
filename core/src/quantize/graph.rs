//! Small helpers to read and edit an ONNX graph in place (prost types from `tract_onnx::pb`):
//! float initializers as `Vec<f32>`, node attributes, fresh tensor names.

use anyhow::{anyhow, bail, Result};
use std::collections::HashSet;
use tract_onnx::pb;

use pb::tensor_proto::DataType;

/// A float32 initializer decoded from the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// Decode a float32 `TensorProto` (raw little-endian bytes or `float_data`).
pub fn decode_f32(t: &pb::TensorProto) -> Result<FloatTensor> {
    if t.data_type != DataType::Float as i32 {
        bail!("tensor '{}' is not float32", t.name);
    }
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
        bail!(
            "tensor '{}' keeps its data in an external file; save the model with its weights inside",
            t.name
        );
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = dims.iter().product();
    let data: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if data.len() != n {
        bail!(
            "tensor '{}' holds {} values for shape {:?}",
            t.name,
            data.len(),
            dims
        );
    }
    Ok(FloatTensor { dims, data })
}

/// The graph of a model (an error when it has none).
pub fn graph_mut(model: &mut pb::ModelProto) -> Result<&mut pb::GraphProto> {
    model
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("model has no graph"))
}

/// The float initializer called `name`, if there is one.
pub fn float_initializer(graph: &pb::GraphProto, name: &str) -> Result<Option<FloatTensor>> {
    match graph.initializer.iter().find(|t| t.name == name) {
        Some(t) => decode_f32(t).map(Some),
        None => Ok(None),
    }
}

/// A float32 `TensorProto`.
pub fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An int64 `TensorProto`.
pub fn i64_tensor(name: &str, dims: &[usize], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Hands out tensor names that the graph does not use yet (deterministic).
pub struct Names {
    used: HashSet<String>,
}

/// What names derived from `node` start with: its name, or its first output when unnamed.
pub fn node_label(node: &pb::NodeProto) -> &str {
    if node.name.is_empty() {
        &node.output[0]
    } else {
        &node.name
    }
}

impl Names {
    /// Every name in use in `graph`: inputs, outputs, initializers, node outputs and names.
    pub fn of(graph: &pb::GraphProto) -> Names {
        let mut used = HashSet::new();
        for v in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            used.insert(v.name.clone());
        }
        for t in &graph.initializer {
            used.insert(t.name.clone());
        }
        for n in &graph.node {
            used.insert(n.name.clone());
            used.extend(n.output.iter().cloned());
            used.extend(n.input.iter().cloned());
        }
        Names { used }
    }

    /// `base`, or `base.2`, `base.3`... whichever is free; the name is then taken.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 2;
        while self.used.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        name
    }
}
