//! The fused scheme's fidelity floor: which integer convs compute in float (on their int8
//! weights) so that the int8 file's worst held-out PSNR reaches the floor.

use anyhow::{Context, Result};
use prost::Message;
use std::path::Path;
use tract_onnx::pb;

use super::calib::CalibSet;
use super::graph;
use super::search::selection;
use crate::backend::{cpu::CpuBackend, Backend};
use crate::model::Model;

/// What the fused scheme's fidelity floor works from (see [`raise_to_floor`]).
pub(super) struct FloorInputs<'a> {
    /// The model file (for messages).
    pub(super) path: &'a Path,
    pub(super) set: &'a CalibSet,
    pub(super) model: &'a Model,
    /// The float graph the int8 pass starts from.
    pub(super) float: &'a pb::ModelProto,
    /// The convs already in float (dense layers).
    pub(super) dense: &'a [String],
    pub(super) floor: f64,
}

/// The PSNR of `f` against `want` on the images `x`, in the int8 file `bytes`.
pub(super) type PsnrOn<'p> =
    dyn Fn(&[u8], &crate::tensor::ImageBatch, &crate::tensor::ImageBatch) -> Result<f64> + 'p;

impl FloorInputs<'_> {
    /// The convs to run in float for the file `bytes` (built by `build` from a list of float
    /// convs) to meet the floor: `dense`, and those [`raise_to_floor`] adds.
    pub(super) fn floats(
        &self,
        bytes: &[u8],
        build: &dyn Fn(&[String]) -> Result<Vec<u8>>,
        psnr_on: &PsnrOn<'_>,
    ) -> Result<Vec<String>> {
        let worst_on = |kinds: &[(crate::tensor::ImageBatch, crate::tensor::ImageBatch)],
                        bytes: &[u8]|
         -> Result<f64> {
            let mut w = f64::INFINITY;
            for (x, want) in kinds {
                w = w.min(psnr_on(bytes, x, want)?);
            }
            Ok(w)
        };
        let held = held_kinds(self.set, self.model)?;
        let judge = fit_kinds(self.set, self.model)?;
        let macs = conv_macs(self.path, self.float).unwrap_or_else(|e| {
            log::warn!("the convs' multiply-adds are unknown ({e:#}): the floor moves the largest gain first");
            Default::default()
        });
        raise_to_floor(
            self.float,
            self.dense,
            self.floor,
            worst_on(&held, bytes)?,
            |conv| macs.get(conv).copied().unwrap_or(0),
            |floats| worst_on(&judge, &build(floats)?),
            |floats| worst_on(&held, &build(floats)?),
        )
    }
}

/// Multiply-adds of each conv of `float` per image (by its output name, as the fidelity floor
/// names convs), from tract's cost of the nodes the conv becomes at batch 1: what moving that
/// conv from int8 to float costs, roughly.
fn conv_macs(
    path: &Path,
    float: &pb::ModelProto,
) -> Result<std::collections::HashMap<String, u64>> {
    let typed = Model::from_bytes(path, &float.encode_to_vec())
        .and_then(|m| m.typed(1))
        .context("typing the float graph at batch 1")?;
    let by_node = crate::model::node_fmas(&typed)?;
    let graph = float.graph.as_ref().context("model without a graph")?;
    Ok(graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" && !n.output.is_empty())
        .map(|n| {
            // tract names a node after its ONNX name, or its first output when it has none
            let name = graph::node_label(n);
            let prefix = format!("{name}.");
            let macs = by_node
                .iter()
                .filter(|(k, _)| k == name || k.starts_with(&prefix))
                .map(|(_, v)| v)
                .sum();
            (n.output[0].clone(), macs)
        })
        .collect())
}

/// The held-out images by kind (real when there are any, noise), each with fp32's `f`.
fn held_kinds(
    set: &CalibSet,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let mut kinds: Vec<crate::tensor::ImageBatch> = set.held_real.iter().cloned().collect();
    kinds.push(set.held_noise.clone());
    with_fp32(kinds, model)
}

/// Part of the fitting images by kind (real when there are any, noise; 48 of each), each
/// with fp32's `f`: what the fidelity floor's choices are judged on, so that the held-out
/// images only say whether the floor is met.
fn fit_kinds(
    set: &CalibSet,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let noise = (set.fit.len() - set.fit_real) / 2;
    let mut kinds = Vec::new();
    if set.fit_real > 0 {
        kinds.push(selection(&set.fit.slice(0, set.fit_real), 48)?);
    }
    if noise > 0 {
        kinds.push(selection(
            &set.fit.slice(set.fit_real, set.fit_real + noise),
            48,
        )?);
    }
    with_fp32(kinds, model)
}

/// Each of `kinds` with fp32's `f` of it.
fn with_fp32(
    kinds: Vec<crate::tensor::ImageBatch>,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let mut fp32 = CpuBackend::new(model, None)?;
    kinds
        .into_iter()
        .map(|x| {
            let y = Backend::run(&mut fp32, &x)?;
            Ok((x, y))
        })
        .collect()
}

/// The fused scheme's fidelity floor: while `held_worst` (the lowest held-out PSNR by kind)
/// is below `floor`, the integer conv of `float` whose float arithmetic raises `judge` (the
/// same on part of the fitting images) the most *per multiply-add* (`macs`, what the move
/// costs in time) joins `floats`, as long as the held-out worst rises. Only convs that raise
/// `judge` by [`MIN_FLOOR_GAIN_DB`] count; when none does or a cost is unknown (0), the
/// largest gain is taken. Returns `floats` (starting with `dense`).
///
/// Two limits keep an int8 file an int8 file: when the floor is out of reach even with every
/// conv in float (the int8 weights alone cost more), nothing moves; and at most half of the
/// integer convs (rounded up) move.
fn raise_to_floor(
    float: &pb::ModelProto,
    dense: &[String],
    floor: f64,
    mut held_worst: f64,
    macs: impl Fn(&str) -> u64,
    mut judge: impl FnMut(&[String]) -> Result<f64>,
    mut held: impl FnMut(&[String]) -> Result<f64>,
) -> Result<Vec<String>> {
    let mut floats = dense.to_vec();
    let graph = float.graph.as_ref().context("model without a graph")?;
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let mut candidates: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" && !inputs.contains(&n.input[0].as_str()))
        .map(|n| n.output[0].clone())
        .filter(|o| !dense.contains(o))
        .collect();
    if held_worst >= floor || candidates.is_empty() {
        return Ok(floats);
    }
    let mut all = floats.clone();
    all.extend(candidates.iter().cloned());
    let reach = held(&all)?;
    if reach < floor {
        log::warn!(
            "the {floor} dB fidelity floor is out of reach in int8 (every conv in float on its int8 weights: {reach:.2} dB, against {held_worst:.2}); every conv that can be int8 stays int8"
        );
        return Ok(floats);
    }
    let cap = candidates.len().div_ceil(2);
    let mut now = judge(&floats)?;
    while held_worst < floor && floats.len() - dense.len() < cap {
        let mut scores = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let mut trial = floats.clone();
            trial.push(c.clone());
            scores.push(judge(&trial)?);
        }
        let Some(i) = pick_for_floor(&candidates, &scores, now, &macs) else {
            break;
        };
        now = scores[i];
        let mut trial = floats.clone();
        trial.push(candidates[i].clone());
        let w = held(&trial)?;
        if w <= held_worst + MIN_FLOOR_GAIN_DB {
            break;
        }
        log::info!(
            "{} computes in float (int8 weights) to reach the {floor} dB floor: held-out worst {held_worst:.2} -> {w:.2} dB",
            candidates[i]
        );
        floats = trial;
        held_worst = w;
        candidates.remove(i);
    }
    Ok(floats)
}

/// Below this gain on the judging images a conv does not count as helping the floor (the
/// same margin the held-out worst must rise by).
pub const MIN_FLOOR_GAIN_DB: f64 = 0.05;

/// Which of `candidates` (judged `scores` with it in float; `now` without) the floor moves:
/// the largest gain per multiply-add among those that gain [`MIN_FLOOR_GAIN_DB`], else the
/// largest score.
fn pick_for_floor(
    candidates: &[String],
    scores: &[f64],
    now: f64,
    macs: &impl Fn(&str) -> u64,
) -> Option<usize> {
    // the first of the largest `value`s among `among`
    let first_max = |among: &mut dyn Iterator<Item = usize>, value: &dyn Fn(usize) -> f64| {
        among.fold(None, |best: Option<usize>, i| match best {
            Some(b) if value(b) >= value(i) => Some(b),
            _ => Some(i),
        })
    };
    let finite = &mut (0..scores.len()).filter(|&i| scores[i].is_finite());
    let best_score = first_max(finite, &|i| scores[i]);
    let costs: Vec<u64> = candidates.iter().map(|c| macs(c)).collect();
    if costs.contains(&0) {
        return best_score;
    }
    let gaining = &mut (0..scores.len())
        .filter(|&i| scores[i].is_finite() && scores[i] - now >= MIN_FLOOR_GAIN_DB);
    first_max(gaining, &|i| (scores[i] - now) / costs[i] as f64).or(best_score)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of convs one after the other from the input `x`, each named by its output.
    fn conv_chain(names: &[&str]) -> pb::ModelProto {
        let node = names
            .iter()
            .enumerate()
            .map(|(i, y)| pb::NodeProto {
                op_type: "Conv".into(),
                input: vec![
                    if i == 0 { "x" } else { names[i - 1] }.into(),
                    format!("{y}.w"),
                ],
                output: vec![y.to_string()],
                ..Default::default()
            })
            .collect();
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                input: vec![pb::ValueInfoProto {
                    name: "x".into(),
                    ..Default::default()
                }],
                node,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_fidelity_floor_moves_the_most_useful_convs_to_float_until_it_is_met() {
        let model = conv_chain(&["first", "a", "b", "dense", "c"]);
        let dense = vec!["dense".to_string()];
        // Each conv in float adds its gain; b the most, then c; a nothing.
        let gain = |floats: &[String]| {
            floats
                .iter()
                .map(|f| match f.as_str() {
                    "b" => 1.5,
                    "c" => 0.8,
                    _ => 0.0,
                })
                .sum::<f64>()
        };
        let run = |floor: f64, start: f64| {
            raise_to_floor(
                &model,
                &dense,
                floor,
                start,
                |_| 1,
                |f| Ok(gain(f)),
                |f| Ok(start + gain(f)),
            )
            .unwrap()
        };
        // Met already: nothing moves.
        assert_eq!(run(40.0, 40.5), dense);
        // One step short by 1 dB: the best conv (b) is enough.
        assert_eq!(run(40.0, 39.0), vec!["dense", "b"]);
        // 2 dB short: b, then c (2 of the 3 integer convs a, b, c: the cap); never the first
        // conv (it reads the input: float already).
        assert_eq!(run(40.0, 38.0), vec!["dense", "b", "c"]);
        // Out of reach even with every conv in float (38 + 2.3 < 41): nothing moves.
        assert_eq!(run(41.0, 38.0), dense);
        assert_eq!(run(45.0, 38.0), dense);
        // Off (floor 0): nothing.
        assert_eq!(run(0.0, 10.0), dense);
        // The cap: a gain only from a, b and c together is never reached, by half (2 of 3).
        let only_all = |floats: &[String]| {
            if floats.len() == 4 {
                5.0
            } else {
                0.1 * floats.len() as f64
            }
        };
        let capped = raise_to_floor(
            &model,
            &dense,
            40.0,
            38.0,
            |_| 1,
            |f| Ok(only_all(f)),
            |f| Ok(38.0 + only_all(f)),
        )
        .unwrap();
        assert_eq!(capped.len(), 1 + 2, "{capped:?}");
    }

    /// The floor weighs each conv's gain against its multiply-adds: a cheap conv that gains a
    /// little less goes to float before an expensive one (session 11's ign-mnist: `enc.1.conv`,
    /// 1.6 M, instead of the first transposed conv, 2.1 M: 0.91-0.93x of fp32 instead of
    /// 1.03-1.07x).
    #[test]
    fn the_fidelity_floor_prefers_the_most_gain_per_multiply_add() {
        let model = conv_chain(&["first", "cheap", "costly", "tiny"]);
        // costly gains 1.5 dB for 2.1 M multiply-adds, cheap 1.2 dB for 1.6 M, tiny 0.04 dB
        // for 10 k (the most per multiply-add, 4 dB per M, but under the minimum gain)
        let gain = |floats: &[String]| {
            floats
                .iter()
                .map(|f| match f.as_str() {
                    "costly" => 1.5,
                    "cheap" => 1.2,
                    "tiny" => 0.04,
                    _ => 0.0,
                })
                .sum::<f64>()
        };
        let macs = |c: &str| match c {
            "costly" => 2_100_000,
            "cheap" => 1_600_000,
            "tiny" => 10_000,
            _ => 0,
        };
        let run = |start: f64, macs: &dyn Fn(&str) -> u64| {
            raise_to_floor(
                &model,
                &[],
                40.0,
                start,
                macs,
                |f| Ok(gain(f)),
                |f| Ok(start + gain(f)),
            )
            .unwrap()
        };
        // 1 dB short: cheap is enough and costs less per dB
        assert_eq!(run(39.0, &macs), vec!["cheap"]);
        // 2 dB short: cheap, then costly (tiny never: it gains under the minimum)
        assert_eq!(run(38.0, &macs), vec!["cheap", "costly"]);
        // costs unknown: the largest gain first, as before
        assert_eq!(run(39.0, &|_| 0), vec!["costly"]);
        // the costs of a real graph: tract's multiply-adds, by output name
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ign-mnist.onnx");
        let proto = pb::ModelProto::decode(&*std::fs::read(&path).unwrap()).unwrap();
        let costs = conv_macs(&path, &proto).unwrap();
        // enc.1.conv: its weights' size times its 7x7 outputs
        let g = proto.graph.as_ref().unwrap();
        let conv = g.node.iter().find(|n| n.output[0] == "enc.1.conv").unwrap();
        let w = g
            .initializer
            .iter()
            .find(|t| t.name == conv.input[1])
            .unwrap();
        assert_eq!(w.dims.len(), 4, "{:?}", w.dims);
        let weights: i64 = w.dims.iter().product();
        assert_eq!(costs["enc.1.conv"], weights as u64 * 49, "{costs:?}");
        assert!(costs.values().all(|&m| m > 0), "{costs:?}");
    }
}
