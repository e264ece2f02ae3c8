//! fp32 convolutions with few input channels, computed directly (issue 31: the fp32 gap to
//! onnxruntime, docs/performance.md "Layer by layer against onnxruntime").
//!
//! A model's first conv reads the image: 1 or 3 channels. tract runs it like every conv, as a
//! matrix product over an im2col, but that product is only `channels × taps` deep (16 or 48 for
//! the DCGAN 4×4 kernels) and its input panels are gathered value by value: the scene model's
//! first conv (3 → 16 channels, 64×64 → 32×32) took 80 µs against onnxruntime's 32.
//!
//! [`IgnDirectConv`] splits the zero-padded image into its stride phases
//! (`phase (a, b)[i][j] = padded[i·s + a][j·s + b]`), so that what one kernel tap meets along
//! an output row is one contiguous run, and adds `weight × run` into four output rows at a
//! time, vectorized along the row. It sums in another order than tract's product, so its
//! results differ from tract's by rounding (tested within 1e-5). It replaces the `Conv` node in
//! the model before optimization; the activation after it stays tract's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::tap_sums::{four, fused_multiply_add, hash_bits, same_bits, step_starts, sum_taps};

/// Convs with at most this many input channels are computed directly.
pub const MAX_INPUT_CHANNELS: usize = 4;

/// Output rows shorter than this keep tract's product (too short to vectorize along).
pub const MIN_OUTPUT_WIDTH: usize = 8;

/// Sizes of one 2-D convolution, batch and channels included.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct DirectGeometry {
    /// `[N, C, H, W]` of the input.
    pub input: [usize; 4],
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// Zero rows/columns before and after the image.
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
    /// Output rows and columns.
    pub output: [usize; 2],
}

impl DirectGeometry {
    /// Whether the kernels this op computes can run on this geometry: strides no larger than
    /// the kernel (so that the stride phases stay within the padded image's size), output rows
    /// of at least [`MIN_OUTPUT_WIDTH`], and every window inside the padded image.
    pub fn supported(&self) -> bool {
        let [_, c, h, w] = self.input;
        (0..2).all(|a| {
            let size = [h, w][a] + self.pad_before[a] + self.pad_after[a];
            self.strides[a] > 0
                && self.strides[a] <= self.kernel[a]
                && self.output[a] > 0
                && (self.output[a] - 1) * self.strides[a] + self.kernel[a] <= size
        }) && self.output[1] >= MIN_OUTPUT_WIDTH
            && c > 0
    }

    /// Rows and columns of one stride phase of the padded image.
    fn phase_hw(&self) -> [usize; 2] {
        let [_, _, h, w] = self.input;
        let [sh, sw] = self.strides;
        [
            (h + self.pad_before[0] + self.pad_after[0]).div_ceil(sh),
            (w + self.pad_before[1] + self.pad_after[1]).div_ceil(sw),
        ]
    }
}

/// A convolution `[N, C, H, W] → [N, O, OH, OW]` with its weights (`O × C × KH × KW`) and bias.
#[derive(Clone, Debug)]
pub struct IgnDirectConv {
    pub geometry: DirectGeometry,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Equal when bit for bit the same (as [`Hash`] sees them).
impl PartialEq for IgnDirectConv {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry
            && same_bits(&self.weights, &other.weights)
            && same_bits(&self.bias, &other.bias)
    }
}

impl Eq for IgnDirectConv {}

impl std::hash::Hash for IgnDirectConv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.geometry.hash(state);
        hash_bits(&self.weights, state);
        hash_bits(&self.bias, state);
    }
}

impl IgnDirectConv {
    /// The op for `geometry`; `weights` `O × C × KH × KW`, `bias` one value per output channel.
    pub fn new(geometry: DirectGeometry, weights: Vec<f32>, bias: Vec<f32>) -> TractResult<Self> {
        let g = &geometry;
        ensure!(
            g.supported()
                && weights.len() == g.out_channels * g.input[1] * g.kernel[0] * g.kernel[1]
                && bias.len() == g.out_channels,
            "IgnDirectConv: {} weights and {} biases for {g:?}",
            weights.len(),
            bias.len()
        );
        Ok(IgnDirectConv {
            geometry,
            weights,
            bias,
        })
    }

    /// Split one image (`C × H × W`) into the stride phases of its zero-padded form:
    /// `q[((a·sw + b)·C + c)·ph·pw + i·pw + j] = padded[c][i·sh + a][j·sw + b]`. It writes the
    /// image's values only, at the same places for every image: the rest of `q` must be zero,
    /// as a fresh buffer is.
    fn split(&self, x: &[f32], q: &mut [f32]) {
        let g = &self.geometry;
        let [_, c, h, w] = g.input;
        let [sh, sw] = g.strides;
        let [pt, pl] = g.pad_before;
        let [ph, pw] = g.phase_hw();
        for ch in 0..c {
            for y in 0..h {
                let (a, i) = ((y + pt) % sh, (y + pt) / sh);
                let row = &x[(ch * h + y) * w..][..w];
                for b in 0..sw {
                    // the image columns x with (x + pl) % sw == b, from x0 on
                    let x0 = (b + sw - pl % sw) % sw;
                    if x0 >= w {
                        continue;
                    }
                    let at = ((a * sw + b) * c + ch) * ph * pw + i * pw + (x0 + pl) / sw;
                    let n = (w - x0).div_ceil(sw);
                    let dst = &mut q[at..][..n];
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = row[x0 + k * sw];
                    }
                }
            }
        }
    }

    /// One image's output (`O × OH × OW`) from its phases `q`.
    fn image(&self, q: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.image_avx2(q, out) };
        }
        self.image_generic(q, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn image_avx2(&self, q: &[f32], out: &mut [f32]) {
        self.image_generic(q, out)
    }

    /// [`Self::image_steps`] with 16 output positions a step (two AVX2 vectors per channel,
    /// which halves the weight broadcasts) on rows of 16 or more, 8 otherwise.
    #[inline(always)]
    fn image_generic(&self, q: &[f32], out: &mut [f32]) {
        if self.geometry.output[1] >= 16 {
            self.image_steps::<16>(q, out)
        } else {
            self.image_steps::<8>(q, out)
        }
    }

    /// One image, `L` output positions of a row at a time (the row has at least `L`).
    #[inline(always)]
    fn image_steps<const L: usize>(&self, q: &[f32], out: &mut [f32]) {
        let g = &self.geometry;
        let (c, o) = (g.input[1], g.out_channels);
        let ([kh, kw], [sh, sw], [oh, ow], [ph, pw]) =
            (g.kernel, g.strides, g.output, g.phase_hw());
        let plane = oh * ow;
        // where each tap (ch, ky, kx) reads output position (0, 0) in q; (oy, ox) is oy·pw + ox on
        let taps: Vec<usize> = (0..c)
            .flat_map(|ch| {
                (0..kh).flat_map(move |ky| {
                    (0..kw).map(move |kx| {
                        let phase = ((ky % sh) * sw + kx % sw) * c + ch;
                        phase * ph * pw + (ky / sh) * pw + kx / sw
                    })
                })
            })
            .collect();
        let steps: Vec<usize> = step_starts(ow, L).collect();
        // four output channels at a time, their weights side by side per tap
        for o0 in (0..o).step_by(4) {
            let n = (o - o0).min(4);
            let w4: Vec<[f32; 4]> = (0..taps.len())
                .map(|t| four(n, |j| self.weights[(o0 + j) * taps.len() + t]))
                .collect();
            let b4 = four(n, |j| self.bias[o0 + j]);
            for oy in 0..oh {
                for &ox in &steps {
                    let acc = sum_taps::<L>(q, &taps, &w4, b4, oy * pw + ox);
                    for (j, a) in acc.iter().enumerate().take(n) {
                        out[(o0 + j) * plane + oy * ow + ox..][..L].copy_from_slice(a);
                    }
                }
            }
        }
    }
}

impl Op for IgnDirectConv {
    fn name(&self) -> StaticName {
        "IgnDirectConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.geometry)])
    }

    op_as_typed_op!();
}

impl EvalOp for IgnDirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.geometry;
        let x = &inputs[0];
        ensure!(
            x.datum_type() == f32::datum_type() && x.shape() == g.input,
            "IgnDirectConv: input {:?} {:?}, expected f32 {:?}",
            x.datum_type(),
            x.shape(),
            g.input
        );
        let [n, c, h, w] = g.input;
        let [ph, pw] = g.phase_hw();
        let [sh, sw] = g.strides;
        let mut q = vec![0f32; sh * sw * c * ph * pw];
        let per_out = g.out_channels * g.output[0] * g.output[1];
        let shape = [n, g.out_channels, g.output[0], g.output[1]];
        // SAFETY: image() writes every value (each plane is filled with its bias first).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let xs = x.try_as_plain_ram()?;
            let xs = xs.as_slice::<f32>()?;
            let mut view = out.try_as_plain_ram_mut()?;
            let os = view.as_slice_mut::<f32>()?;
            for b in 0..n {
                self.split(&xs[b * c * h * w..][..c * h * w], &mut q);
                self.image(&q, &mut os[b * per_out..][..per_out]);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for IgnDirectConv {
    /// One multiply-add per weight and output position (what tract counts for its `Conv`), so
    /// that `bench --profile` still places all of the model's work.
    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let fmas = g.input[0] * g.output[0] * g.output[1] * self.weights.len();
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas.to_dim())))
    }

    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.geometry;
        Ok(tvec!(f32::fact([
            g.input[0],
            g.out_channels,
            g.output[0],
            g.output[1]
        ])))
    }

    as_op!();
}

/// The [`IgnDirectConv`] for a `Conv` node of a typed model, when it is a group-1, undilated,
/// NCHW, f32 2-D conv with constant weights (OIHW) and bias, at most [`MAX_INPUT_CHANNELS`]
/// input channels and output rows of at least 8.
fn direct(model: &TypedModel, node: &TypedNode, op: &Conv) -> TractResult<Option<IgnDirectConv>> {
    let ps = &op.pool_spec;
    if node.inputs.len() != 3
        || op.q_params.is_some()
        || op.group != 1
        || op.kernel_fmt != KernelFormat::OIHW
        || ps.data_format != DataFormat::NCHW
        || ps.kernel_shape.len() != 2
        || ps.dilations().iter().any(|&d| d != 1)
    {
        return Ok(None);
    }
    let x = model.outlet_fact(node.inputs[0])?;
    let (k, b) = (
        model.outlet_fact(node.inputs[1])?,
        model.outlet_fact(node.inputs[2])?,
    );
    let (Some(xs), Some(kt), Some(bt)) =
        (x.shape.as_concrete(), k.konst.as_ref(), b.konst.as_ref())
    else {
        return Ok(None);
    };
    if x.datum_type != f32::datum_type()
        || kt.datum_type() != f32::datum_type()
        || bt.datum_type() != f32::datum_type()
        || xs.len() != 4
        || xs[1] > MAX_INPUT_CHANNELS
        || kt.rank() != 4
        || kt.shape()[1] != xs[1]
        || kt.shape()[2..] != ps.kernel_shape[..]
    {
        return Ok(None);
    }
    let o = kt.shape()[0];
    let bias: Vec<f32> = match bt.len() {
        1 => vec![bt.cast_to_scalar::<f32>()?; o],
        l if l == o => match bt.try_as_plain_ram() {
            Ok(b) => b.as_slice::<f32>()?.to_vec(),
            Err(_) => return Ok(None), // not plain storage: tract's conv
        },
        _ => return Ok(None),
    };
    let padding = ps.computed_padding(&xs[2..]);
    let strides = ps.strides();
    let geometry = DirectGeometry {
        input: [xs[0], xs[1], xs[2], xs[3]],
        out_channels: o,
        kernel: [kt.shape()[2], kt.shape()[3]],
        strides: [strides[0], strides[1]],
        pad_before: [padding[0].pad_before, padding[1].pad_before],
        pad_after: [padding[0].pad_after, padding[1].pad_after],
        output: [padding[0].convoluted, padding[1].convoluted],
    };
    let out = node.outputs[0].fact.shape.as_concrete();
    if !geometry.supported() || out != Some(&[xs[0], o, geometry.output[0], geometry.output[1]][..])
    {
        return Ok(None);
    }
    let Ok(weights) = kt.try_as_plain_ram() else {
        return Ok(None); // not plain storage: tract's conv
    };
    let weights = weights.as_slice::<f32>()?.to_vec();
    Ok(Some(IgnDirectConv::new(geometry, weights, bias)?))
}

/// Replace each fp32 `Conv` of a typed model (before optimization) with few input channels by
/// [`IgnDirectConv`], on CPUs with a fused multiply-add. Returns how many were replaced.
pub fn replace_thin_convs(model: &mut TypedModel) -> TractResult<usize> {
    if !fused_multiply_add() {
        return Ok(0);
    }
    // the weights and bias go into the op: only the image stays an input
    super::replace_nodes(model, |model, node| {
        let Some(op) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        Ok(direct(model, node, op)?.map(|new| (new, 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The convolution straight from its definition.
    fn reference(g: &DirectGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let [n, c, h, wd] = g.input;
        let ([kh, kw], [sh, sw], [oh, ow]) = (g.kernel, g.strides, g.output);
        let mut out = vec![0f32; n * g.out_channels * oh * ow];
        for b in 0..n {
            for o in 0..g.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[o] as f64;
                        for ch in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let y = (oy * sh + ky) as isize - g.pad_before[0] as isize;
                                    let xx = (ox * sw + kx) as isize - g.pad_before[1] as isize;
                                    if y < 0 || xx < 0 || y >= h as isize || xx >= wd as isize {
                                        continue;
                                    }
                                    let v = x[((b * c + ch) * h + y as usize) * wd + xx as usize];
                                    acc += (w[((o * c + ch) * kh + ky) * kw + kx] * v) as f64;
                                }
                            }
                        }
                        out[((b * g.out_channels + o) * oh + oy) * ow + ox] = acc as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_on_the_first_layers_and_odd_geometries() {
        // (N, C, H, W, O, k, s, pad before, pad after)
        let cases = [
            (1, 3, 64, 64, 16, 4, 2, [1, 1], [1, 1]), // the scene model's first conv
            (2, 1, 28, 28, 32, 4, 2, [1, 1], [1, 1]), // ign-mnist's, batch 2
            (1, 2, 17, 13, 5, 3, 1, [1, 0], [2, 1]),  // stride 1, uneven padding, O % 4 = 1
            (1, 4, 20, 31, 6, 3, 3, [0, 2], [1, 0]),  // stride 3
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (i, &(n, c, h, w, o, k, s, pb, pa)) in cases.iter().enumerate() {
            let output = [
                (h + pb[0] + pa[0] - k) / s + 1,
                (w + pb[1] + pa[1] - k) / s + 1,
            ];
            let g = DirectGeometry {
                input: [n, c, h, w],
                out_channels: o,
                kernel: [k, k],
                strides: [s, s],
                pad_before: pb,
                pad_after: pa,
                output,
            };
            let mut rand = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let (x, wt, bias) = (rand(n * c * h * w), rand(o * c * k * k), rand(o));
            let want = reference(&g, &x, &wt, &bias);
            let op = IgnDirectConv::new(g, wt, bias).unwrap();
            let input = Tensor::from_shape(&[n, c, h, w], &x).unwrap();
            let got = EvalOp::eval(&op, &EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
                .unwrap()
                .remove(0);
            assert_eq!(got.shape(), &[n, o, output[0], output[1]], "case {i}");
            let got = got.try_as_plain_ram().unwrap();
            for (j, (&a, &b)) in got.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "case {i} value {j}: {a} against {b}"
                );
            }
        }
    }

    /// The shipped models, with their first conv computed directly and by tract's product.
    #[test]
    fn shipped_models_replace_their_first_conv_and_agree_with_tract() {
        for file in ["ign-mnist.onnx", "scene/garden.onnx"] {
            let (replaced, worst) = crate::backend::shipped_model_with_and_without(file, |m| {
                replace_thin_convs(m).unwrap()
            });
            assert_eq!(replaced, 1, "{file}");
            assert!(worst < 1e-4, "{file}: outputs differ by {worst}");
        }
    }
}
