//! Rewrite every `ConvTranspose` as an exact `Conv` (+ `DepthToSpace` + `Slice`).
//!
//! tract has no integer transposed convolution, so before int8 quantization each
//! `ConvTranspose` becomes a plain convolution that integer kernels can run.
//!
//! For stride `s`, output phase `r` (`0 ≤ r < s`) of a transposed convolution reads
//! `y[s·m + r] = Σ_k x[m + d] · w[k]` over the taps `k ≡ r + pad_begin (mod s)`, with
//! `d = (r + pad_begin − k) / s`. Every phase is thus a stride-1 convolution of `x` with a
//! sub-kernel of `w`; stacking the `s²` phases as output channels (sub-pixel convolution) and
//! interleaving them with `DepthToSpace` (mode DCR) gives `y`. Each phase keeps only its own
//! taps (see `AxisPlan`), so the conv has as many weights and multiply-adds as the transposed
//! convolution itself; a trailing `Slice` aligns the phases (a crop at the start) and drops the
//! rows/columns past the output size (odd kernels, `output_padding`). Stride 1 needs neither:
//! it is a convolution with the flipped kernel.
//!
//! The padding and the crop depend only on the kernel, stride, pads and output padding, not
//! on the input size, so the rewritten graph keeps dynamic spatial sizes working.

use anyhow::{bail, Context, Result};
use tract_onnx::pb;

use super::graph::{f32_tensor, float_initializer, graph_mut, i64_tensor, node_label, Names};
use crate::model::writer::{attr_int as mk_int, attr_ints as mk_ints, attr_string};

/// How one spatial axis of a transposed convolution maps onto a stride-1 convolution.
///
/// Phase `r` reads the taps `k ≡ r + pad_begin (mod s)`, at input offsets
/// `d = (r + pad_begin − k) / s` from `d_first(r)` (its largest tap) on. Each phase gets its own
/// `taps`-long window starting at `d_first(r)`, so no phase carries the other phases' zero
/// taps (a 4×4, stride-2 kernel gives four 2×2 phases, not four 3×3 ones). The phases' windows
/// start at different offsets: phase `r` at output position `m` is the conv's position
/// `m + d_first(r) − d_min`. `DepthToSpace` puts phase `r` in slot `slot(r)`; with the slots
/// chosen so that `s·(m + d_first(r) − d_min) + slot(r) = s·m + r + crop_begin` for every
/// phase, a single crop of `crop_begin` rows/columns at the start (and `crop_end` at the end)
/// after `DepthToSpace` gives the transposed convolution's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AxisPlan {
    stride: usize,
    kernel: usize,
    pad_begin: i64,
    /// The smallest `d_first(r)`: the conv pads `−d_min` at the start.
    d_min: i64,
    /// Taps of every phase's window (`ceil(kernel / stride)`).
    taps: usize,
    /// Conv padding at the end.
    pad_end: i64,
    /// Rows/columns to drop at the start after `DepthToSpace`.
    crop_begin: usize,
    /// Rows/columns to drop at the end after `DepthToSpace`.
    crop_end: usize,
}

impl AxisPlan {
    fn new(
        kernel: usize,
        stride: usize,
        pad_begin: i64,
        pad_end: i64,
        out_pad: i64,
    ) -> Result<AxisPlan> {
        let (s, k) = (stride as i64, kernel as i64);
        if kernel == 0 || stride == 0 {
            bail!("kernel {kernel} with stride {stride}");
        }
        if pad_begin >= k || pad_begin < 0 {
            bail!("padding {pad_begin}/{pad_end} larger than the kernel {kernel} is not supported");
        }
        // d_first(0) is the smallest: d_first grows with r.
        let d_min =
            (pad_begin - k + 1).div_euclid(s) + i64::from((pad_begin - k + 1).rem_euclid(s) != 0);
        let taps = kernel.div_ceil(stride);
        let crop_begin = s - s * d_min + pad_begin - k;
        // Output length L = (n−1)·s + c0; the crop of crop_begin + L needs n + extra conv positions.
        let c = k - s - pad_begin - pad_end + out_pad + crop_begin;
        let extra = c.div_euclid(s) + i64::from(c.rem_euclid(s) != 0);
        let pad_end_conv = extra + d_min + taps as i64 - 1;
        let crop_end = s * extra - c;
        if pad_end_conv < 0 {
            bail!("padding {pad_begin}/{pad_end} larger than the kernel {kernel} is not supported");
        }
        debug_assert!((0..s).contains(&crop_begin) && (0..s).contains(&crop_end));
        Ok(AxisPlan {
            stride,
            kernel,
            pad_begin,
            d_min,
            taps,
            pad_end: pad_end_conv,
            crop_begin: crop_begin as usize,
            crop_end: crop_end as usize,
        })
    }

    /// The input offset of phase `r`'s first tap (its largest kernel tap).
    fn d_first(&self, r: usize) -> i64 {
        let q = r as i64 + self.pad_begin - (self.kernel as i64 - 1);
        let s = self.stride as i64;
        q.div_euclid(s) + i64::from(q.rem_euclid(s) != 0)
    }

    /// Where `DepthToSpace` puts phase `r`.
    fn slot(&self, r: usize) -> usize {
        let s = self.stride as i64;
        (r as i64 + self.crop_begin as i64 - s * (self.d_first(r) - self.d_min)) as usize
    }

    /// The kernel tap of `w` that phase `r`, window tap `t` reads, if any.
    fn tap(&self, r: usize, t: usize) -> Option<usize> {
        let d = self.d_first(r) + t as i64;
        let k = r as i64 + self.pad_begin - self.stride as i64 * d;
        (0..self.kernel as i64).contains(&k).then_some(k as usize)
    }
}

/// Rewrite every `ConvTranspose` of `model` in place; returns how many were rewritten.
///
/// Supported: 2-D, `group` 1, dilation 1, explicit pads (`auto_pad` NOTSET), equal strides on
/// both axes when the stride is above 1, constant weights (and bias). Anything else is an error
/// naming the node.
pub fn rewrite_conv_transpose(model: &mut pb::ModelProto) -> Result<usize> {
    let graph = graph_mut(model)?;
    let mut names = Names::of(graph);
    let nodes = std::mem::take(&mut graph.node);
    let mut out_nodes = Vec::with_capacity(nodes.len());
    let mut count = 0;
    for node in nodes {
        if node.op_type != "ConvTranspose" {
            out_nodes.push(node);
            continue;
        }
        let label = node_label(&node).to_string();
        let new = rewrite_one(graph, &mut names, &node)
            .with_context(|| format!("ConvTranspose node '{label}'"))?;
        out_nodes.extend(new);
        count += 1;
    }
    graph.node = out_nodes;
    Ok(count)
}

fn rewrite_one(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    node: &pb::NodeProto,
) -> Result<Vec<pb::NodeProto>> {
    check_supported(node)?;
    let w = float_initializer(graph, &node.input[1])?
        .with_context(|| format!("weights '{}' are not a constant", node.input[1]))?;
    if w.dims.len() != 4 {
        bail!(
            "only 2-D transposed convolutions are supported (weights {:?})",
            w.dims
        );
    }
    let (cin, cout, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
        Some(b) => Some(
            float_initializer(graph, b)?
                .with_context(|| format!("bias '{b}' is not a constant"))?
                .data,
        ),
        None => None,
    };
    let (ph, pw) = axis_plans(node, kh, kw)?;
    let s = ph.stride;
    let phases = s * s;
    let (th, tw) = (ph.taps, pw.taps);
    let k = subpixel_kernel(&w.data, (cin, cout, kh, kw), &ph, &pw);
    let base = node_label(node);
    let k_name = names.fresh(&format!("{}.subpixel", node.input[1]));
    graph
        .initializer
        .push(f32_tensor(&k_name, &[phases * cout, cin, th, tw], &k));
    let mut conv_inputs = vec![node.input[0].clone(), k_name];
    if let Some(b) = bias {
        let b_name = names.fresh(&format!("{}.subpixel", node.input[2]));
        let tiled: Vec<f32> = (0..phases).flat_map(|_| b.iter().copied()).collect();
        graph
            .initializer
            .push(f32_tensor(&b_name, &[phases * cout], &tiled));
        conv_inputs.push(b_name);
    }
    subpixel_nodes(graph, names, node, base, conv_inputs, (&ph, &pw))
}

/// The attributes this rewrite handles: explicit pads, no output_shape, no groups, no
/// dilation.
fn check_supported(node: &pb::NodeProto) -> Result<()> {
    if let Some(ap) = node.get_attr_opt::<&str>("auto_pad")? {
        if !ap.is_empty() && ap != "NOTSET" {
            bail!("auto_pad {ap} is not supported; export with explicit pads");
        }
    }
    if node.get_attr_opt_vec::<i64>("output_shape")?.is_some() {
        bail!("the output_shape attribute is not supported; export with pads");
    }
    if node.get_attr_opt::<i64>("group")?.unwrap_or(1) != 1 {
        bail!("grouped transposed convolutions are not supported");
    }
    if node
        .get_attr_opt_vec::<i64>("dilations")?
        .is_some_and(|d| d.iter().any(|&v| v != 1))
    {
        bail!("dilated transposed convolutions are not supported");
    }
    Ok(())
}

/// The per-axis plans (taps, padding, crop) from the node's strides, pads and output padding.
fn axis_plans(node: &pb::NodeProto, kh: usize, kw: usize) -> Result<(AxisPlan, AxisPlan)> {
    let strides = node
        .get_attr_opt_vec::<i64>("strides")?
        .unwrap_or_else(|| vec![1, 1]);
    let pads = node
        .get_attr_opt_vec::<i64>("pads")?
        .unwrap_or_else(|| vec![0; 4]);
    let out_pad = node
        .get_attr_opt_vec::<i64>("output_padding")?
        .unwrap_or_else(|| vec![0, 0]);
    if strides.len() != 2 || pads.len() != 4 || out_pad.len() != 2 {
        bail!("expected 2-D strides, pads and output_padding");
    }
    let (sh, sw) = (strides[0] as usize, strides[1] as usize);
    if sh != sw && sh.max(sw) > 1 {
        bail!("unequal strides {sh}x{sw} are not supported");
    }
    let ph = AxisPlan::new(kh, sh, pads[0], pads[2], out_pad[0])?;
    let pw = AxisPlan::new(kw, sw, pads[1], pads[3], out_pad[1])?;
    Ok((ph, pw))
}

/// The sub-pixel kernel of weights `w` (`[cin, cout, kh, kw]`): output channel
/// `(slot(ry)·s + slot(rx))·cout + c` (DepthToSpace DCR order), `th×tw` taps.
fn subpixel_kernel(
    w: &[f32],
    (cin, cout, kh, kw): (usize, usize, usize, usize),
    ph: &AxisPlan,
    pw: &AxisPlan,
) -> Vec<f32> {
    let s = ph.stride;
    let phases = s * s;
    let (th, tw) = (ph.taps, pw.taps);
    let mut k = vec![0f32; phases * cout * cin * th * tw];
    for ry in 0..s {
        for rx in 0..s {
            for ty in 0..th {
                let Some(ky) = ph.tap(ry, ty) else { continue };
                for tx in 0..tw {
                    let Some(kx) = pw.tap(rx, tx) else { continue };
                    for c in 0..cout {
                        let o = (ph.slot(ry) * s + pw.slot(rx)) * cout + c;
                        for ci in 0..cin {
                            k[((o * cin + ci) * th + ty) * tw + tx] =
                                w[((ci * cout + c) * kh + ky) * kw + kx];
                        }
                    }
                }
            }
        }
    }
    k
}

/// The stride-1 Conv, then DepthToSpace (stride > 1) and a crop (when the pads ask for one).
fn subpixel_nodes(
    graph: &mut pb::GraphProto,
    names: &mut Names,
    node: &pb::NodeProto,
    base: &str,
    conv_inputs: Vec<String>,
    (ph, pw): (&AxisPlan, &AxisPlan),
) -> Result<Vec<pb::NodeProto>> {
    let s = ph.stride;
    let (th, tw) = (ph.taps, pw.taps);
    let final_out = node.output[0].clone();
    let needs_d2s = s > 1;
    let needs_crop = ph.crop_begin + ph.crop_end + pw.crop_begin + pw.crop_end > 0;
    let conv_out = if needs_d2s || needs_crop {
        names.fresh(&format!("{base}.subpixel"))
    } else {
        final_out.clone()
    };
    let mut out = vec![pb::NodeProto {
        name: names.fresh(&format!("{base}.subpixel_conv")),
        op_type: "Conv".into(),
        input: conv_inputs,
        output: vec![conv_out.clone()],
        attribute: vec![
            mk_ints("kernel_shape", &[th as i64, tw as i64]),
            mk_ints("strides", &[1, 1]),
            mk_ints("pads", &[-ph.d_min, -pw.d_min, ph.pad_end, pw.pad_end]),
            mk_ints("dilations", &[1, 1]),
        ],
        ..Default::default()
    }];
    let mut last = conv_out;
    if needs_d2s {
        let d2s_out = if needs_crop {
            names.fresh(&format!("{base}.d2s"))
        } else {
            final_out.clone()
        };
        out.push(pb::NodeProto {
            name: names.fresh(&format!("{base}.depth_to_space")),
            op_type: "DepthToSpace".into(),
            input: vec![last],
            output: vec![d2s_out.clone()],
            attribute: vec![mk_int("blocksize", s as i64), attr_string("mode", "DCR")],
            ..Default::default()
        });
        last = d2s_out;
    }
    if needs_crop {
        let starts = names.fresh(&format!("{base}.crop.starts"));
        let ends = names.fresh(&format!("{base}.crop.ends"));
        let axes = names.fresh(&format!("{base}.crop.axes"));
        // A negative end counts from the end: the crop does not depend on the input size.
        let end = |crop: usize| if crop == 0 { i64::MAX } else { -(crop as i64) };
        graph.initializer.push(i64_tensor(
            &starts,
            &[2],
            &[ph.crop_begin as i64, pw.crop_begin as i64],
        ));
        graph.initializer.push(i64_tensor(
            &ends,
            &[2],
            &[end(ph.crop_end), end(pw.crop_end)],
        ));
        graph.initializer.push(i64_tensor(&axes, &[2], &[2, 3]));
        out.push(pb::NodeProto {
            name: names.fresh(&format!("{base}.crop")),
            op_type: "Slice".into(),
            input: vec![last, starts, ends, axes],
            output: vec![final_out],
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::writer::{Dim, OnnxWriter};
    use prost::Message;
    use rand::{Rng, SeedableRng};
    use tract_onnx::prelude::*;

    struct Case {
        cin: usize,
        cout: usize,
        k: [usize; 2],
        s: usize,
        pads: [i64; 4],
        out_pad: [i64; 2],
        hw: [usize; 2],
    }

    fn model(case: &Case, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut w = OnnxWriter::new("deconv");
        w.input_f32(
            "x",
            &[
                Dim::param("N"),
                Dim::Fixed(case.cin),
                Dim::Fixed(case.hw[0]),
                Dim::Fixed(case.hw[1]),
            ],
        );
        let n = case.cin * case.cout * case.k[0] * case.k[1];
        let wd: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bd: Vec<f32> = (0..case.cout)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let wn = w.initializer_f32("w", &[case.cin, case.cout, case.k[0], case.k[1]], &wd);
        let bn = w.initializer_f32("b", &[case.cout], &bd);
        w.node(
            "ConvTranspose",
            &["x", &wn, &bn],
            &["y"],
            vec![
                mk_ints("kernel_shape", &[case.k[0] as i64, case.k[1] as i64]),
                mk_ints("strides", &[case.s as i64, case.s as i64]),
                mk_ints("pads", &case.pads),
                mk_ints("output_padding", &case.out_pad),
            ],
        );
        w.output_f32_any_shape("y");
        w.to_bytes()
    }

    /// `x` through the ONNX model `bytes`, optimized by tract (also the BatchNorm fold's tests).
    pub(in crate::quantize) fn run(bytes: &[u8], x: &Tensor) -> Tensor {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .unwrap()
            .with_input_fact(0, f32::fact(x.shape()).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        plan.run(tvec!(x.clone().into()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    /// The shapes the rewrite is checked on: (cin, cout, kernel, stride, pads, output padding,
    /// input size).
    fn cases() -> Vec<Case> {
        let case = |cin, cout, k, s, pads, out_pad, hw| Case {
            cin,
            cout,
            k,
            s,
            pads,
            out_pad,
            hw,
        };
        vec![
            // The shipped decoders: k4s1p0 (1→4), k3s2p1 (4→7), k4s2p1 (7→14, 14→28).
            case(3, 2, [4, 4], 1, [0; 4], [0, 0], [1, 1]),
            case(3, 4, [3, 3], 2, [1; 4], [0, 0], [4, 4]),
            case(2, 3, [4, 4], 2, [1; 4], [0, 0], [7, 7]),
            // Odd shapes: output padding, asymmetric pads, stride 3, rectangular kernels/inputs.
            case(2, 2, [3, 3], 2, [1; 4], [1, 1], [5, 6]),
            case(1, 2, [5, 3], 3, [2, 1, 1, 0], [0, 2], [4, 3]),
            case(2, 1, [2, 2], 2, [0; 4], [0, 0], [3, 5]),
            case(2, 2, [3, 3], 1, [1, 0, 2, 1], [0, 0], [6, 4]),
            // Phases that start at different offsets, kernels shorter than the stride (empty
            // phases), pads up to the kernel.
            case(2, 3, [4, 4], 2, [2, 0, 1, 3], [1, 0], [5, 4]),
            case(3, 2, [1, 2], 3, [0; 4], [2, 1], [3, 4]),
            case(2, 2, [6, 5], 3, [5, 4, 0, 1], [0, 2], [4, 5]),
        ]
    }

    #[test]
    fn subpixel_rewrite_equals_conv_transpose() {
        let cases = cases();
        for (i, case) in cases.iter().enumerate() {
            let bytes = model(case, i as u64);
            let mut proto = pb::ModelProto::decode(&bytes[..]).unwrap();
            assert_eq!(rewrite_conv_transpose(&mut proto).unwrap(), 1);
            let ops: Vec<&str> = proto
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            assert!(!ops.contains(&"ConvTranspose"), "case {i}: {ops:?}");
            // Each phase keeps only its own taps: no more weights than the kernel's, up to the
            // rounding of kernel / stride.
            let graph = proto.graph.as_ref().unwrap();
            let conv = graph.node.iter().find(|n| n.op_type == "Conv").unwrap();
            let k = graph
                .initializer
                .iter()
                .find(|t| t.name == conv.input[1])
                .unwrap();
            let taps = |k: usize| k.div_ceil(case.s) * case.s;
            assert_eq!(
                k.dims.iter().product::<i64>() as usize,
                case.cin * case.cout * taps(case.k[0]) * taps(case.k[1]),
                "case {i}: sub-pixel kernel {:?}",
                k.dims
            );
            let rewritten = proto.encode_to_vec();
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + i as u64);
            let shape = [2, case.cin, case.hw[0], case.hw[1]];
            let xs: Vec<f32> = (0..shape.iter().product())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let x = Tensor::from_shape(&shape, &xs).unwrap();
            let want = run(&bytes, &x);
            let got = run(&rewritten, &x);
            assert_eq!(want.shape(), got.shape(), "case {i}");
            let (a, b) = (
                want.to_plain_array_view::<f32>().unwrap(),
                got.to_plain_array_view::<f32>().unwrap(),
            );
            let err = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "case {i}: max error {err}");
        }
    }

    #[test]
    fn unsupported_forms_name_the_problem() {
        let case = Case {
            cin: 1,
            cout: 1,
            k: [3, 3],
            s: 2,
            pads: [1; 4],
            out_pad: [0, 0],
            hw: [4, 4],
        };
        let mut proto = pb::ModelProto::decode(&model(&case, 0)[..]).unwrap();
        let node = &mut proto.graph.as_mut().unwrap().node[0];
        node.attribute.push(mk_int("group", 2));
        let err = rewrite_conv_transpose(&mut proto).unwrap_err();
        assert!(format!("{err:#}").contains("grouped"), "{err:#}");
    }
}
