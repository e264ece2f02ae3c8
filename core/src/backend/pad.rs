//! Constant padding by an op of our own (issue 31, the fp32 gap to onnxruntime).
//!
//! tract pads the input of each padded convolution with its `Pad` op before the im2col: it
//! fills a whole new tensor with the pad value, then assigns the input into its middle through
//! an n-dimensional `ndarray` view, value by value. That took 5-7% of the fp32 time of
//! ign-mnist and of the 64×64 scene model (`bench --profile`: 20 µs of 390 and 43-56 µs of
//! 600-800), for 5 to 70 KB copied per node.
//!
//! [`IgnPad`] writes each output row once: the pad value before and after, and the input row
//! in between as one `copy_from_slice` (a `memcpy`); whole padded rows and planes are one
//! fill. It handles every plain (non-opaque) datum type by its bytes, with the pad value cast
//! to the input's type as tract casts it, so its output is tract's, byte for byte. Reflect and
//! edge padding keep tract's op.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Pad, PadMode};

/// `Pad` with a constant value, computed row by row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IgnPad {
    /// Values added before and after, per axis.
    pub pads: Vec<(usize, usize)>,
    /// The input's datum type (without its quantization), checked at each call.
    dt: DatumType,
    /// The pad value's bytes in the input's datum type (one element).
    value: Vec<u8>,
    /// Whether they are all zero (then a fill is a `memset`).
    zero: bool,
}

impl IgnPad {
    /// The op for tract's `pad` on input type `dt`, when its mode is constant and `dt` is a
    /// plain numeric type.
    pub fn of(pad: &Pad, dt: DatumType) -> TractResult<Option<IgnPad>> {
        let PadMode::Constant(value) = &pad.mode else {
            return Ok(None);
        };
        // a scalar (nothing to pad), a value that is not one element, or pads no tensor can
        // have (ONNX's negative pads arrive wrapped around): tract's op decides
        if pad.pads.is_empty()
            || value.len() != 1
            || pad
                .pads
                .iter()
                .any(|&(a, b)| a.max(b) > isize::MAX as usize / 2)
        {
            return Ok(None);
        }
        let value = match dt.unquantized() {
            DatumType::F32 => value.cast_to_scalar::<f32>()?.to_ne_bytes().to_vec(),
            DatumType::F64 => value.cast_to_scalar::<f64>()?.to_ne_bytes().to_vec(),
            DatumType::F16 => value
                .cast_to_scalar::<f16>()?
                .to_bits()
                .to_ne_bytes()
                .to_vec(),
            DatumType::I8 => value.cast_to_scalar::<i8>()?.to_ne_bytes().to_vec(),
            DatumType::U8 => value.cast_to_scalar::<u8>()?.to_ne_bytes().to_vec(),
            DatumType::I32 => value.cast_to_scalar::<i32>()?.to_ne_bytes().to_vec(),
            _ => return Ok(None),
        };
        Ok(Some(IgnPad {
            pads: pad.pads.clone(),
            dt: dt.unquantized(),
            zero: value.iter().all(|&b| b == 0),
            value,
        }))
    }

    /// Fill `out` with the pad value.
    #[inline]
    fn fill(&self, out: &mut [u8]) {
        if self.zero {
            out.fill(0);
        } else {
            for e in out.chunks_exact_mut(self.value.len()) {
                e.copy_from_slice(&self.value);
            }
        }
    }

    /// Pad `input` (the input's block at `axis`) into `out` (the output's block at `axis`).
    fn pad_axis(&self, input: &[u8], axis: usize, b: &Blocks, out: &mut [u8]) {
        let (before, after) = self.pads[axis];
        let (n, ii, oi) = (b.dims[axis], b.input[axis], b.output[axis]);
        self.fill(&mut out[..before * oi]);
        self.fill(&mut out[(before + n) * oi..][..after * oi]);
        let last = b.dims.len() - 1;
        if axis == last {
            out[before * oi..][..n * oi].copy_from_slice(input);
        } else if axis + 1 == last {
            // the rows: pad value, the input row (one memcpy), pad value
            let row_before = self.pads[last].0 * b.output[last];
            for r in 0..n {
                let row = &mut out[(before + r) * oi..][..oi];
                self.fill(&mut row[..row_before]);
                row[row_before..row_before + ii].copy_from_slice(&input[r * ii..][..ii]);
                self.fill(&mut row[row_before + ii..]);
            }
        } else {
            for r in 0..n {
                let (src, dst) = (&input[r * ii..][..ii], &mut out[(before + r) * oi..][..oi]);
                self.pad_axis(src, axis + 1, b, dst);
            }
        }
    }
}

/// Sizes for [`IgnPad::pad_axis`]: per axis, its length in the input and the bytes of one
/// step along it in the input and in the output.
struct Blocks {
    dims: Vec<usize>,
    input: Vec<usize>,
    output: Vec<usize>,
}

impl Blocks {
    fn new(shape: &[usize], pads: &[(usize, usize)], es: usize) -> Blocks {
        let (mut input, mut output) = (vec![es; shape.len()], vec![es; shape.len()]);
        for ax in (0..shape.len().saturating_sub(1)).rev() {
            let (a, b) = pads[ax + 1];
            input[ax] = input[ax + 1] * shape[ax + 1];
            output[ax] = output[ax + 1] * (shape[ax + 1] + a + b);
        }
        Blocks {
            dims: shape.to_vec(),
            input,
            output,
        }
    }
}

impl Op for IgnPad {
    fn name(&self) -> StaticName {
        "IgnPad".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("constant, pads: {:?}", self.pads)])
    }

    op_as_typed_op!();
}

impl EvalOp for IgnPad {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let dt = input.datum_type();
        let es = dt.size_of();
        ensure!(
            input.rank() == self.pads.len()
                && es == self.value.len()
                && dt.unquantized() == self.dt,
            "IgnPad: input {:?} {:?} for pads {:?} on {:?}",
            dt,
            input.shape(),
            self.pads,
            self.dt
        );
        let shape = input.shape().to_vec();
        let out_shape: Vec<usize> = shape
            .iter()
            .zip(&self.pads)
            .map(|(&d, &(a, b))| d.checked_add(a)?.checked_add(b))
            .collect::<Option<_>>()
            .context("IgnPad: the padded shape overflows")?;
        ensure!(
            out_shape
                .iter()
                .try_fold(es, |n, &d| n.checked_mul(d))
                .is_some_and(|n| n <= isize::MAX as usize),
            "IgnPad: the padded tensor {out_shape:?} is too large"
        );
        // SAFETY: pad_axis writes every byte of the output (fills and copies that tile it).
        let mut out = unsafe { Tensor::uninitialized_dt(dt, &out_shape)? };
        if out.len() > 0 {
            let src = input.try_as_plain_ram()?;
            let mut dst = out.try_as_plain_ram_mut()?;
            if input.len() == 0 {
                self.fill(dst.as_bytes_mut());
            } else {
                let blocks = Blocks::new(&shape, &self.pads, es);
                self.pad_axis(src.as_bytes(), 0, &blocks, dst.as_bytes_mut());
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for IgnPad {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut fact = inputs[0].without_value();
        ensure!(
            self.pads.len() == fact.rank(),
            "IgnPad: input of rank {}, pads {:?}",
            fact.rank(),
            self.pads
        );
        for (ix, (b, e)) in self.pads.iter().enumerate() {
            fact.shape.set(ix, fact.shape[ix].clone() + *b + *e);
        }
        Ok(tvec!(fact))
    }

    as_op!();
}

/// Replace each constant `Pad` of the optimized `plan` on a plain tensor by [`IgnPad`].
/// Returns how many were replaced.
pub fn replace_pad(plan: &mut TypedModel) -> TractResult<usize> {
    super::replace_nodes(plan, |plan, node| {
        let Some(pad) = node.op_as::<Pad>() else {
            return Ok(None);
        };
        let fact = plan.outlet_fact(node.inputs[0])?;
        if fact.exotic_fact().is_some() {
            return Ok(None);
        }
        Ok(IgnPad::of(pad, fact.datum_type)?.map(|op| (op, 1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// tract's `Pad` and ours on the same input.
    fn both(input: Tensor, pad: Pad) -> (TValue, TValue) {
        let ours = IgnPad::of(&pad, input.datum_type()).unwrap().unwrap();
        let ctx = EvalContext::out_of_plan();
        let a = EvalOp::eval(&pad, &ctx, tvec!(input.clone().into_tvalue()))
            .unwrap()
            .remove(0);
        let b = EvalOp::eval(&ours, &ctx, tvec!(input.into_tvalue()))
            .unwrap()
            .remove(0);
        (a, b)
    }

    fn random_f32(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_shape(shape, &v).unwrap()
    }

    #[test]
    fn equals_tracts_pad_byte_for_byte() {
        type Case<'a> = (&'a [usize], &'a [(usize, usize)]);
        let cases: &[Case] = &[
            // a padded conv's input: NCHW, 1 on each side of the plane
            (&[1, 3, 64, 64], &[(0, 0), (0, 0), (1, 1), (1, 1)]),
            (&[3, 16, 7, 7], &[(0, 0), (0, 0), (1, 1), (1, 1)]),
            // uneven, on every axis, and nothing at all
            (&[2, 3, 5, 4], &[(1, 0), (0, 2), (2, 0), (0, 3)]),
            (&[2, 3], &[(0, 0), (0, 0)]),
            (&[5], &[(3, 1)]),
            // an empty axis: only the pad value
            (&[2, 0, 3], &[(0, 0), (1, 1), (0, 0)]),
        ];
        for (i, &(shape, pads)) in cases.iter().enumerate() {
            for value in [0.0f32, -0.5, 3.0] {
                let pad = Pad::new(pads.to_vec(), PadMode::Constant(Arc::new(value.into())));
                let x = random_f32(shape, i as u64);
                let (a, b) = both(x.clone(), pad.clone());
                assert_eq!(a.shape(), b.shape(), "case {i}");
                assert_eq!(a.datum_type(), b.datum_type(), "case {i}");
                let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
                assert_eq!(a.as_bytes(), b.as_bytes(), "f32 case {i}, value {value}");
                // the same bytes on int8 and fp16 tensors (the int8 and fp16 plans)
                for dt in [DatumType::I8, DatumType::U8, DatumType::F16] {
                    let x = random_f32(shape, 50 + i as u64);
                    let x = x.cast_to_dt(dt).unwrap().into_owned();
                    let (a, b) = both(x, pad.clone());
                    let (a, b) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
                    assert_eq!(a.as_bytes(), b.as_bytes(), "{dt:?} case {i}, value {value}");
                }
            }
        }
    }

    #[test]
    fn reflect_and_edge_padding_keep_tracts_op() {
        for mode in [PadMode::Reflect, PadMode::Edge] {
            let pad = Pad::new(vec![(1, 1)], mode);
            assert!(IgnPad::of(&pad, DatumType::F32).unwrap().is_none());
        }
    }
}
