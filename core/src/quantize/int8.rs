//! int8 post-training quantization to standard ONNX operators (QOperator form): the
//! `conv-integer` and `q-linear-conv` schemes. The default scheme, `fused` (int8 end to end),
//! is [`super::fused`]; what both share (ranges, weight rounding, the rescale to float) is
//! `int8_common`, whose public items are re-exported here.
//!
//! Every `Conv` becomes `QuantizeLinear → QLinearConv → DequantizeLinear`:
//! - weights: int8, symmetric, one scale per output channel (zero point 0);
//! - activations: uint8, one scale and zero point per tensor, from the calibration ranges;
//! - bias: int32 at scale `x_scale · w_scale[c]`.
//!
//! Between convolutions the graph stays in float ("float islands"): LayerNorm needs a mean and
//! a variance, and ONNX has no quantized LeakyRelu or Tanh. A `Relu` whose output only feeds
//! convolutions is folded away: with a zero point of 0, `QuantizeLinear` saturates negatives
//! to 0, so `Q(x) = Q(relu(x))` exactly.
//!
//! Both tract (integer kernels) and onnxruntime (its U8S8 kernels) run the result.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tract_onnx::pb;

use super::graph::{f32_tensor, float_initializer, graph_mut, node_label, Names};
use super::int8_common::{
    drop_unused_initializers, emit_conv_output, emit_rescale, is_quantizable_conv, tensor_of,
};
use crate::model::writer::attr_int;

pub use super::int8_common::{calibration_tensors, i8_per_channel, u8_params, Ranges};

fn scalar_u8(name: &str, v: u8) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type: pb::tensor_proto::DataType::Uint8 as i32,
        raw_data: vec![v],
        ..Default::default()
    }
}

/// Which integer operator the convolutions become.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `QLinearConv`: uint8 in, uint8 out (requantized), then `DequantizeLinear`.
    QLinearConv,
    /// `ConvInteger`: uint8 in, int32 out, rescaled per channel in float (no output range).
    ConvInteger,
    /// int8 end to end: `QLinearConv` with per-tensor scales (requantized inside tract's
    /// integer kernel), data movement on int8, activations as lookup tables (the default;
    /// see the quantize::fused module).
    #[default]
    Fused,
}

impl Scheme {
    /// The names the command line takes, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["q-linear-conv", "conv-integer", "fused"];
}

impl std::str::FromStr for Scheme {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "q-linear-conv" => Ok(Scheme::QLinearConv),
            "conv-integer" => Ok(Scheme::ConvInteger),
            "fused" => Ok(Scheme::Fused),
            _ => anyhow::bail!("{s}: not an int8 scheme; use fused, q-linear-conv or conv-integer"),
        }
    }
}

/// What the quantizer did, for the report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Int8Summary {
    /// Convolutions now on integer kernels (QLinearConv or ConvInteger).
    pub integer_convs: usize,
    /// Relu nodes folded into the next QuantizeLinear.
    pub folded_relus: usize,
    /// QuantizeLinear / DequantizeLinear pairs at float-island borders.
    pub quantize_nodes: usize,
    pub dequantize_nodes: usize,
    /// Convs kept in float arithmetic on int8 weights: dense layers and the first conv (fused
    /// schemes).
    #[serde(skip_serializing_if = "is_zero")]
    pub float_convs: usize,
    /// Which convs compute in float, and why (fused scheme).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_float: Vec<FloatConv>,
}

/// A conv the fused scheme keeps in float arithmetic (on int8 weights), and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FloatConv {
    /// The conv's output tensor (how the fidelity floor names it).
    pub conv: String,
    pub why: FloatReason,
}

/// Why a conv computes in float in the fused scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloatReason {
    /// It reads the model's input, whose int8 steps cost the most fidelity for the least time.
    ReadsTheInput,
    /// A dense layer: a matrix-vector product at batch 1, bound by reading its weights, which
    /// are int8 either way.
    Dense,
    /// The fidelity floor (`--min-psnr`) moved it.
    FidelityFloor,
}

impl std::fmt::Display for FloatReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloatReason::ReadsTheInput => "reads the input",
            FloatReason::Dense => "dense",
            FloatReason::FidelityFloor => "fidelity floor",
        })
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Quantize every constant-weight `Conv` of `model` (a float graph with no `ConvTranspose`
/// left; see [`super::deconv`]) using `ranges` for the activations. `dense` names the outputs
/// of the dense layers (the fused scheme keeps their arithmetic in float, see
/// [`super::fused`]).
pub fn quantize(
    model: &pb::ModelProto,
    ranges: &Ranges,
    scheme: Scheme,
    dense: &[String],
) -> Result<(pb::ModelProto, Int8Summary)> {
    if scheme == Scheme::Fused {
        return super::fused::quantize(model, ranges, dense);
    }
    let mut proto = model.clone();
    let graph = graph_mut(&mut proto)?;
    if graph.node.iter().any(|n| n.op_type == "ConvTranspose") {
        bail!("ConvTranspose left in the graph: rewrite it first (quantize::deconv)");
    }
    let mut names = Names::of(graph);
    let (producer, consumers) = links(graph);
    let conv_ids: Vec<usize> = (0..graph.node.len())
        .filter(|&i| is_quantizable_conv(graph, &graph.node[i]))
        .collect();
    let folded = foldable_relus(graph, &conv_ids, &producer, &consumers);

    let nodes = std::mem::take(&mut graph.node);
    let mut new_nodes = Vec::with_capacity(nodes.len() + 3 * conv_ids.len());
    let mut quantized: HashMap<String, QuantizedInput> = HashMap::new();
    let mut summary = Int8Summary::default();
    for (i, node) in nodes.into_iter().enumerate() {
        if folded.contains_key(&i) {
            summary.folded_relus += 1;
            continue;
        }
        if !conv_ids.contains(&i) {
            new_nodes.push(node);
            continue;
        }
        let mut e = Emitter {
            graph: &mut *graph,
            names: &mut names,
            nodes: &mut new_nodes,
            ranges,
        };
        let x = node.input[0].clone();
        // Quantized input, shared by every conv reading the same tensor.
        if !quantized.contains_key(&x) {
            let relu_input = producer.get(&x).and_then(|p| folded.get(p));
            quantized.insert(x.clone(), e.quantize_input(&x, relu_input)?);
            summary.quantize_nodes += 1;
        }
        let q = quantized[&x].clone();
        if node.op_type == "MatMul" {
            emit_matmul_integer(e.graph, e.names, e.nodes, &node, &q.xq, &q.zp, q.scale)?;
        } else {
            e.conv(&node, &q, scheme)?;
            if scheme != Scheme::ConvInteger {
                summary.dequantize_nodes += 1;
            }
        }
        summary.integer_convs += 1;
    }
    graph.node = new_nodes;
    drop_unused_initializers(graph);
    Ok((proto, summary))
}

/// Who produces and who consumes each tensor (by node index).
type Links = (HashMap<String, usize>, HashMap<String, Vec<usize>>);

fn links(graph: &pb::GraphProto) -> Links {
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.clone(), i);
        }
        for inp in &n.input {
            consumers.entry(inp.clone()).or_default().push(i);
        }
    }
    (producer, consumers)
}

/// Relu nodes that only feed quantized convs (and are no graph output): they fold into the
/// QuantizeLinear (uint8 with zero point 0 clips at 0). Maps each to its input.
fn foldable_relus(
    graph: &pb::GraphProto,
    conv_ids: &[usize],
    producer: &HashMap<String, usize>,
    consumers: &HashMap<String, Vec<usize>>,
) -> HashMap<usize, String> {
    let outputs: Vec<&String> = graph.output.iter().map(|o| &o.name).collect();
    let mut folded = HashMap::new();
    for &ci in conv_ids {
        let x = &graph.node[ci].input[0];
        if let Some(&pi) = producer.get(x) {
            let p = &graph.node[pi];
            let only_convs = consumers
                .get(x)
                .is_some_and(|cs| cs.iter().all(|c| conv_ids.contains(c)));
            if p.op_type == "Relu" && only_convs && !outputs.contains(&x) {
                folded.insert(pi, p.input[0].clone());
            }
        }
    }
    folded
}

/// A tensor quantized to uint8 once, for every conv that reads it.
#[derive(Clone)]
struct QuantizedInput {
    /// The uint8 tensor.
    xq: String,
    /// Names of its scale and zero point initializers.
    scale_name: String,
    zp: String,
    /// The scale's value.
    scale: f32,
}

/// Appends nodes and initializers to the graph being rewritten.
struct Emitter<'a> {
    graph: &'a mut pb::GraphProto,
    names: &'a mut Names,
    nodes: &'a mut Vec<pb::NodeProto>,
    ranges: &'a Ranges,
}

impl Emitter<'_> {
    fn range(&self, t: &str) -> Result<(f32, f32)> {
        self.ranges
            .get(t)
            .copied()
            .with_context(|| format!("no calibration range for tensor '{t}'"))
    }

    /// `QuantizeLinear` of `x` (or of the input of the Relu that produced it, folded away).
    fn quantize_input(&mut self, x: &str, relu_input: Option<&String>) -> Result<QuantizedInput> {
        let (mn, mx) = self.range(x)?;
        let (s, zp) = u8_params(mn, mx);
        let src = match relu_input {
            Some(relu_in) => {
                debug_assert_eq!(zp, 0, "a Relu output has min 0");
                relu_in.clone()
            }
            None => x.to_string(),
        };
        let s_name = self.names.fresh(&format!("{x}.scale"));
        let zp_name = self.names.fresh(&format!("{x}.zero_point"));
        let xq = self.names.fresh(&format!("{x}.quantized"));
        self.graph.initializer.push(f32_tensor(&s_name, &[], &[s]));
        self.graph.initializer.push(scalar_u8(&zp_name, zp));
        self.nodes.push(pb::NodeProto {
            name: self.names.fresh(&format!("{x}.quantize")),
            op_type: "QuantizeLinear".into(),
            input: vec![src, s_name.clone(), zp_name.clone()],
            output: vec![xq.clone()],
            ..Default::default()
        });
        Ok(QuantizedInput {
            xq,
            scale_name: s_name,
            zp: zp_name,
            scale: s,
        })
    }

    /// One conv on integer kernels: int8 per-channel weights, then the scheme's operator.
    fn conv(&mut self, node: &pb::NodeProto, q: &QuantizedInput, scheme: Scheme) -> Result<()> {
        let graph = &mut *self.graph;
        let names = &mut *self.names;
        let w = float_initializer(graph, &node.input[1])?.context("conv weights")?;
        let cout = w.dims[0];
        let (wq, ws) = i8_per_channel(&w.data, cout);
        let wq_name = names.fresh(&format!("{}.int8", node.input[1]));
        let ws_name = names.fresh(&format!("{}.scale", node.input[1]));
        let wzp_name = names.fresh(&format!("{}.zero_point", node.input[1]));
        graph.initializer.push(tensor_of(
            &wq_name,
            &w.dims,
            pb::tensor_proto::DataType::Int8,
            wq.iter().map(|&v| v as u8).collect(),
        ));
        graph.initializer.push(f32_tensor(&ws_name, &[cout], &ws));
        graph.initializer.push(tensor_of(
            &wzp_name,
            &[cout],
            pb::tensor_proto::DataType::Int8,
            vec![0; cout],
        ));
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(b_name) => Some((
                b_name.clone(),
                float_initializer(graph, b_name)?.context("conv bias")?.data,
            )),
            None => None,
        };
        let mut attrs: Vec<pb::AttributeProto> = node.attribute.clone();
        if !attrs.iter().any(|a| a.name == "group") {
            attrs.push(attr_int("group", 1));
        }
        let weights = ConvWeights {
            wq_name,
            ws_name,
            wzp_name,
            ws,
            cout,
            bias,
            attrs,
        };
        match scheme {
            Scheme::ConvInteger => self.conv_integer(node, q, weights),
            _ => self.qlinear_conv(node, q, weights),
        }
    }

    /// `QLinearConv` (uint8 out, requantized with the output's range), then dequantized.
    fn qlinear_conv(
        &mut self,
        node: &pb::NodeProto,
        q: &QuantizedInput,
        cw: ConvWeights,
    ) -> Result<()> {
        let y = node.output[0].clone();
        let (ymn, ymx) = self.range(&y)?;
        let (graph, names, new_nodes) = (&mut *self.graph, &mut *self.names, &mut *self.nodes);
        let base = node_label(node).to_string();
        let (xq, xs_name, xzp_name, xs) =
            (q.xq.clone(), q.scale_name.clone(), q.zp.clone(), q.scale);
        let ConvWeights {
            wq_name,
            ws_name,
            wzp_name,
            ws,
            cout,
            bias,
            attrs,
        } = cw;
        let (ys, yzp) = u8_params(ymn, ymx);
        let ys_name = names.fresh(&format!("{y}.scale"));
        let yzp_name = names.fresh(&format!("{y}.zero_point"));
        graph.initializer.push(f32_tensor(&ys_name, &[], &[ys]));
        graph.initializer.push(scalar_u8(&yzp_name, yzp));
        let mut inputs = vec![
            xq,
            xs_name,
            xzp_name,
            wq_name,
            ws_name,
            wzp_name,
            ys_name.clone(),
            yzp_name.clone(),
        ];
        if let Some((b_name, b)) = &bias {
            let bq: Vec<i32> = b
                .iter()
                .zip(&ws)
                .map(|(v, s)| {
                    (*v as f64 / (xs as f64 * *s as f64))
                        .round()
                        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect();
            let bq_name = names.fresh(&format!("{b_name}.int32"));
            graph.initializer.push(tensor_of(
                &bq_name,
                &[cout],
                pb::tensor_proto::DataType::Int32,
                bq.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            inputs.push(bq_name);
        }
        let yq = names.fresh(&format!("{y}.quantized"));
        new_nodes.push(pb::NodeProto {
            name: names.fresh(&format!("{base}.qlinear")),
            op_type: "QLinearConv".into(),
            input: inputs,
            output: vec![yq.clone()],
            attribute: attrs,
            ..Default::default()
        });
        new_nodes.push(pb::NodeProto {
            name: names.fresh(&format!("{y}.dequantize")),
            op_type: "DequantizeLinear".into(),
            input: vec![yq, ys_name, yzp_name],
            output: vec![y],
            ..Default::default()
        });
        Ok(())
    }

    /// `ConvInteger` (int32 accumulators), rescaled per channel in float, plus the bias.
    fn conv_integer(
        &mut self,
        node: &pb::NodeProto,
        q: &QuantizedInput,
        cw: ConvWeights,
    ) -> Result<()> {
        let (graph, names, new_nodes) = (&mut *self.graph, &mut *self.names, &mut *self.nodes);
        let y = node.output[0].clone();
        let base = node_label(node).to_string();
        let (xq, xzp_name, xs) = (q.xq.clone(), q.zp.clone(), q.scale);
        let ConvWeights {
            wq_name,
            ws,
            bias,
            attrs,
            ..
        } = cw;
        // int32 accumulators, rescaled in float: y = acc · (x_scale · w_scale[c]) + b[c].
        let acc = names.fresh(&format!("{y}.int32"));
        new_nodes.push(pb::NodeProto {
            name: names.fresh(&format!("{base}.integer")),
            op_type: "ConvInteger".into(),
            input: vec![xq, wq_name, xzp_name],
            output: vec![acc.clone()],
            attribute: attrs,
            ..Default::default()
        });
        let scale: Vec<f32> = ws.iter().map(|w| w * xs).collect();
        emit_conv_output(graph, names, new_nodes, y, acc, &scale, bias);
        Ok(())
    }
}

/// A conv's int8 weights (names of the tensor, scales and zero points), its float bias and
/// attributes.
struct ConvWeights {
    wq_name: String,
    ws_name: String,
    wzp_name: String,
    ws: Vec<f32>,
    cout: usize,
    bias: Option<(String, Vec<f32>)>,
    attrs: Vec<pb::AttributeProto>,
}

/// `MatMul(x, B)` with constant `B [K, M]` → `MatMulInteger` (int8 per-column `B`) → float.
fn emit_matmul_integer(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    new_nodes: &mut Vec<pb::NodeProto>,
    node: &pb::NodeProto,
    xq: &str,
    xzp: &str,
    xs: f32,
) -> Result<()> {
    let b = float_initializer(graph, &node.input[1])?.context("matmul weights")?;
    let (k, m) = (b.dims[0], b.dims[1]);
    // Quantize per column: rows of the transpose.
    let mut t = vec![0f32; k * m];
    for i in 0..k {
        for j in 0..m {
            t[j * k + i] = b.data[i * m + j];
        }
    }
    let (tq, scales) = i8_per_channel(&t, m);
    let mut bq = vec![0u8; k * m];
    for i in 0..k {
        for j in 0..m {
            bq[i * m + j] = tq[j * k + i] as u8;
        }
    }
    let y = node.output[0].clone();
    let bq_name = names.fresh(&format!("{}.int8", node.input[1]));
    graph.initializer.push(tensor_of(
        &bq_name,
        &[k, m],
        pb::tensor_proto::DataType::Int8,
        bq,
    ));
    let acc = names.fresh(&format!("{y}.int32"));
    new_nodes.push(pb::NodeProto {
        name: names.fresh(&format!("{y}.integer")),
        op_type: "MatMulInteger".into(),
        input: vec![xq.to_string(), bq_name, xzp.to_string()],
        output: vec![acc.clone()],
        ..Default::default()
    });
    let sc: Vec<f32> = scales.iter().map(|s| s * xs).collect();
    emit_rescale(graph, names, new_nodes, &y, acc, &sc, &[m], y.clone());
    Ok(())
}
