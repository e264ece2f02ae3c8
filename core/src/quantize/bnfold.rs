//! BatchNormalization folded into the convolution before it (issue #31): PyTorch's exporter
//! leaves a `BatchNormalization` node after every normalised Conv and ConvTranspose of a DCGAN
//! IGN. In inference it is a per-channel affine `y = s·x + t` (`s = γ/√(σ²+ε)`,
//! `t = β − μ·s`), which the convolution can carry in its weights and bias exactly:
//! `W'[o] = s[o]·W[o]`, `b'[o] = s[o]·b[o] + t[o]` (for ConvTranspose the output channel is
//! the weight's second axis). Folded, the graph has one op per layer fewer to run and the
//! int8 pass sees plain convolutions it can make integer.
//!
//! A standalone `Mul` or `Add` by a constant (a scalar, or one value per output channel: shape
//! `[C,1,1]` or `[1,C,1,1]`) after a convolution is the same affine and folds the same way.
//!
//! [`fold_batchnorm`] runs on the ONNX graph: at load (`Model::from_bytes`: the plan tract
//! makes and the graph the quantizer starts from are the folded one) and on any graph given.
//! An affine node is left alone (and runs as it is) unless its input comes from a Conv or
//! ConvTranspose that nothing else reads, and its constants and the convolution's weights are
//! float initializers.

use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

use super::graph::{f32_tensor, float_initializer, graph_mut, node_label, FloatTensor, Names};

/// The default of BatchNormalization's `epsilon`.
const DEFAULT_EPSILON: f32 = 1e-5;

/// Whether `graph` has an affine node (BatchNormalization, or Mul/Add by a per-channel
/// constant) that [`fold_batchnorm`] would fold.
pub fn has_foldable(graph: &pb::GraphProto) -> bool {
    matches!(next_pair(graph), Ok(Some(_)))
}

/// Fold every BatchNormalization, and every Mul or Add by a per-channel constant, that follows
/// a Conv or ConvTranspose into it; returns how many were folded. Initializers nothing reads
/// any more are dropped.
pub fn fold_batchnorm(model: &mut pb::ModelProto) -> Result<usize> {
    let graph = graph_mut(model)?;
    let mut names = Names::of(graph);
    let mut folded = 0;
    loop {
        let Some((conv, bn)) = next_pair(graph)? else {
            break;
        };
        let label = node_label(&graph.node[bn]).to_string();
        let op = graph.node[bn].op_type.clone();
        fold_pair(graph, &mut names, conv, bn).with_context(|| format!("{op} node '{label}'"))?;
        graph.node.remove(bn);
        folded += 1;
    }
    drop_unread_initializers(graph);
    Ok(folded)
}

/// The next (convolution, BatchNormalization) pair that can be folded, as node indices.
fn next_pair(graph: &pb::GraphProto) -> Result<Option<(usize, usize)>> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    for (bn, node) in graph.node.iter().enumerate() {
        let Some(x) = affine_input(graph, node) else {
            continue;
        };
        let Some(&conv) = producer.get(x) else {
            continue;
        };
        let c = &graph.node[conv];
        let is_conv = matches!(c.op_type.as_str(), "Conv" | "ConvTranspose");
        if !is_conv || readers.get(x) != Some(&1) || outputs.contains(x) || c.output.len() != 1 {
            continue;
        }
        let weights_are_constant = c
            .input
            .iter()
            .skip(1)
            .all(|n| n.is_empty() || float_initializer(graph, n).ok().flatten().is_some());
        let fits = out_channels(graph, c).is_some_and(|cout| affine(graph, node, cout).is_ok());
        if weights_are_constant && c.input.len() >= 2 && fits {
            return Ok(Some((conv, bn)));
        }
    }
    Ok(None)
}

/// The tensor an affine node applies to: a BatchNormalization's input (its training outputs
/// unread), or the non-constant side of a Mul or Add whose other side is an initializer.
fn affine_input<'g>(graph: &'g pb::GraphProto, node: &'g pb::NodeProto) -> Option<&'g str> {
    match node.op_type.as_str() {
        "BatchNormalization" if node.input.len() == 5 => {
            let unread = node.output.iter().skip(1).all(|o| o.is_empty());
            unread.then_some(node.input[0].as_str())
        }
        "Mul" | "Add" if node.input.len() == 2 => {
            let konst = |n: &str| float_initializer(graph, n).ok().flatten().is_some();
            match (konst(&node.input[0]), konst(&node.input[1])) {
                (false, true) => Some(node.input[0].as_str()),
                (true, false) => Some(node.input[1].as_str()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The output channels of a Conv (`W[0]`) or ConvTranspose (`W[1]·group`).
fn out_channels(graph: &pb::GraphProto, conv: &pb::NodeProto) -> Option<usize> {
    let w = float_initializer(graph, conv.input.get(1)?).ok()??;
    let group = conv
        .attribute
        .iter()
        .find(|a| a.name == "group")
        .map_or(1, |a| a.i.max(1) as usize);
    match conv.op_type.as_str() {
        "ConvTranspose" => Some(*w.dims.get(1)? * group),
        _ => w.dims.first().copied(),
    }
}

/// The per-channel scale and shift (`cout` channels) of an affine node: a BatchNormalization,
/// or a Mul or Add by a scalar or per-channel constant (`[C]` along the channel axis of NCHW:
/// shape `[C,1,1]` or `[1,C,1,1]`).
fn affine(
    graph: &pb::GraphProto,
    node: &pb::NodeProto,
    cout: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if node.op_type != "BatchNormalization" {
        let k = node
            .input
            .iter()
            .find_map(|n| float_initializer(graph, n).ok().flatten())
            .context("no constant side")?;
        let per_channel = matches!(k.dims.as_slice(), [c, 1, 1] | [1, c, 1, 1] if *c == cout);
        let v: Vec<f32> = match k.data.len() {
            1 if k.dims.len() <= 4 => vec![k.data[0]; cout],
            n if n == cout && per_channel => k.data,
            _ => anyhow::bail!("the constant {:?} is not per output channel", k.dims),
        };
        return Ok(if node.op_type == "Mul" {
            (v, vec![0.0; cout])
        } else {
            (vec![1.0; cout], v)
        });
    }
    let (scale, shift) = batchnorm_affine(graph, node)?;
    anyhow::ensure!(
        scale.len() == cout,
        "{} channels, the conv has {cout}",
        scale.len()
    );
    Ok((scale, shift))
}

/// The per-channel scale and shift of a BatchNormalization node.
fn batchnorm_affine(graph: &pb::GraphProto, bn: &pb::NodeProto) -> Result<(Vec<f32>, Vec<f32>)> {
    let get = |i: usize| -> Result<Vec<f32>> {
        Ok(float_initializer(graph, &bn.input[i])?
            .context("statistics are not initializers")?
            .data)
    };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let eps = bn
        .attribute
        .iter()
        .find(|a| a.name == "epsilon")
        .map_or(DEFAULT_EPSILON, |a| a.f);
    let n = gamma.len();
    anyhow::ensure!(
        beta.len() == n && mean.len() == n && var.len() == n,
        "scale, bias, mean and variance differ in length"
    );
    let scale: Vec<f32> = (0..n).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
    let shift = (0..n).map(|c| beta[c] - mean[c] * scale[c]).collect();
    Ok((scale, shift))
}

/// Fold node `bn` into node `conv`: new weight and bias initializers (fresh names: the old
/// ones may be shared), the convolution writes the BatchNormalization's output.
fn fold_pair(graph: &mut pb::GraphProto, names: &mut Names, conv: usize, bn: usize) -> Result<()> {
    let cout = out_channels(graph, &graph.node[conv]).context("the weights' shape")?;
    let (scale, shift) = affine(graph, &graph.node[bn], cout)?;
    let c = &graph.node[conv];
    let transpose = c.op_type == "ConvTranspose";
    let group = c
        .attribute
        .iter()
        .find(|a| a.name == "group")
        .map_or(1, |a| a.i.max(1) as usize);
    let mut w: FloatTensor =
        float_initializer(graph, &c.input[1])?.context("the weights are not an initializer")?;
    anyhow::ensure!(w.dims.len() >= 2, "weights of rank {}", w.dims.len());
    let per_out: usize = w.dims[2..].iter().product();
    if transpose {
        // [Cin, Cout/group, k...]: input channel i is in group i / (Cin/group)
        let (cin, cpg) = (w.dims[0], w.dims[1]);
        anyhow::ensure!(cpg * group == cout, "{cout} channels, weights {:?}", w.dims);
        let in_per_group = cin / group;
        for i in 0..cin {
            for j in 0..cpg {
                let s = scale[(i / in_per_group) * cpg + j];
                let at = (i * cpg + j) * per_out;
                w.data[at..at + per_out].iter_mut().for_each(|v| *v *= s);
            }
        }
    } else {
        anyhow::ensure!(w.dims[0] == cout, "{cout} channels, weights {:?}", w.dims);
        let per = w.data.len() / cout;
        for (o, chunk) in w.data.chunks_mut(per).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= scale[o]);
        }
    }
    let bias = match c.input.get(2).filter(|b| !b.is_empty()) {
        Some(b) => {
            float_initializer(graph, b)?
                .context("the bias is not an initializer")?
                .data
        }
        None => vec![0.0; cout],
    };
    let bias: Vec<f32> = (0..cout).map(|o| bias[o] * scale[o] + shift[o]).collect();
    let base = node_label(c).to_string();
    let (wn, bn_name) = (
        names.fresh(&format!("{base}.w_bn")),
        names.fresh(&format!("{base}.b_bn")),
    );
    graph.initializer.push(f32_tensor(&wn, &w.dims, &w.data));
    graph.initializer.push(f32_tensor(&bn_name, &[cout], &bias));
    let y = graph.node[bn].output[0].clone();
    let c = &mut graph.node[conv];
    c.input.truncate(2);
    c.input[1] = wn;
    c.input.push(bn_name);
    c.output[0] = y;
    Ok(())
}

/// Drop the initializers (and their graph-input entries) that no node reads and that are not
/// graph outputs.
fn drop_unread_initializers(graph: &mut pb::GraphProto) {
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !read.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::writer::{attr_float, attr_int, attr_ints, Dim, OnnxWriter};
    use crate::quantize::deconv::tests::run;
    use prost::Message;
    use rand::{Rng, SeedableRng};
    use tract_onnx::prelude::*;

    /// x → Conv (k `k`, stride `s`) → BN → Relu → ConvTranspose (k4 s2 p1, `group`) → BN → y,
    /// with or without conv biases, random weights and statistics.
    fn model(bias: bool, k: usize, s: usize, group: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut r = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(lo..hi)).collect()
        };
        let (cin, mid, cout) = (3, 4, 6);
        let mut w = OnnxWriter::new("bn");
        w.input_f32(
            "x",
            &[
                Dim::param("N"),
                Dim::Fixed(cin),
                Dim::Fixed(8),
                Dim::Fixed(8),
            ],
        );
        let mut bn = |w: &mut OnnxWriter, name: &str, x: &str, c: usize, y: &str| {
            let g = w.initializer_f32(&format!("{name}.g"), &[c], &r(c, 0.5, 1.5));
            let b = w.initializer_f32(&format!("{name}.b"), &[c], &r(c, -0.5, 0.5));
            let m = w.initializer_f32(&format!("{name}.m"), &[c], &r(c, -0.3, 0.3));
            let v = w.initializer_f32(&format!("{name}.v"), &[c], &r(c, 0.1, 2.0));
            w.node(
                "BatchNormalization",
                &[x, &g, &b, &m, &v],
                &[y],
                vec![attr_float("epsilon", 1e-3)],
            );
        };
        let mut rr = rand::rngs::StdRng::seed_from_u64(seed + 1);
        let mut rnd =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rr.random_range(-0.5..0.5)).collect() };
        let w1 = w.initializer_f32("w1", &[mid, cin, k, k], &rnd(mid * cin * k * k));
        let w2 = w.initializer_f32(
            "w2",
            &[mid, cout / group, 4, 4],
            &rnd(mid * cout / group * 16),
        );
        let mut c1 = vec!["x".to_string(), w1];
        let mut c2 = vec!["r".to_string(), w2];
        if bias {
            c1.push(w.initializer_f32("b1", &[mid], &rnd(mid)));
            c2.push(w.initializer_f32("b2", &[cout], &rnd(cout)));
        }
        let p = (k / 2) as i64;
        w.node(
            "Conv",
            &c1.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            &["c1"],
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[s as i64, s as i64]),
                attr_ints("pads", &[p, p, p, p]),
            ],
        );
        bn(&mut w, "bn1", "c1", mid, "n1");
        w.node("Relu", &["n1"], &["r"], vec![]);
        w.node(
            "ConvTranspose",
            &c2.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            &["c2"],
            vec![
                attr_ints("kernel_shape", &[4, 4]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_int("group", group as i64),
            ],
        );
        bn(&mut w, "bn2", "c2", cout, "y");
        w.output_f32_any_shape("y");
        w.to_bytes()
    }

    /// The largest difference between the outputs of `bytes` and of `folded` on `x`.
    fn max_diff(bytes: &[u8], folded: &pb::ModelProto, x: &Tensor) -> f32 {
        let (want, got) = (run(bytes, x), run(&folded.encode_to_vec(), x));
        assert_eq!(want.shape(), got.shape());
        let (a, b) = (
            want.to_plain_array_view::<f32>().unwrap(),
            got.to_plain_array_view::<f32>().unwrap(),
        );
        a.iter()
            .zip(b.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    }

    fn fold(bytes: &[u8]) -> (usize, pb::ModelProto) {
        let mut m = pb::ModelProto::decode(bytes).unwrap();
        let n = fold_batchnorm(&mut m).unwrap();
        (n, m)
    }

    #[test]
    fn folding_is_exact_on_conv_and_conv_transpose_with_and_without_bias() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        // the geometries of both network sizes: k4 s2 and k3 s2 encoders, k4 s2 decoders;
        // a grouped transposed conv too
        for (bias, k, s, group) in [
            (false, 4, 2, 1),
            (true, 4, 2, 1),
            (false, 3, 2, 1),
            (true, 3, 1, 2),
        ] {
            let bytes = model(bias, k, s, group, 7);
            let (n, folded) = fold(&bytes);
            assert_eq!(n, 2, "bias {bias} k {k}");
            let g = folded.graph.as_ref().unwrap();
            assert!(g.node.iter().all(|n| n.op_type != "BatchNormalization"));
            // the statistics and the old weights are gone
            assert!(g
                .initializer
                .iter()
                .all(|t| !t.name.starts_with("bn") && t.name != "w1"));
            for batch in [1, 3] {
                let data: Vec<f32> = (0..batch * 3 * 64)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let x = Tensor::from_shape(&[batch, 3, 8, 8], &data).unwrap();
                let err = max_diff(&bytes, &folded, &x);
                assert!(
                    err < 1e-5,
                    "bias {bias} k {k} group {group} batch {batch}: {err}"
                );
            }
        }
    }

    /// A constant: its shape and values.
    type Konst<'a> = (&'a [usize], Vec<f32>);

    /// x → Conv → Mul by `mul` → Add by `add` → y (per-channel or scalar constants).
    fn affine_model(mul: Konst, add: Konst) -> Vec<u8> {
        let mut w = OnnxWriter::new("affine");
        w.input_f32(
            "x",
            &[Dim::param("N"), Dim::Fixed(2), Dim::Fixed(6), Dim::Fixed(6)],
        );
        let wd: Vec<f32> = (0..3 * 2 * 9)
            .map(|i| ((i * 37 % 19) as f32 - 9.0) / 10.0)
            .collect();
        let wn = w.initializer_f32("w", &[3, 2, 3, 3], &wd);
        let bn = w.initializer_f32("b", &[3], &[0.1, -0.2, 0.3]);
        let k = |i: i64| attr_ints("kernel_shape", &[i, i]);
        w.node("Conv", &["x", &wn, &bn], &["c"], vec![k(3)]);
        let m = w.initializer_f32("m", mul.0, &mul.1);
        w.node("Mul", &["c", &m], &["cm"], vec![]);
        let a = w.initializer_f32("a", add.0, &add.1);
        w.node("Add", &[&a, "cm"], &["y"], vec![]);
        w.output_f32_any_shape("y");
        w.to_bytes()
    }

    #[test]
    fn mul_and_add_by_per_channel_constants_fold_exactly_and_others_stay() {
        let x = Tensor::from_shape(
            &[2, 2, 6, 6],
            &(0..144)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let cases: [(Konst, Konst, usize); 3] = [
            (
                (&[1, 3, 1, 1], vec![0.5, 2.0, -1.0]),
                (&[3, 1, 1], vec![1.0, 0.0, -3.0]),
                2,
            ),
            ((&[], vec![1.5]), (&[1], vec![0.25]), 2),
            // a per-pixel constant is no per-channel affine: the Mul stays, and so the Add
            // (its input no longer comes from a conv)
            (
                (&[1, 1, 4, 4], vec![2.0; 16]),
                (&[3, 1, 1], vec![1.0, 2.0, 3.0]),
                0,
            ),
        ];
        for (mul, add, want) in cases {
            let dims = (mul.0.to_vec(), add.0.to_vec());
            let bytes = affine_model(mul, add);
            let (n, folded) = fold(&bytes);
            assert_eq!(n, want, "{dims:?}");
            if n == 0 {
                continue;
            }
            let g = folded.graph.as_ref().unwrap();
            assert_eq!(g.node.len(), 1, "only the conv is left");
            let err = max_diff(&bytes, &folded, &x);
            assert!(err < 1e-5, "{dims:?}: {err}");
        }
    }

    #[test]
    fn a_batchnorm_whose_input_is_read_elsewhere_or_not_a_conv_stays() {
        let bytes = model(true, 4, 2, 1, 3);
        let mut m = pb::ModelProto::decode(&bytes[..]).unwrap();
        let g = m.graph.as_mut().unwrap();
        // c2 is also a graph output now: the BatchNormalization after it must stay
        g.output.push(pb::ValueInfoProto {
            name: "c2".into(),
            ..Default::default()
        });
        // and bn1 now reads the Relu's output instead of the conv's
        let bn1 = g.node.iter().position(|n| n.output[0] == "n1").unwrap();
        let relu = g.node.iter().position(|n| n.op_type == "Relu").unwrap();
        g.node[relu].input[0] = "c1".into();
        g.node[relu].output[0] = "c1r".into();
        g.node[bn1].input[0] = "c1r".into();
        g.node.swap(bn1, relu);
        for n in &mut g.node {
            if n.op_type == "ConvTranspose" {
                n.input[0] = "n1".into();
            }
        }
        assert_eq!(fold_batchnorm(&mut m).unwrap(), 0);
        let g = m.graph.as_ref().unwrap();
        assert_eq!(
            g.node
                .iter()
                .filter(|n| n.op_type == "BatchNormalization")
                .count(),
            2
        );
    }
}
