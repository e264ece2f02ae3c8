//! The scatter step of a transposed convolution, by an op of our own (issue 18, fp32).
//!
//! tract runs `ConvTranspose` as a matrix product (`einsum`: every input pixel times every
//! kernel tap, `N × C·Kh·Kw × H·W`) followed by `DeconvSum`, which adds each product into the
//! output pixel it lands on, plus the bias. Its `DeconvSum` walks the taps with a strided
//! write per value, single-threaded: 17% of ign-mnist's fp32 time and 880 µs of the 64×64
//! model's 5.3 ms, more than any product but the largest.
//!
//! [`IgnDeconvSum`] computes the same sums row by row through the stride's phases: output
//! row `oy`, column phase `px` (the columns `sw·m + px`) receives, from each kernel tap that
//! lands on it, one contiguous run of a product row shifted by a constant, so every add is a
//! contiguous vector add; the phases are then interleaved into the output row. Taps are added
//! in tract's order (bias, then kernel row, then kernel column), so the sums are the same
//! bits. Output planes run in parallel on tract's executor when the plan has more than one
//! thread.
//!
//! `DeconvSum` is private to tract, so [`geometries`] reads each `Deconv` of the typed model
//! before optimization, and [`replace_deconv_sum`] finds its `<name>.deconv_sum` node in the
//! optimized plan. Anything but a 2-D, NCHW, group-1, undilated f32 deconvolution with
//! concrete shapes keeps tract's op, and so do layers with rows shorter than 8 and 8 or more
//! channels, where tract's loop (vectorized over the channels) is as fast.

use std::collections::HashMap;

use tract_linalg::multithread::{current_tract_executor, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Deconv;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The shape of one 2-D transposed convolution, as its scatter step needs it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DeconvGeometry {
    /// Input rows and columns.
    pub input_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// Output rows/columns cut at the start (the transposed convolution's padding).
    pub pad_before: [usize; 2],
    /// `[N, C, OH, OW]`.
    pub output: [usize; 4],
}

/// tract's `DeconvSum` for one [`DeconvGeometry`]: input 0 the product `N × C·Kh·Kw × H·W`,
/// input 1 (unless the bias is kept in the op) the bias: one value, one per channel, or one
/// per output value.
#[derive(Clone, Debug, PartialEq)]
pub struct IgnDeconvSum {
    pub geometry: DeconvGeometry,
    /// The bias per output channel, when it was a constant (the op then has one input).
    bias: Option<Vec<f32>>,
    /// Every output row's kernel rows: offsets of their product rows in a plane
    /// (`row_taps[rows[oy]..rows[oy + 1]]`).
    rows: Vec<usize>,
    row_taps: Vec<usize>,
    /// Every kernel column's run: `(kx, first input column, first position in the phase
    /// buffer, length)`.
    runs: Vec<[usize; 4]>,
    /// Length of one column phase (`ceil(OW / sw)`).
    phase_cap: usize,
}

impl Eq for IgnDeconvSum {}

/// The bias of one output row.
enum BiasRow<'a> {
    Value(f32),
    Row(&'a [f32]),
}

impl IgnDeconvSum {
    /// The op for `geometry`; `bias` per output channel when it is a constant.
    pub fn new(geometry: DeconvGeometry, bias: Option<Vec<f32>>) -> IgnDeconvSum {
        let DeconvGeometry {
            input_hw: [ih, iw],
            kernel: [kh, kw],
            strides: [sh, sw],
            pad_before: [ph, pw],
            output: [_, _, oh, ow],
        } = geometry;
        let phase_cap = ow.div_ceil(sw);
        let mut rows = vec![0];
        let mut row_taps = vec![];
        for oy in 0..oh {
            // Row oy = iy·sh + ky − ph.
            for ky in 0..kh {
                let t = (oy + ph) as isize - ky as isize;
                if t >= 0 && (t as usize).is_multiple_of(sh) && t as usize / sh < ih {
                    row_taps.push(ky * kw * ih * iw + t as usize / sh * iw);
                }
            }
            rows.push(row_taps.len());
        }
        let mut runs = vec![];
        for kx in 0..kw {
            // Column ox = ix·sw + kx − pw = sw·(ix + d) + px.
            let base = kx as isize - pw as isize;
            let (d, px) = (base.div_euclid(sw as isize), base.rem_euclid(sw as isize));
            let len = (ow - px as usize).div_ceil(sw) as isize;
            let m0 = d.max(0);
            let m1 = (iw as isize + d).clamp(0, len);
            if m0 < m1 {
                let first = px as usize * phase_cap + m0 as usize;
                runs.push([kx, (m0 - d) as usize, first, (m1 - m0) as usize]);
            }
        }
        IgnDeconvSum {
            geometry,
            bias,
            rows,
            row_taps,
            runs,
            phase_cap,
        }
    }

    fn taps(&self) -> usize {
        self.geometry.kernel[0] * self.geometry.kernel[1]
    }

    /// One output plane (`n`, `c`) from its product rows `g` (`Kh·Kw × H·W`).
    fn plane<'b>(
        &self,
        g: &[f32],
        bias: &dyn Fn(usize) -> BiasRow<'b>,
        phases: &mut [f32],
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.plane_avx2(g, bias, phases, out) };
        }
        self.plane_generic(g, bias, phases, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn plane_avx2<'b>(
        &self,
        g: &[f32],
        bias: &dyn Fn(usize) -> BiasRow<'b>,
        phases: &mut [f32],
        out: &mut [f32],
    ) {
        self.plane_generic(g, bias, phases, out)
    }

    #[inline(always)]
    fn plane_generic<'b>(
        &self,
        g: &[f32],
        bias: &dyn Fn(usize) -> BiasRow<'b>,
        phases: &mut [f32],
        out: &mut [f32],
    ) {
        let [_, _, _, ow] = self.geometry.output;
        let sw = self.geometry.strides[1];
        let plane_in = self.geometry.input_hw[0] * self.geometry.input_hw[1];
        let phase_cap = self.phase_cap;
        for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
            let direct = sw == 1;
            // The phases of one output row, each `phase_cap` long.
            let acc: &mut [f32] = if direct { row } else { &mut *phases };
            match bias(oy) {
                BiasRow::Value(b) => acc.fill(b),
                BiasRow::Row(b) if direct => acc.copy_from_slice(b),
                BiasRow::Row(b) => {
                    for px in 0..sw {
                        let dst = &mut acc[px * phase_cap..][..phase_cap];
                        for (d, s) in dst.iter_mut().zip(b[px..].iter().step_by(sw)) {
                            *d = *s;
                        }
                    }
                }
            }
            for &tap in &self.row_taps[self.rows[oy]..self.rows[oy + 1]] {
                for &[kx, from, to, len] in &self.runs {
                    let src = &g[tap + kx * plane_in + from..][..len];
                    for (o, s) in acc[to..to + len].iter_mut().zip(src) {
                        *o += *s;
                    }
                }
            }
            if !direct {
                if sw == 2 {
                    let (p0, p1) = phases.split_at(phase_cap);
                    for ((pair, a), b) in row.chunks_exact_mut(2).zip(p0).zip(p1) {
                        pair[0] = *a;
                        pair[1] = *b;
                    }
                    if ow % 2 == 1 {
                        row[ow - 1] = p0[ow / 2];
                    }
                } else {
                    for px in 0..sw {
                        let src = &phases[px * phase_cap..];
                        for (o, s) in row[px..].iter_mut().step_by(sw).zip(src) {
                            *o = *s;
                        }
                    }
                }
            }
        }
    }
}

impl Op for IgnDeconvSum {
    fn name(&self) -> StaticName {
        "IgnDeconvSum".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.geometry)])
    }

    op_as_typed_op!();
}

impl EvalOp for IgnDeconvSum {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let gemm = &inputs[0];
        let [n, c, oh, ow] = self.geometry.output;
        let [ih, iw] = self.geometry.input_hw;
        let per_plane = self.taps() * ih * iw;
        ensure!(
            gemm.datum_type() == f32::datum_type() && gemm.len() == n * c * per_plane,
            "IgnDeconvSum: product {:?} {:?} for {:?}",
            gemm.datum_type(),
            gemm.shape(),
            self.geometry
        );
        let g = gemm.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias_input;
        let b: &[f32] = match (&self.bias, inputs.get(1)) {
            (Some(b), _) => b,
            (None, Some(t)) => {
                bias_input = t.try_as_plain_ram()?;
                bias_input.as_slice::<f32>()?
            }
            (None, None) => bail!("IgnDeconvSum: no bias"),
        };
        let plane_len = oh * ow;
        if ![1, c, c * plane_len, n * c * plane_len].contains(&b.len()) {
            bail!(
                "IgnDeconvSum: {} bias values for {:?}",
                b.len(),
                self.geometry
            );
        }
        // SAFETY: every value is written by plane().
        let mut out = unsafe { Tensor::uninitialized::<f32>(&self.geometry.output)? };
        let run = |idx: usize, phases: &mut Vec<f32>, plane: &mut [f32]| {
            let ch = idx % c;
            let bias_row = |oy: usize| match b.len() {
                1 => BiasRow::Value(b[0]),
                l if l == c => BiasRow::Value(b[ch]),
                l => {
                    let at = if l == c * plane_len { ch } else { idx };
                    BiasRow::Row(&b[at * plane_len + oy * ow..][..ow])
                }
            };
            self.plane(&g[idx * per_plane..][..per_plane], &bias_row, phases, plane);
        };
        let phases = || vec![0f32; self.geometry.strides[1] * self.phase_cap];
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let o = view.as_slice_mut::<f32>()?;
            match current_tract_executor() {
                Executor::MultiThread(pool) if n * c * per_plane >= PARALLEL_ADDS && n * c > 1 => {
                    use rayon::prelude::*;
                    pool.install(|| {
                        o.par_chunks_exact_mut(plane_len)
                            .enumerate()
                            .for_each_init(phases, |ph, (i, p)| run(i, ph, p))
                    });
                }
                _ => {
                    let mut ph = phases();
                    for (i, p) in o.chunks_exact_mut(plane_len).enumerate() {
                        run(i, &mut ph, p);
                    }
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// Products below this many adds run on the calling thread (a thread hand-off costs more).
const PARALLEL_ADDS: usize = 1 << 16;

impl TypedOp for IgnDeconvSum {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(self.geometry.output)))
    }

    as_op!();
}

/// The geometry of every `Deconv` of a typed model that [`IgnDeconvSum`] handles, by node name.
pub fn geometries(model: &TypedModel) -> TractResult<HashMap<String, DeconvGeometry>> {
    let mut out = HashMap::new();
    for node in model.nodes() {
        let Some(op) = node.op_as::<Deconv>() else {
            continue;
        };
        if let Some(g) = geometry(model, node, op)? {
            out.insert(node.name.clone(), g);
        }
    }
    Ok(out)
}

/// The [`DeconvGeometry`] of one `Deconv` node, when [`IgnDeconvSum`] (or `IgnDirectDeconv`) handles it.
pub(crate) fn geometry(
    model: &TypedModel,
    node: &TypedNode,
    op: &Deconv,
) -> TractResult<Option<DeconvGeometry>> {
    let ps = &op.pool_spec;
    let x = model.outlet_fact(node.inputs[0])?;
    let y = &node.outputs[0].fact;
    let (Some(xs), Some(ys)) = (x.shape.as_concrete(), y.shape.as_concrete()) else {
        return Ok(None);
    };
    let (strides, dilations) = (ps.strides(), ps.dilations());
    if x.datum_type != f32::datum_type()
        || y.datum_type != f32::datum_type()
        || ps.data_format != DataFormat::NCHW
        || op.group != 1
        || xs.len() != 4
        || ys.len() != 4
        || ps.kernel_shape.len() != 2
        || dilations.iter().any(|&d| d != 1)
        || xs
            .iter()
            .chain(ys.iter())
            .chain(ps.kernel_shape.iter())
            .any(|&d| d == 0)
        || strides.contains(&0)
    {
        return Ok(None);
    }
    let padding = ps.padding.compute_for_deconv(
        &xs[2..],
        &ps.kernel_shape,
        &dilations,
        &strides,
        &op.adjustments,
    )?;
    if padding[0].deconvoluted != ys[2] || padding[1].deconvoluted != ys[3] {
        return Ok(None);
    }
    Ok(Some(DeconvGeometry {
        input_hw: [xs[2], xs[3]],
        kernel: [ps.kernel_shape[0], ps.kernel_shape[1]],
        strides: [strides[0], strides[1]],
        pad_before: [padding[0].pad_before, padding[1].pad_before],
        output: [ys[0], ys[1], ys[2], ys[3]],
    }))
}

/// Replace tract's `DeconvSum` of each deconvolution in `geometries` (from [`geometries`] on
/// the model before optimization) by [`IgnDeconvSum`] in the optimized `plan`, where its
/// inputs have the expected shapes. Returns how many were replaced.
pub fn replace_deconv_sum(
    plan: &mut TypedModel,
    geometries: &HashMap<String, DeconvGeometry>,
) -> TractResult<usize> {
    replace(plan, geometries, true)
}

/// [`replace_deconv_sum`]; `bias_in_op`: a constant per-channel bias goes into the op.
fn replace(
    plan: &mut TypedModel,
    geometries: &HashMap<String, DeconvGeometry>,
    bias_in_op: bool,
) -> TractResult<usize> {
    let mut done = 0;
    for id in plan.eval_order()? {
        let node = plan.node(id);
        if node.op().name() != "DeconvSum" || node.inputs.len() != 2 {
            continue;
        }
        let Some(g) = node
            .name
            .strip_suffix(".deconv_sum")
            .and_then(|base| geometries.get(base))
        else {
            continue;
        };
        let gemm = plan.outlet_fact(node.inputs[0])?;
        let bias = plan.outlet_fact(node.inputs[1])?;
        let [n, c, oh, ow] = g.output;
        // Rows shorter than a vector with many channels: tract's loop, vectorized over the
        // channels, is as fast or faster (ign-mnist's 1×1 → 4×4 and 4×4 → 7×7 layers).
        let worth_it = g.input_hw[1] >= 8 || c < 8;
        let fits = worth_it
            && gemm.datum_type == f32::datum_type()
            && gemm.exotic_fact().is_none()
            && gemm.shape.as_concrete().is_some_and(|s| {
                s.iter().product::<usize>()
                    == n * c * g.kernel[0] * g.kernel[1] * g.input_hw[0] * g.input_hw[1]
                    && s.last() == Some(&(g.input_hw[0] * g.input_hw[1]))
            })
            && node.outputs[0].fact.shape.as_concrete() == Some(&g.output[..])
            && bias.shape.as_concrete().is_some_and(|s| {
                let len: usize = s.iter().product();
                len == 1 || len == c * oh * ow || len == n * c * oh * ow || {
                    len == c && s.iter().filter(|&&d| d != 1).count() <= 1
                }
            });
        if !fits {
            continue;
        }
        // A constant bias that is one value per channel (tract broadcasts it to the output's
        // shape) goes into the op: one value per plane instead of one read per output value.
        let op_bias = bias
            .konst
            .as_ref()
            .filter(|_| bias_in_op)
            .and_then(|t| per_channel(t, c, oh * ow));
        let inputs = if op_bias.is_some() {
            &node.inputs[..1]
        } else {
            &node.inputs[..]
        };
        let op = IgnDeconvSum::new(g.clone(), op_bias);
        let patch = TypedModelPatch::replace_single_op(plan, node, inputs, op)?;
        patch.apply(plan)?;
        done += 1;
    }
    Ok(done)
}

/// The per-channel values of a bias tensor (one value, one per channel, or broadcast to
/// `[N,] C × plane_len`), when every plane holds one value.
fn per_channel(t: &Tensor, c: usize, plane_len: usize) -> Option<Vec<f32>> {
    let plain = t.try_as_plain_ram().ok()?;
    let v = plain.as_slice::<f32>().ok()?;
    if v.len() == 1 {
        return Some(vec![v[0]; c]);
    }
    if v.len() == c {
        return Some(v.to_vec());
    }
    if plane_len == 0
        || !v.len().is_multiple_of(plane_len)
        || !(v.len() / plane_len).is_multiple_of(c)
    {
        return None;
    }
    let first: Vec<f32> = v.chunks_exact(plane_len).take(c).map(|p| p[0]).collect();
    let same = v.chunks_exact(plane_len).enumerate().all(|(i, p)| {
        let want = first[i % c].to_bits();
        p.iter().all(|x| x.to_bits() == want)
    });
    same.then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::writer::{attr_ints, Dim, OnnxWriter};
    use rand::{Rng, SeedableRng};

    /// A one-node `ConvTranspose` model: `(cin, cout, kernel, stride, pads, output_padding, hw)`.
    type Case = (
        usize,
        usize,
        [usize; 2],
        usize,
        [i64; 4],
        [i64; 2],
        [usize; 2],
    );

    fn model(case: &Case, seed: u64, bias: bool) -> Vec<u8> {
        let &(cin, cout, k, s, pads, out_pad, hw) = case;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut w = OnnxWriter::new("deconv");
        w.input_f32(
            "x",
            &[
                Dim::param("N"),
                Dim::Fixed(cin),
                Dim::Fixed(hw[0]),
                Dim::Fixed(hw[1]),
            ],
        );
        let wd: Vec<f32> = (0..cin * cout * k[0] * k[1])
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let bd: Vec<f32> = (0..cout).map(|_| rng.random_range(-1.0..1.0)).collect();
        let wn = w.initializer_f32("w", &[cin, cout, k[0], k[1]], &wd);
        let bn = w.initializer_f32("b", &[cout], &bd);
        let inputs: Vec<&str> = if bias {
            vec!["x", &wn, &bn]
        } else {
            vec!["x", &wn]
        };
        w.node(
            "ConvTranspose",
            &inputs,
            &["y"],
            vec![
                attr_ints("kernel_shape", &[k[0] as i64, k[1] as i64]),
                attr_ints("strides", &[s as i64, s as i64]),
                attr_ints("pads", &pads),
                attr_ints("output_padding", &out_pad),
            ],
        );
        w.output_f32_any_shape("y");
        w.to_bytes()
    }

    /// tract's plan and ours (the number of our ops in it), for input shape `shape`.
    fn plans(
        bytes: &[u8],
        shape: &[usize],
        bias_in_op: bool,
    ) -> (Arc<TypedRunnableModel>, Arc<TypedRunnableModel>, usize) {
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_typed()
            .unwrap()
            .into_decluttered()
            .unwrap();
        let geoms = geometries(&typed).unwrap();
        let theirs = typed.clone().into_optimized().unwrap();
        let mut ours = typed.into_optimized().unwrap();
        let n = replace(&mut ours, &geoms, bias_in_op).unwrap();
        (
            theirs.into_runnable().unwrap(),
            ours.into_runnable().unwrap(),
            n,
        )
    }

    #[test]
    fn scatter_equals_tracts_deconv_sum_bit_for_bit() {
        let cases: [Case; 10] = [
            // The shipped decoders (k4s1p0 1→4, k3s2p1 4→7, k4s2p1 7→14, 14→28) and the
            // 64×64 model's k4s2p1 on a 16×16 input (tract's own fast path).
            (3, 5, [4, 4], 1, [0; 4], [0, 0], [1, 1]),
            (3, 4, [3, 3], 2, [1; 4], [0, 0], [4, 4]),
            (4, 3, [4, 4], 2, [1; 4], [0, 0], [7, 7]),
            (2, 1, [4, 4], 2, [1; 4], [0, 0], [14, 14]),
            (3, 2, [4, 4], 2, [1; 4], [0, 0], [16, 16]),
            // Large enough for the planes to run in parallel on two threads (batch 3).
            (4, 8, [4, 4], 2, [1; 4], [0, 0], [16, 16]),
            // Odd shapes: output padding, asymmetric pads, stride 3, rectangular kernels.
            (2, 2, [3, 3], 2, [1; 4], [1, 1], [5, 6]),
            (1, 2, [5, 3], 3, [2, 1, 1, 0], [0, 2], [4, 3]),
            (2, 3, [2, 2], 2, [0; 4], [0, 0], [3, 5]),
            (2, 2, [3, 3], 1, [1, 0, 2, 1], [0, 0], [6, 17]),
        ];
        let two = Executor::multithread(2);
        let mut replaced = 0;
        for (i, case) in cases.iter().enumerate() {
            for (bias, bias_in_op) in [(true, true), (true, false), (false, true)] {
                for batch in [1, 3] {
                    let bytes = model(case, i as u64, bias);
                    let shape = [batch, case.0, case.6[0], case.6[1]];
                    let (theirs, ours, n) = plans(&bytes, &shape, bias_in_op);
                    replaced += n;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(50 + i as u64);
                    let xs: Vec<f32> = (0..shape.iter().product())
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect();
                    let x = Tensor::from_shape(&shape, &xs).unwrap();
                    let want = theirs.run(tvec!(x.clone().into())).unwrap().remove(0);
                    for executor in [Executor::SingleThread, two.clone()] {
                        let got =
                            tract_linalg::multithread::multithread_tract_scope(executor, || {
                                ours.run(tvec!(x.clone().into())).unwrap().remove(0)
                            });
                        let ctx = format!("case {i} bias {bias} in op {bias_in_op} batch {batch}");
                        assert_eq!(want.shape(), got.shape(), "{ctx}");
                        let (a, b) = (
                            want.try_as_plain_ram().unwrap(),
                            got.try_as_plain_ram().unwrap(),
                        );
                        let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
                        let bad = a
                            .iter()
                            .zip(b)
                            .position(|(p, q)| p.to_bits() != q.to_bits());
                        assert!(bad.is_none(), "{ctx}: first difference at {bad:?}");
                    }
                }
            }
        }
        // Every deconvolution with overlapping taps goes through our op (tract runs kernels
        // the size of the stride with no padding without a DeconvSum of its own), but for
        // short rows with many channels.
        assert!(replaced >= 8 * 3 * 2, "only {replaced} replaced");
    }
}
