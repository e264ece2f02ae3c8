//! fp32 transposed convolutions with few output channels, computed directly (issue 31; the
//! mirror of [`super::direct_conv`] for a model's last layer).
//!
//! A model's last layer writes the image, 1 or 3 channels. tract runs it as a product of every
//! kernel tap with every input pixel, only `channels in` deep (16 or 32), then scatters the
//! products into the output (`IgnDeconvSum`): the scene model's last layer (16 → 3 channels,
//! 32×32 → 64×64) took 78 µs against onnxruntime's 47.
//!
//! [`IgnDirectDeconv`] computes each output row phase by phase: the output columns
//! `X ≡ b (mod s)` of row `Y` receive, from each kernel tap of that phase, one contiguous run of
//! an input row (zero-padded around, so that no run needs a border test), so it adds
//! `weight × run` into the (up to) four output channels 16 positions at a time, then
//! interleaves the phases into the row. It sums in another order than tract, so its results
//! differ from tract's by rounding (tested within 1e-5 of the definition and within 1e-4 of
//! tract on the shipped models). It replaces the `Deconv` node before optimization.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Deconv;

use super::deconv_sum::DeconvGeometry;
use super::tap_sums::{four, fused_multiply_add, hash_bits, same_bits, step_starts, sum_taps};

/// Transposed convs with 2 to 4 output channels are computed directly. With one, three of the
/// four channel lanes would be wasted: ign-mnist's last layer took 36 µs against tract's 15.
pub const OUTPUT_CHANNELS: std::ops::RangeInclusive<usize> = 2..=4;

/// Row phases shorter than this (output width / stride) keep tract's ops.
const L: usize = 8;

/// A transposed convolution `[N, I, H, W] → [N, O, OH, OW]` with its weights (`O × I × KH × KW`,
/// output channel first) and bias.
#[derive(Clone, Debug)]
pub struct IgnDirectDeconv {
    pub geometry: DeconvGeometry,
    in_channels: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Equal when bit for bit the same (as [`Hash`] sees them).
impl PartialEq for IgnDirectDeconv {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry
            && self.in_channels == other.in_channels
            && same_bits(&self.weights, &other.weights)
            && same_bits(&self.bias, &other.bias)
    }
}

impl Eq for IgnDirectDeconv {}

impl std::hash::Hash for IgnDirectDeconv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.geometry.hash(state);
        self.in_channels.hash(state);
        hash_bits(&self.weights, state);
        hash_bits(&self.bias, state);
    }
}

/// One (row phase, column phase) of the output at one row: its first column, how many columns
/// it has, and per kernel tap where its run starts in the padded input and its weight for each
/// of the four output channels.
struct RowPhase {
    x0: usize,
    n: usize,
    at: Vec<usize>,
    w: Vec<[f32; 4]>,
}

/// Whether [`IgnDirectDeconv`] computes this geometry: strides no larger than the kernel and
/// padding inside it (which keep the input's margins small).
fn supported(g: &DeconvGeometry) -> bool {
    (0..2).all(|a| g.strides[a] > 0 && g.strides[a] <= g.kernel[a] && g.pad_before[a] < g.kernel[a])
}

impl IgnDirectDeconv {
    /// The op; `weights` `O × I × KH × KW`, `bias` one value per output channel.
    pub fn new(
        geometry: DeconvGeometry,
        in_channels: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    ) -> TractResult<Self> {
        let g = &geometry;
        let o = g.output[1];
        ensure!(
            o <= *OUTPUT_CHANNELS.end()
                && supported(g)
                && weights.len() == o * in_channels * g.kernel[0] * g.kernel[1]
                && bias.len() == o,
            "IgnDirectDeconv: {} weights, {} biases, {in_channels} channels in for {g:?}",
            weights.len(),
            bias.len()
        );
        Ok(IgnDirectDeconv {
            geometry,
            in_channels,
            weights,
            bias,
        })
    }

    /// Rows and columns of zeros around the input: enough for every tap of every output position.
    fn margins(&self) -> [usize; 2] {
        let g = &self.geometry;
        [
            (g.kernel[0] + g.pad_before[0]) / g.strides[0] + 2,
            (g.kernel[1] + g.pad_before[1]) / g.strides[1] + 2,
        ]
    }

    /// Rows and columns of the padded input.
    fn padded_hw(&self) -> [usize; 2] {
        let [my, mx] = self.margins();
        let [ih, iw] = self.geometry.input_hw;
        let [_, _, oh, ow] = self.geometry.output;
        let [sh, sw] = self.geometry.strides;
        // the last output position reads at most input row (oh - 1 + pad) / s: room beyond it
        [
            my + ih.max((oh + self.geometry.pad_before[0]) / sh + 1) + my,
            mx + iw.max((ow + self.geometry.pad_before[1]) / sw + 1) + mx,
        ]
    }

    /// Output row `y`'s column phase `b` (`None` when the row has no such column).
    fn row_phase(&self, y: usize, b: usize) -> Option<RowPhase> {
        let g = &self.geometry;
        let ([kh, kw], [sh, sw], [pt, pl]) = (g.kernel, g.strides, g.pad_before);
        let ow = g.output[3];
        let ([my, mx], [hp, wp]) = (self.margins(), self.padded_hw());
        let x0 = (b + sw - pl % sw) % sw;
        if x0 >= ow {
            return None;
        }
        let (i, o) = (self.in_channels, g.output[1]);
        let (mut at, mut w) = (vec![], vec![]);
        for ky in ((y + pt) % sh..kh).step_by(sh) {
            // input row (y + pt - ky) / sh, shifted by the margin
            let iy = (y + pt + my * sh - ky) / sh;
            for kx in ((x0 + pl) % sw..kw).step_by(sw) {
                let ix = (x0 + pl + mx * sw - kx) / sw;
                for ch in 0..i {
                    at.push((ch * hp + iy) * wp + ix);
                    w.push(four(o, |j| {
                        self.weights[((j * i + ch) * kh + ky) * kw + kx]
                    }));
                }
            }
        }
        Some(RowPhase {
            x0,
            n: (ow - x0).div_ceil(sw),
            at,
            w,
        })
    }

    /// One image: `xp` its padded input, `out` its `O × OH × OW` output.
    fn image(&self, xp: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.image_avx2(xp, out) };
        }
        self.image_generic(xp, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn image_avx2(&self, xp: &[f32], out: &mut [f32]) {
        self.image_generic(xp, out)
    }

    #[inline(always)]
    fn image_generic(&self, xp: &[f32], out: &mut [f32]) {
        let g = &self.geometry;
        let ([_, o, oh, ow], sw) = (g.output, g.strides[1]);
        let bias = four(o, |j| self.bias[j]);
        // one row phase's sums, channel after channel (4 × its positions)
        let mut buf = vec![0f32; 4 * ow.div_ceil(sw)];
        // the taps of each (row phase, column phase), read at the first row of that row phase;
        // a row `sh` further on reads one padded input row further on (`wp` values)
        let (sh, pt, wp) = (g.strides[0], g.pad_before[0], self.padded_hw()[1]);
        let first_row = |a: usize| (a + sh - pt % sh) % sh;
        let plans: Vec<Option<RowPhase>> = (0..sh)
            .flat_map(|a| (0..sw).map(move |b| (a, b)))
            .map(|(a, b)| {
                let y = first_row(a);
                (y < oh).then(|| self.row_phase(y, b)).flatten()
            })
            .collect();
        for y in 0..oh {
            let a = (y + pt) % sh;
            let shift = (y - first_row(a)) / sh * wp;
            for b in 0..sw {
                let Some(RowPhase { x0, n, at, w }) = &plans[a * sw + b] else {
                    continue;
                };
                let (x0, n) = (*x0, *n);
                let buf = &mut buf[..4 * n];
                let xs = &xp[shift..];
                if n >= 16 {
                    phase_steps::<16>(xs, at, w, bias, n, buf);
                } else if n >= 8 {
                    phase_steps::<8>(xs, at, w, bias, n, buf);
                } else {
                    // a short phase (odd geometries only): position by position
                    for (c, sums) in buf.chunks_exact_mut(n).enumerate() {
                        for (j, d) in sums.iter_mut().enumerate() {
                            *d = at
                                .iter()
                                .zip(w)
                                .fold(bias[c], |acc, (&t, wt)| wt[c].mul_add(xs[t + j], acc));
                        }
                    }
                }
                // interleave: position j of the phase is column x0 + j·sw
                for (c, sums) in buf.chunks_exact(n).enumerate().take(o) {
                    let row = &mut out[(c * oh + y) * ow..][..ow];
                    for (d, &v) in row[x0..].iter_mut().step_by(sw).zip(sums) {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// The sums of one row phase of `n ≥ L` positions into `buf` (`4 × n`, channel by channel).
#[inline(always)]
fn phase_steps<const L: usize>(
    xp: &[f32],
    at: &[usize],
    w: &[[f32; 4]],
    bias: [f32; 4],
    n: usize,
    buf: &mut [f32],
) {
    for j0 in step_starts(n, L) {
        let acc = sum_taps::<L>(xp, at, w, bias, j0);
        for (c, a) in acc.iter().enumerate() {
            buf[c * n + j0..][..L].copy_from_slice(a);
        }
    }
}

impl Op for IgnDirectDeconv {
    fn name(&self) -> StaticName {
        "IgnDirectDeconv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} channels in, {:?}",
            self.in_channels, self.geometry
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for IgnDirectDeconv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.geometry;
        let [n, o, oh, ow] = g.output;
        let [ih, iw] = g.input_hw;
        let i = self.in_channels;
        let x = &inputs[0];
        ensure!(
            x.datum_type() == f32::datum_type() && x.shape() == [n, i, ih, iw],
            "IgnDirectDeconv: input {:?} {:?}, expected f32 {:?}",
            x.datum_type(),
            x.shape(),
            [n, i, ih, iw]
        );
        let ([my, mx], [hp, wp]) = (self.margins(), self.padded_hw());
        let mut xp = vec![0f32; i * hp * wp];
        // SAFETY: image() writes every output value (every column of every phase of every row).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&g.output)? };
        {
            let xs = x.try_as_plain_ram()?;
            let xs = xs.as_slice::<f32>()?;
            let mut view = out.try_as_plain_ram_mut()?;
            let os = view.as_slice_mut::<f32>()?;
            for b in 0..n {
                for ch in 0..i {
                    for r in 0..ih {
                        let src = &xs[((b * i + ch) * ih + r) * iw..][..iw];
                        xp[(ch * hp + my + r) * wp + mx..][..iw].copy_from_slice(src);
                    }
                }
                self.image(&xp, &mut os[b * o * oh * ow..][..o * oh * ow]);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for IgnDirectDeconv {
    /// One multiply-add per weight and input position, as tract counts a `Deconv`.
    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let fmas = g.output[0] * g.input_hw[0] * g.input_hw[1] * self.weights.len();
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas.to_dim())))
    }

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(self.geometry.output)))
    }

    as_op!();
}

/// The [`IgnDirectDeconv`] for a `Deconv` node of a typed model: group 1, undilated, NCHW, f32,
/// 2-D (as [`super::deconv_sum`] takes them), constant weights and bias, at most
/// [`OUTPUT_CHANNELS`] output channels, strides no larger than the kernel, and row phases of at
/// least 8 positions.
fn direct(
    model: &TypedModel,
    node: &TypedNode,
    op: &Deconv,
) -> TractResult<Option<IgnDirectDeconv>> {
    let Some(g) = super::deconv_sum::geometry(model, node, op)? else {
        return Ok(None);
    };
    if node.inputs.len() != 3
        || !OUTPUT_CHANNELS.contains(&g.output[1])
        || !supported(&g)
        || g.output[3] / g.strides[1] < L
    {
        return Ok(None);
    }
    let (k, b) = (
        model.outlet_fact(node.inputs[1])?,
        model.outlet_fact(node.inputs[2])?,
    );
    let i = model.outlet_fact(node.inputs[0])?.shape[1].to_usize()?;
    let (Some(kt), Some(bt)) = (k.konst.as_ref(), b.konst.as_ref()) else {
        return Ok(None);
    };
    if kt.datum_type() != f32::datum_type() || bt.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    // [group, O, I, KH·KW], as tract's own lowering reads the kernel
    let Ok(k) = op.kernel_format.kernel_as_group_o_i_hw(kt, 1) else {
        return Ok(None);
    };
    let o = g.output[1];
    if k.shape() != [1, o, i, g.kernel[0] * g.kernel[1]] {
        return Ok(None);
    }
    let bias: Vec<f32> = match bt.len() {
        1 => vec![bt.cast_to_scalar::<f32>()?; o],
        l if l == o => match bt.try_as_plain_ram() {
            Ok(b) => b.as_slice::<f32>()?.to_vec(),
            Err(_) => return Ok(None), // not plain storage: tract's ops
        },
        _ => return Ok(None),
    };
    let Ok(weights) = k.try_as_plain_ram() else {
        return Ok(None);
    };
    let weights = weights.as_slice::<f32>()?.to_vec();
    Ok(Some(IgnDirectDeconv::new(g, i, weights, bias)?))
}

/// Replace each fp32 `Deconv` of a typed model (before optimization) with few output channels
/// by [`IgnDirectDeconv`], on CPUs with a fused multiply-add. Returns how many were replaced.
pub fn replace_thin_deconvs(model: &mut TypedModel) -> TractResult<usize> {
    if !fused_multiply_add() {
        return Ok(0);
    }
    // the weights and bias go into the op: only the image stays an input
    super::replace_nodes(model, |model, node| {
        let Some(op) = node.op_as::<Deconv>() else {
            return Ok(None);
        };
        Ok(direct(model, node, op)?.map(|new| (new, 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The transposed convolution straight from its definition.
    fn reference(op: &IgnDirectDeconv, x: &[f32]) -> Vec<f32> {
        let g = &op.geometry;
        let ([n, o, oh, ow], [ih, iw], i) = (g.output, g.input_hw, op.in_channels);
        let ([kh, kw], [sh, sw], [pt, pl]) = (g.kernel, g.strides, g.pad_before);
        let mut out = vec![0f64; n * o * oh * ow];
        for b in 0..n {
            for c in 0..o {
                for v in &mut out[(b * o + c) * oh * ow..][..oh * ow] {
                    *v = op.bias[c] as f64;
                }
                for ch in 0..i {
                    for y in 0..ih {
                        for xx in 0..iw {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (oy, ox) = (
                                        (y * sh + ky) as isize - pt as isize,
                                        (xx * sw + kx) as isize - pl as isize,
                                    );
                                    if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                        continue;
                                    }
                                    let w = op.weights[((c * i + ch) * kh + ky) * kw + kx];
                                    let v = x[((b * i + ch) * ih + y) * iw + xx];
                                    out[((b * o + c) * oh + oy as usize) * ow + ox as usize] +=
                                        (w * v) as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn matches_the_definition_on_the_last_layers_and_odd_geometries() {
        // (N, I, H, W, O, k, s, pad, output H, W)
        let cases = [
            (1, 16, 32, 32, 3, 4, 2, 1, 64, 64), // the scene model's last layer
            (2, 32, 14, 14, 1, 4, 2, 1, 28, 28), // ign-mnist's, batch 2
            (1, 5, 9, 7, 2, 3, 2, 1, 17, 13),    // odd kernel
            (1, 3, 6, 6, 4, 5, 3, 2, 17, 17),    // stride 3, kernel 5, pad 2
            (1, 2, 10, 10, 3, 3, 1, 1, 10, 10),  // stride 1
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for (t, &(n, i, h, w, o, k, s, p, oh, ow)) in cases.iter().enumerate() {
            let g = DeconvGeometry {
                input_hw: [h, w],
                kernel: [k, k],
                strides: [s, s],
                pad_before: [p, p],
                output: [n, o, oh, ow],
            };
            let mut rand = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let (x, wt, bias) = (rand(n * i * h * w), rand(o * i * k * k), rand(o));
            let op = IgnDirectDeconv::new(g, i, wt, bias).unwrap();
            let want = reference(&op, &x);
            let input = Tensor::from_shape(&[n, i, h, w], &x).unwrap();
            let got = EvalOp::eval(&op, &EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
                .unwrap()
                .remove(0);
            let got = got.try_as_plain_ram().unwrap();
            for (j, (&a, &b)) in got.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "case {t} value {j}: {a} against {b}"
                );
            }
        }
    }

    /// The shipped models, with their last layer computed directly and by tract: the scene
    /// model's (3 channels out) is replaced, ign-mnist's (1 channel out) is not.
    #[test]
    fn shipped_models_replace_their_last_layer_and_agree_with_tract() {
        for (file, expect) in [("ign-mnist.onnx", 0), ("scene/garden.onnx", 1)] {
            let (replaced, worst) = crate::backend::shipped_model_with_and_without(file, |m| {
                replace_thin_deconvs(m).unwrap()
            });
            assert_eq!(replaced, expect, "{file}");
            assert!(worst < 1e-4, "{file}: outputs differ by {worst}");
        }
    }
}
