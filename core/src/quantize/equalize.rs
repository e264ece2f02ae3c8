//! Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019) before int8 with one
//! weight scale per tensor ([`super::fused`]).
//!
//! With one scale per weight tensor, the output channels whose weights are small get few int8
//! levels. For a conv `A` followed by a positively homogeneous activation (`Relu`,
//! `LeakyRelu`: `f(x/s) = f(x)/s` for `s > 0`) and a conv `B`, dividing `A`'s output channel
//! `i` (weights and bias) by `s_i` and multiplying `B`'s input channel `i` by `s_i` leaves the
//! network's function unchanged. With `s_i = sqrt(r1_i / r2_i)` (`r1_i`, `r2_i` the largest
//! weight magnitudes of `A`'s output channel and `B`'s input channel) both become
//! `sqrt(r1_i · r2_i)`: the channels' ranges are evened out in both layers.
//!
//! The chain from `A` to `B` may also hold `DepthToSpace` (the sub-pixel form of a transposed
//! conv, [`super::deconv`]): `B`'s input channel `c` then comes from `bs²` output channels of
//! `A`, which share one factor; and a `Slice` over the spatial axes (the crop).

use anyhow::{Context, Result};
use std::collections::HashMap;
use tract_onnx::pb;

use super::graph::{f32_tensor, float_initializer, graph_mut};

/// A conv's float initializers, by name.
fn weights(g: &pb::GraphProto, n: &pb::NodeProto) -> Result<Option<Vec<usize>>> {
    if n.op_type != "Conv" || n.get_attr_opt::<i64>("group")?.unwrap_or(1) != 1 || n.input.len() < 2
    {
        return Ok(None);
    }
    Ok(float_initializer(g, &n.input[1])?
        .filter(|w| w.dims.len() == 4)
        .map(|w| w.dims))
}

/// How `B`'s input channels map onto `A`'s output channels through the chain between them:
/// `None` when the chain holds anything else than the ops this pass knows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mapping {
    /// Channel `c` of B is channel `c` of A.
    Same,
    /// `DepthToSpace` DCR with block size `bs`: B's `c` is A's `(k·C + c)` for `k < bs²`.
    Dcr(usize),
    /// `DepthToSpace` CRD: B's `c` is A's `(c·bs² + k)`.
    Crd(usize),
}

/// Whether a `Slice` node leaves the channel axis alone (its axes are given and are not 1).
fn spatial_slice(g: &pb::GraphProto, n: &pb::NodeProto) -> bool {
    let Some(axes) = n.input.get(3).filter(|a| !a.is_empty()) else {
        return false;
    };
    g.initializer
        .iter()
        .find(|t| &t.name == axes)
        .map(|t| {
            let v: Vec<i64> = if t.raw_data.is_empty() {
                t.int64_data.clone()
            } else {
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            !v.iter().any(|&a| a == 1 || a == -3)
        })
        .unwrap_or(false)
}

/// Equalize every conv pair of `model` that the chain rules allow; returns how many pairs.
pub fn equalize(model: &mut pb::ModelProto) -> Result<usize> {
    let graph = graph_mut(model)?;
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for inp in &n.input {
            consumers.entry(inp.clone()).or_default().push(i);
        }
    }
    let mut pairs = Vec::new();
    for (a, n) in graph.node.iter().enumerate() {
        if weights(graph, n)?.is_none() {
            continue;
        }
        let mut t = n.output[0].clone();
        let mut mapping = Mapping::Same;
        while let Some([next]) = consumers.get(&t).map(Vec::as_slice) {
            let m = &graph.node[*next];
            if outputs.contains(&t) || m.input[0] != t {
                break;
            }
            match m.op_type.as_str() {
                "Relu" | "LeakyRelu" => {}
                "Slice" if spatial_slice(graph, m) => {}
                "DepthToSpace" if mapping == Mapping::Same => {
                    let bs = m.get_attr_opt::<i64>("blocksize")?.unwrap_or(1) as usize;
                    mapping = match m.get_attr_opt::<&str>("mode")? {
                        Some("CRD") => Mapping::Crd(bs),
                        _ => Mapping::Dcr(bs),
                    };
                }
                "Conv" => {
                    if weights(graph, m)?.is_some() {
                        pairs.push((a, *next, mapping));
                    }
                    break;
                }
                _ => break,
            }
            t = m.output[0].clone();
        }
    }
    for &(a, b, mapping) in &pairs {
        equalize_pair(graph, a, b, mapping)?;
    }
    Ok(pairs.len())
}

fn set_f32(g: &mut pb::GraphProto, name: &str, dims: &[usize], data: &[f32]) -> Result<()> {
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .with_context(|| format!("no initializer '{name}'"))?;
    *t = f32_tensor(name, dims, data);
    Ok(())
}

/// Rescale conv `a`'s output channels and conv `b`'s input channels (see the module docs).
fn equalize_pair(g: &mut pb::GraphProto, a: usize, b: usize, mapping: Mapping) -> Result<()> {
    let (na, nb) = (g.node[a].clone(), g.node[b].clone());
    let mut w1 = float_initializer(g, &na.input[1])?.context("weights")?;
    let mut w2 = float_initializer(g, &nb.input[1])?.context("weights")?;
    let (cout_a, per_a) = (w1.dims[0], w1.data.len() / w1.dims[0]);
    let (cout_b, cin_b) = (w2.dims[0], w2.dims[1]);
    let per_b = w2.dims[2] * w2.dims[3];
    let group = match mapping {
        Mapping::Same => 1,
        Mapping::Dcr(bs) | Mapping::Crd(bs) => bs * bs,
    };
    if cout_a != cin_b * group {
        return Ok(()); // not the channel layout this pass expects: leave the pair alone
    }
    // A's output channels that feed B's input channel c.
    let sources = |c: usize| -> Vec<usize> {
        (0..group)
            .map(|k| match mapping {
                Mapping::Same => c,
                Mapping::Dcr(_) => k * cin_b + c,
                Mapping::Crd(_) => c * group + k,
            })
            .collect()
    };
    let mut bias = match na.input.get(2).filter(|s| !s.is_empty()) {
        Some(name) => Some((
            name.clone(),
            float_initializer(g, name)?.context("bias")?.data,
        )),
        None => None,
    };
    for c in 0..cin_b {
        let src = sources(c);
        let r1 = src
            .iter()
            .flat_map(|&i| &w1.data[i * per_a..(i + 1) * per_a])
            .fold(0f32, |m, v| m.max(v.abs()));
        let r2 = (0..cout_b)
            .flat_map(|o| &w2.data[(o * cin_b + c) * per_b..][..per_b])
            .fold(0f32, |m, v| m.max(v.abs()));
        if r1 <= 0.0 || r2 <= 0.0 {
            continue;
        }
        let s = (r1 / r2).sqrt();
        for &i in &src {
            w1.data[i * per_a..(i + 1) * per_a]
                .iter_mut()
                .for_each(|v| *v /= s);
            if let Some((_, b)) = bias.as_mut() {
                b[i] /= s;
            }
        }
        for o in 0..cout_b {
            w2.data[(o * cin_b + c) * per_b..][..per_b]
                .iter_mut()
                .for_each(|v| *v *= s);
        }
    }
    set_f32(g, &na.input[1], &w1.dims, &w1.data)?;
    set_f32(g, &nb.input[1], &w2.dims, &w2.data)?;
    if let Some((name, b)) = bias {
        set_f32(g, &name, &[b.len()], &b)?;
    }
    Ok(())
}
