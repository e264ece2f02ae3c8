//! int8 end to end (`--scheme fused`, issue 18): the form tract fuses into one integer kernel
//! per convolution (docs/performance.md).
//!
//! - Every `Conv` with constant weights becomes a `QLinearConv` with int8 activations in and
//!   out, per-tensor scales, weight zero point 0 and an int32 bias: tract folds the bias, the
//!   zero-point terms, the requantization (one scale) and the clamp into the matrix kernel.
//! - Data movement (`Reshape`, `DepthToSpace`, `Slice`, ...) runs on the int8 tensor itself.
//! - Everything else (LeakyRelu, Relu, Tanh) reads float: `DequantizeLinear → op →
//!   QuantizeLinear`, which tract turns into one 256-entry lookup table per activation.
//! - One `QuantizeLinear` at the input, one `DequantizeLinear` before each float consumer and
//!   at the outputs.
//!
//! - A `Relu` reached from a conv through data movement only is folded into that conv: its
//!   output takes the Relu's range (zero point −128), so the kernel's clamp is the Relu.
//! - Dense layers (1×1 convs over a 1×1 image, [`super::dense::DenseForm::Conv1x1`]) keep
//!   float arithmetic with int8 weights (`DequantizeLinear` of a constant, folded at load): a
//!   matrix-vector product gains nothing from tract's integer kernels, which compute 16×16
//!   tiles (measured: 26.6 µs int8 against 10.3 µs fp32 for ign-mnist's 128 → 2048 layer).
//!   So does the first conv, which reads the model's input.
//! - The last conv (no conv after it) gives float: `ConvInteger` and a per-channel rescale, so
//!   that its output (the input of the final tanh) keeps more than 256 levels.

use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

use super::graph::{f32_tensor, float_initializer, graph_mut, node_label, Names};
use super::int8::{FloatConv, FloatReason, Int8Summary};
use super::int8_common::Ranges;
use crate::model::writer::attr_int;

/// Operators that only move values: they run on int8 tensors unchanged.
const MOVES: &[&str] = &[
    "Reshape",
    "DepthToSpace",
    "SpaceToDepth",
    "Slice",
    "Identity",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
];

/// int8 scale and zero point of a range (widened to hold 0).
pub fn i8_params(min: f32, max: f32) -> (f32, i8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = if max - min > 1e-12 {
        (max - min) / 255.0
    } else {
        1.0
    };
    let zp = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
    (scale, zp)
}

/// A tensor's int8 form: its name, scale and zero point (and their initializers' names).
#[derive(Clone)]
struct QTensor {
    name: String,
    scale: f32,
    scale_name: String,
    zp_name: String,
}

/// Rewrites the graph node by node, keeping track of which tensors exist in float and in int8.
struct Pass<'a> {
    graph: &'a mut pb::GraphProto,
    names: Names,
    ranges: &'a Ranges,
    nodes: Vec<pb::NodeProto>,
    quantized: HashMap<String, QTensor>,
    float: HashSet<String>,
    summary: Int8Summary,
    /// Outputs of the convs kept in float arithmetic on int8 weights, and why: the dense layers
    /// (and those the fidelity floor adds, which come in the same list) and the convs that read
    /// the model's input.
    float_convs: HashMap<String, FloatReason>,
    /// For a conv output whose Relu is folded into it: that Relu's output (whose range it takes).
    relu_of: HashMap<String, String>,
    /// Relu nodes folded into their conv (by output name).
    folded: HashSet<String>,
    /// Outputs of the convs with no conv after them (float out: `ConvInteger` and a rescale).
    last: HashSet<String>,
}

/// Quantize `model` (a float graph whose dense layers are 1×1 convs and with no
/// `ConvTranspose` left) into the fused int8 form, with `ranges` for the activations.
pub fn quantize(
    model: &pb::ModelProto,
    ranges: &Ranges,
    dense: &[String],
) -> Result<(pb::ModelProto, Int8Summary)> {
    let mut proto = model.clone();
    let graph = graph_mut(&mut proto)?;
    anyhow::ensure!(
        !graph.node.iter().any(|n| n.op_type == "ConvTranspose"),
        "ConvTranspose left in the graph: rewrite it first (quantize::deconv)"
    );
    let names = Names::of(graph);
    let nodes = std::mem::take(&mut graph.node);
    let mut float: HashSet<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    float.extend(graph.initializer.iter().map(|t| t.name.clone()));
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    // The dense layers, and the convs that read the model's input: the input (noise, a camera
    // frame) is the one tensor whose int8 steps cost the most fidelity (held-out noise 38.8 →
    // 40.0 dB on ign-mnist) for the least time (its conv has K = C·kh·kw, 16 on ign-mnist).
    let mut float_convs: HashMap<String, FloatReason> = dense
        .iter()
        .map(|d| (d.clone(), FloatReason::Dense))
        .collect();
    for n in nodes.iter().filter(|n| n.op_type == "Conv") {
        if graph.input.iter().any(|i| i.name == n.input[0]) {
            float_convs.insert(n.output[0].clone(), FloatReason::ReadsTheInput);
        }
    }
    let consumers = consumers(&nodes);
    let relu_of = foldable_relus(&nodes, &consumers, &outputs, &float_convs);
    let last = last_convs(&nodes, &consumers);
    let mut pass = Pass {
        last,
        float_convs,
        folded: relu_of.values().cloned().collect(),
        relu_of,
        graph,
        names,
        ranges,
        nodes: Vec::new(),
        quantized: HashMap::new(),
        float,
        summary: Int8Summary::default(),
    };
    for node in nodes {
        pass.node(node)?;
    }
    for o in &outputs {
        pass.need_float(o)?;
    }
    let Pass {
        graph,
        nodes,
        summary,
        ..
    } = pass;
    graph.node = nodes;
    super::int8_common::drop_unused_initializers(graph);
    Ok((proto, summary))
}

impl Pass<'_> {
    fn node(&mut self, node: pb::NodeProto) -> Result<()> {
        let const_weights = node.op_type == "Conv"
            && node.input.len() >= 2
            && float_initializer(self.graph, &node.input[1])?.is_some();
        if const_weights {
            return self.conv(&node);
        }
        let folded = node.op_type == "Relu" && self.folded.contains(&node.output[0]);
        if folded || MOVES.contains(&node.op_type.as_str()) {
            if let Some(q) = self.quantized.get(&node.input[0]).cloned() {
                if folded {
                    self.summary.folded_relus += 1;
                }
                return self.move_int8(node, q);
            }
        }
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            self.need_float(i)?;
        }
        self.float.extend(node.output.iter().cloned());
        self.nodes.push(node);
        Ok(())
    }

    /// A data-movement node on the int8 tensor: its output has the input's scale and zero point.
    fn move_int8(&mut self, mut node: pb::NodeProto, q: QTensor) -> Result<()> {
        let out = node.output[0].clone();
        if node.op_type == "Relu" {
            // Folded: the conv's int8 output already is the Relu's.
            self.quantized.insert(out, q);
            return Ok(());
        }
        let out_q = self.names.fresh(&format!("{out}.int8"));
        node.input[0] = q.name.clone();
        node.output[0] = out_q.clone();
        self.nodes.push(node);
        self.quantized.insert(out, QTensor { name: out_q, ..q });
        Ok(())
    }

    /// Make the float tensor `t` available (dequantize its int8 form if that is all there is).
    fn need_float(&mut self, t: &str) -> Result<()> {
        if self.float.contains(t) {
            return Ok(());
        }
        let q = self
            .quantized
            .get(t)
            .cloned()
            .with_context(|| format!("tensor '{t}' is produced by no node"))?;
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{t}.dequantize")),
            op_type: "DequantizeLinear".into(),
            input: vec![q.name, q.scale_name, q.zp_name],
            output: vec![t.to_string()],
            ..Default::default()
        });
        self.summary.dequantize_nodes += 1;
        self.float.insert(t.to_string());
        Ok(())
    }

    /// The int8 form of `t` (quantized from float with its calibration range if needed).
    fn need_int8(&mut self, t: &str) -> Result<QTensor> {
        if let Some(q) = self.quantized.get(t) {
            return Ok(q.clone());
        }
        self.need_float(t)?;
        let q = self.params(t)?;
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{t}.quantize")),
            op_type: "QuantizeLinear".into(),
            input: vec![t.to_string(), q.scale_name.clone(), q.zp_name.clone()],
            output: vec![q.name.clone()],
            ..Default::default()
        });
        self.summary.quantize_nodes += 1;
        self.quantized.insert(t.to_string(), q.clone());
        Ok(q)
    }

    /// Scale and zero point initializers for tensor `t` from its calibration range.
    fn params(&mut self, t: &str) -> Result<QTensor> {
        let (mn, mx) = self
            .ranges
            .get(t)
            .copied()
            .with_context(|| format!("no calibration range for tensor '{t}'"))?;
        let (scale, zp) = i8_params(mn, mx);
        let scale_name = self.names.fresh(&format!("{t}.scale"));
        let zp_name = self.names.fresh(&format!("{t}.zero_point"));
        self.graph
            .initializer
            .push(f32_tensor(&scale_name, &[], &[scale]));
        self.graph.initializer.push(i8_tensor(&zp_name, &[], &[zp]));
        Ok(QTensor {
            name: self.names.fresh(&format!("{t}.int8")),
            scale,
            scale_name,
            zp_name,
        })
    }

    /// Float arithmetic on int8 weights, dequantized (per output channel) by a
    /// `DequantizeLinear` of constants, which tract and onnxruntime fold at load.
    fn float_conv(&mut self, node: &pb::NodeProto) -> Result<()> {
        self.need_float(&node.input[0])?;
        let w = float_initializer(self.graph, &node.input[1])?.context("dense weights")?;
        let cout = w.dims[0];
        let (wq, ws) = super::int8_common::i8_per_channel(&w.data, cout);
        let wname = &node.input[1];
        let wq_name = self.names.fresh(&format!("{wname}.int8"));
        let ws_name = self.names.fresh(&format!("{wname}.scale"));
        let wzp_name = self.names.fresh(&format!("{wname}.zero_point"));
        let wf_name = self.names.fresh(&format!("{wname}.dequantized"));
        let g = &mut *self.graph;
        g.initializer.push(i8_tensor(&wq_name, &w.dims, &wq));
        g.initializer.push(f32_tensor(&ws_name, &[cout], &ws));
        g.initializer
            .push(i8_tensor(&wzp_name, &[cout], &vec![0; cout]));
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{wname}.dequantize")),
            op_type: "DequantizeLinear".into(),
            input: vec![wq_name, ws_name, wzp_name],
            output: vec![wf_name.clone()],
            attribute: vec![attr_int("axis", 0)],
            ..Default::default()
        });
        let mut n = node.clone();
        n.input[1] = wf_name;
        for i in n.input.iter().skip(2).filter(|i| !i.is_empty()) {
            self.float.insert(i.clone());
        }
        self.float.insert(n.output[0].clone());
        self.nodes.push(n);
        self.summary.float_convs += 1;
        self.summary.in_float.push(FloatConv {
            conv: node.output[0].clone(),
            why: self.float_convs[&node.output[0]],
        });
        Ok(())
    }

    /// The last conv: `ConvInteger` (int8 in, int32 out), rescaled per channel in float and the
    /// bias added, so that the output (a tanh's input) is not cut to 256 levels.
    fn float_out_conv(&mut self, node: &pb::NodeProto) -> Result<()> {
        let x = self.need_int8(&node.input[0])?;
        let w = float_initializer(self.graph, &node.input[1])?.context("conv weights")?;
        let cout = w.dims[0];
        let (wq, ws) = super::int8_common::i8_per_channel(&w.data, cout);
        let wname = &node.input[1];
        let wq_name = self.names.fresh(&format!("{wname}.int8"));
        self.graph
            .initializer
            .push(i8_tensor(&wq_name, &w.dims, &wq));
        let y = node.output[0].clone();
        let base = node_label(node).to_string();
        let acc = self.names.fresh(&format!("{y}.int32"));
        let mut attrs = node.attribute.clone();
        if !attrs.iter().any(|a| a.name == "group") {
            attrs.push(attr_int("group", 1));
        }
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{base}.integer")),
            op_type: "ConvInteger".into(),
            input: vec![x.name.clone(), wq_name, x.zp_name.clone()],
            output: vec![acc.clone()],
            attribute: attrs,
            ..Default::default()
        });
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(b) => Some((
                b.clone(),
                float_initializer(self.graph, b)?.context("conv bias")?.data,
            )),
            None => None,
        };
        let scale: Vec<f32> = ws.iter().map(|s| s * x.scale).collect();
        super::int8_common::emit_conv_output(
            self.graph,
            &mut self.names,
            &mut self.nodes,
            y.clone(),
            acc,
            &scale,
            bias,
        );
        self.float.insert(y);
        self.summary.integer_convs += 1;
        Ok(())
    }

    /// `Conv` → `QLinearConv` (int8 in, int8 out).
    fn conv(&mut self, node: &pb::NodeProto) -> Result<()> {
        if self.float_convs.contains_key(&node.output[0]) {
            return self.float_conv(node);
        }
        if self.last.contains(&node.output[0]) {
            return self.float_out_conv(node);
        }
        let x = self.need_int8(&node.input[0])?;
        let range_of = self.relu_of.get(&node.output[0]).cloned();
        let mut y = self.params(range_of.as_deref().unwrap_or(&node.output[0]))?;
        y.name = self.names.fresh(&format!("{}.int8", node.output[0]));
        let w = float_initializer(self.graph, &node.input[1])?.context("conv weights")?;
        let cout = w.dims[0];
        // One scale per tensor: the requantization is then one number, which tract folds into
        // the kernel (per-channel scales measured 4.2x slower; equalization makes up for most
        // of the precision, see super::equalize).
        let (wq, ws) = super::int8_common::i8_per_channel(&w.data, 1);
        let dims: &[usize] = if ws.len() == 1 { &[] } else { &[cout] };
        let wname = &node.input[1];
        let wq_name = self.names.fresh(&format!("{wname}.int8"));
        let ws_name = self.names.fresh(&format!("{wname}.scale"));
        let wzp_name = self.names.fresh(&format!("{wname}.zero_point"));
        let g = &mut *self.graph;
        g.initializer.push(i8_tensor(&wq_name, &w.dims, &wq));
        g.initializer.push(f32_tensor(&ws_name, dims, &ws));
        g.initializer
            .push(i8_tensor(&wzp_name, dims, &vec![0; ws.len()]));
        let mut inputs = vec![
            x.name.clone(),
            x.scale_name.clone(),
            x.zp_name.clone(),
            wq_name,
            ws_name,
            wzp_name,
            y.scale_name.clone(),
            y.zp_name.clone(),
        ];
        if let Some(b_name) = node.input.get(2).filter(|s| !s.is_empty()) {
            let b = float_initializer(g, b_name)?.context("conv bias")?.data;
            let bq: Vec<i32> = b
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    let s = x.scale as f64 * ws[c.min(ws.len() - 1)] as f64;
                    (*v as f64 / s)
                        .round()
                        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect();
            let bq_name = self.names.fresh(&format!("{b_name}.int32"));
            g.initializer.push(pb::TensorProto {
                name: bq_name.clone(),
                dims: vec![cout as i64],
                data_type: pb::tensor_proto::DataType::Int32 as i32,
                raw_data: bq.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            inputs.push(bq_name);
        }
        let mut attrs = node.attribute.clone();
        if !attrs.iter().any(|a| a.name == "group") {
            attrs.push(attr_int("group", 1));
        }
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{}.qlinear", node_label(node))),
            op_type: "QLinearConv".into(),
            input: inputs,
            output: vec![y.name.clone()],
            attribute: attrs,
            ..Default::default()
        });
        self.summary.integer_convs += 1;
        self.quantized.insert(node.output[0].clone(), y);
        Ok(())
    }
}

/// The nodes that read each tensor.
type Consumers<'a> = HashMap<&'a str, Vec<&'a pb::NodeProto>>;

fn consumers(nodes: &[pb::NodeProto]) -> Consumers<'_> {
    let mut consumers: Consumers = HashMap::new();
    for n in nodes {
        for i in &n.input {
            consumers.entry(i.as_str()).or_default().push(n);
        }
    }
    consumers
}

/// Relus that can fold into a conv: reached from an integer conv's output (not one kept in
/// float) through data movement with one consumer at each step, and no graph output on the
/// way. Maps the conv's output to the Relu's output.
fn foldable_relus(
    nodes: &[pb::NodeProto],
    consumers: &Consumers,
    outputs: &[String],
    float_convs: &HashMap<String, FloatReason>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for conv in nodes.iter().filter(|n| n.op_type == "Conv") {
        let y = &conv.output[0];
        if float_convs.contains_key(y) {
            continue;
        }
        let mut t = y;
        while let Some([next]) = consumers.get(t.as_str()).map(Vec::as_slice) {
            if outputs.contains(t) || next.input[0] != *t {
                break;
            }
            if next.op_type == "Relu" {
                if !outputs.contains(&next.output[0]) {
                    out.insert(y.clone(), next.output[0].clone());
                }
                break;
            }
            if !MOVES.contains(&next.op_type.as_str()) {
                break;
            }
            t = &next.output[0];
        }
    }
    out
}

/// Outputs of the convs from which no other conv can be reached.
fn last_convs(nodes: &[pb::NodeProto], consumers: &Consumers) -> HashSet<String> {
    let reaches_conv = |start: &str| {
        let mut stack = vec![start.to_string()];
        let mut seen = HashSet::new();
        while let Some(t) = stack.pop() {
            for n in consumers.get(t.as_str()).into_iter().flatten() {
                if n.op_type == "Conv" {
                    return true;
                }
                for o in &n.output {
                    if seen.insert(o.clone()) {
                        stack.push(o.clone());
                    }
                }
            }
        }
        false
    };
    nodes
        .iter()
        .filter(|n| n.op_type == "Conv" && !reaches_conv(&n.output[0]))
        .map(|n| n.output[0].clone())
        .collect()
}

fn i8_tensor(name: &str, dims: &[usize], v: &[i8]) -> pb::TensorProto {
    let raw = v.iter().map(|&b| b as u8).collect();
    super::int8_common::tensor_of(name, dims, pb::tensor_proto::DataType::Int8, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8_params_hold_zero_exactly_and_span_the_range() {
        let (s, zp) = i8_params(-1.0, 1.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        assert!(zp == 0 || zp == -1, "{zp}");
        // A Relu output: zero at -128, so the kernel's clamp is the Relu.
        assert_eq!(i8_params(0.0, 3.0).1, -128);
        assert_eq!(i8_params(-3.0, -0.5).1, 127);
        // Dequantized ends stay within half a step of the range.
        let (s, zp) = i8_params(-0.3, 2.0);
        let lo = (-128 - zp as i32) as f32 * s;
        let hi = (127 - zp as i32) as f32 * s;
        assert!((lo + 0.3).abs() <= s / 2.0 + 1e-6, "{lo}");
        assert!((hi - 2.0).abs() <= s / 2.0 + 1e-6, "{hi}");
    }
}
