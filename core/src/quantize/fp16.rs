//! fp16 models: weights stored as IEEE half floats (`half`), the graph unchanged.
//!
//! Every float32 initializer `w` becomes a float16 initializer `w.fp16` and a `Cast` node
//! (to float32) that recreates `w`. The file is standard ONNX with float32 input and output
//! (the model file contract, docs/ARCHITECTURE.md), about half the size; onnxruntime and tract run it as is. At load, `ign-edge`
//! runs it with fp16 arithmetic where the CPU has it (aarch64 `asimdhp`) and in fp32 elsewhere.

use anyhow::{bail, Result};
use half::f16;
use tract_onnx::pb;

use super::graph::{decode_f32, graph_mut, Names};
use crate::model::writer::attr_int;

/// ONNX `TensorProto.DataType` code of float32, the `to` of the Casts.
const FLOAT: i64 = pb::tensor_proto::DataType::Float as i64;

/// Store every float32 initializer of `model` as float16; returns how many were converted.
pub fn weights_to_fp16(model: &mut pb::ModelProto) -> Result<usize> {
    let graph = graph_mut(model)?;
    let mut names = Names::of(graph);
    let mut casts = Vec::new();
    let mut count = 0;
    for t in graph.initializer.iter_mut() {
        if t.data_type != pb::tensor_proto::DataType::Float as i32 {
            continue;
        }
        let ft = decode_f32(t)?;
        if let Some(v) = ft.data.iter().find(|v| v.abs() > f16::MAX.to_f32()) {
            bail!(
                "weight '{}' holds {v}, beyond the fp16 range (±65504); keep this model in fp32 or int8",
                t.name
            );
        }
        let half_name = names.fresh(&format!("{}.fp16", t.name));
        casts.push(pb::NodeProto {
            name: names.fresh(&format!("{}.cast", t.name)),
            op_type: "Cast".into(),
            input: vec![half_name.clone()],
            output: vec![t.name.clone()],
            attribute: vec![attr_int("to", FLOAT)],
            ..Default::default()
        });
        *t = pb::TensorProto {
            name: half_name,
            dims: t.dims.clone(),
            data_type: pb::tensor_proto::DataType::Float16 as i32,
            raw_data: ft
                .data
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
                .collect(),
            ..Default::default()
        };
        count += 1;
    }
    // The casts come first: every later node finds its weights under their old names.
    casts.append(&mut graph.node);
    graph.node = casts;
    Ok(count)
}
