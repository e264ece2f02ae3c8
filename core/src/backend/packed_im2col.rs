//! int8 convolutions: the im2col of tract's int8 plan, done by an op of this project's own
//! (issue 18, docs/performance.md).
//!
//! tract lowers every quantized `Conv` through an eager `Im2col` that writes its packed int8
//! format one value at a time through a generic writer: on ign-mnist's int8 plan that was 43% of
//! the time (150 µs of 348 µs per image on this x86 host). [`replace_im2col`] swaps each such
//! node of the optimized plan for [`IgnPackedIm2col`], which writes the same bytes (tested against
//! tract's op in `tests/int8_kernels.rs`) four K values at a time from a padded copy of the
//! image and per-layer offset tables. The file on disk is unchanged; only tract's plan is.
//!
//! `IGN_EDGE_TRACT_OPS=1` keeps tract's own op (see [`super::own_ops`]).

use tract_linalg::mmm::{EagerPackedInput, MMMInputValue, PackedExoticFact, PackedMatrixStorage};
use tract_linalg::pack::{PackedFormat, PackedI8K4};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::conv::Im2Col;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The geometry of a 2-D convolution over one channel plane.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Padding before (top, left).
    pub pad_before: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

/// How tract's int8 matrix kernel wants its input panels (`r` output positions per panel).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Packing {
    /// `PackedI8K4`: K in groups of four, `out[panel·panel_len + (k/4)·4r + lane·4 + k%4]`
    /// (the dot-product kernels: x86 AVX-512 VNNI and AVX2, arm64 SDOT).
    K4(PackedI8K4),
    /// `PackedFormat`, K-major: `out[panel·panel_len + k·r + lane]` (arm64 SMLAL on the Pi 4's
    /// Cortex-A72, SVE).
    KMajor(PackedFormat),
}

impl std::fmt::Debug for Packing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Packing::K4(p) => write!(f, "{p:?}"),
            Packing::KMajor(p) => write!(f, "PackedFormat(r {})", p.r),
        }
    }
}

impl Packing {
    fn r(&self) -> usize {
        match self {
            Packing::K4(p) => p.r,
            Packing::KMajor(p) => p.r,
        }
    }

    fn align(&self) -> usize {
        match self {
            Packing::K4(p) => p.alignment(),
            Packing::KMajor(p) => p.alignment(),
        }
    }

    fn panel_len(&self, k: usize) -> usize {
        match self {
            Packing::K4(p) => p.single_panel_len(k),
            Packing::KMajor(p) => p.single_panel_len(k),
        }
    }

    fn format(&self) -> Box<dyn tract_linalg::mmm::MMMInputFormat> {
        match self {
            Packing::K4(p) => Box::new(p.clone()),
            Packing::KMajor(p) => Box::new(p.clone()),
        }
    }
}

/// tract's `Im2col` for one-byte values into the panels of its int8 kernels ([`Packing`]),
/// written from a padded copy of the image and per-layer offset tables (four K values at a
/// time for `K4`, runs of `r` positions for `KMajor`), instead of value by value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IgnPackedIm2col {
    /// Input `[N, C, H, W]`.
    input: [usize; 4],
    group: usize,
    kernel: [usize; 2],
    pad_before: [usize; 2],
    /// The padded image `[Hp, Wp]` every tap reads from (the pad value outside the input).
    padded: [usize; 2],
    packing: Packing,
    /// Per output position: its top-left offset in the padded plane.
    pos: Vec<u32>,
    /// Per kernel tap `(ky, kx)`: its offset from the top-left in the padded plane.
    tap_offsets: Vec<u32>,
    /// Per output position: its offset in the packed buffer (panel and lane).
    lanes: Vec<u32>,
}

impl IgnPackedIm2col {
    /// The packing of convolution geometry `g` over an `input` of `[N, C, H, W]` in `group`
    /// groups, into `packing`.
    pub fn new(g: &ConvGeometry, input: [usize; 4], group: usize, packing: Packing) -> Self {
        let [_, c, h, w] = input;
        let [ho, wo] = g.output;
        let [kh, kw] = g.kernel;
        let hp = ((ho.max(1) - 1) * g.strides[0] + (kh - 1) * g.dilations[0] + 1)
            .max(g.pad_before[0] + h);
        let wp = ((wo.max(1) - 1) * g.strides[1] + (kw - 1) * g.dilations[1] + 1)
            .max(g.pad_before[1] + w);
        let k = c / group * kh * kw;
        let (r, panel_len) = (packing.r(), packing.panel_len(k));
        let lane = |m: usize| match packing {
            Packing::K4(_) => (m / r) * panel_len + (m % r) * 4,
            Packing::KMajor(_) => (m / r) * panel_len + m % r,
        };
        let mut pos = Vec::with_capacity(ho * wo);
        for oy in 0..ho {
            for ox in 0..wo {
                pos.push((oy * g.strides[0] * wp + ox * g.strides[1]) as u32);
            }
        }
        let mut tap_offsets = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            for kx in 0..kw {
                tap_offsets.push((ky * g.dilations[0] * wp + kx * g.dilations[1]) as u32);
            }
        }
        IgnPackedIm2col {
            input,
            group,
            kernel: g.kernel,
            pad_before: g.pad_before,
            padded: [hp, wp],
            lanes: (0..ho * wo).map(|m| lane(m) as u32).collect(),
            packing,
            pos,
            tap_offsets,
        }
    }

    fn k(&self) -> usize {
        self.input[1] / self.group * self.kernel[0] * self.kernel[1]
    }

    fn panel_len(&self) -> usize {
        self.packing.panel_len(self.k())
    }

    fn mn(&self) -> usize {
        self.pos.len()
    }

    /// Bytes of one packed buffer (one image, one group).
    pub fn packed_len(&self) -> usize {
        self.mn().div_ceil(self.packing.r()) * self.panel_len()
    }

    /// The packed buffer of image `b`, group `g` (`pad` outside the image, 0 in the lanes past
    /// K and past the last output position), as tract's `Im2col` writes it.
    pub fn pack(&self, input: &[u8], b: usize, g: usize, pad: u8, out: &mut [u8]) {
        let [_, c, h, w] = self.input;
        let [hp, wp] = self.padded;
        let cpg = c / self.group;
        let taps = self.tap_offsets.len();
        let mut img = vec![pad; cpg * hp * wp];
        for ci in 0..cpg {
            let src = &input[(b * c + g * cpg + ci) * h * w..][..h * w];
            let dst = &mut img[ci * hp * wp..][..hp * wp];
            for (y, row) in src.chunks_exact(w).enumerate() {
                let at = (y + self.pad_before[0]) * wp + self.pad_before[1];
                dst[at..at + w].copy_from_slice(row);
            }
        }
        out.fill(0);
        let k = self.k();
        let offset = |kk: usize| (kk / taps) * hp * wp + self.tap_offsets[kk % taps] as usize;
        let r = self.packing.r();
        // Where value (kk, m) goes: lanes[m] + step(kk).
        let step = |kk: usize| match self.packing {
            Packing::K4(_) => (kk / 4) * r * 4 + kk % 4,
            Packing::KMajor(_) => kk * r,
        };
        // Every read is below `offset(k - 1) + max(pos)` and every write below the last lane's
        // end: checked once here, so the loops below index without checks.
        let max_pos = self.pos.iter().copied().max().unwrap_or(0) as usize;
        let max_lane = self.lanes.iter().copied().max().unwrap_or(0) as usize;
        let last = match self.packing {
            Packing::K4(_) => ((k.max(1) - 1) / 4) * r * 4 + 3,
            Packing::KMajor(_) => step(k.max(1) - 1),
        };
        assert!(k == 0 || (0..k).map(offset).max().unwrap_or(0) + max_pos < img.len());
        assert!(k == 0 || max_lane + last < out.len());
        let (src, dst) = (img.as_ptr(), out.as_mut_ptr());
        let mut kk = 0;
        if matches!(self.packing, Packing::K4(_)) {
            for k4 in 0..k / 4 {
                let o = [0, 1, 2, 3].map(|j| offset(4 * k4 + j));
                let base = step(4 * k4);
                for (&lane, &p) in self.lanes.iter().zip(&self.pos) {
                    let p = p as usize;
                    // SAFETY: in bounds by the two asserts above.
                    unsafe {
                        let v = [
                            *src.add(o[0] + p),
                            *src.add(o[1] + p),
                            *src.add(o[2] + p),
                            *src.add(o[3] + p),
                        ];
                        std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add(lane as usize + base), 4);
                    }
                }
            }
            kk = (k / 4) * 4;
        }
        for kk in kk..k {
            let (o, base) = (offset(kk), step(kk));
            for (&lane, &p) in self.lanes.iter().zip(&self.pos) {
                // SAFETY: in bounds by the two asserts above.
                unsafe { *dst.add(lane as usize + base) = *src.add(o + p as usize) };
            }
        }
    }
}

impl Op for IgnPackedIm2col {
    fn name(&self) -> StaticName {
        "IgnPackedIm2col".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "input {:?} kernel {:?} group {} {:?}",
            self.input, self.kernel, self.group, self.packing
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for IgnPackedIm2col {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let dt = x.datum_type();
        ensure!(
            dt.size_of() == 1 && x.shape() == self.input,
            "IgnPackedIm2col: unexpected input {:?} {:?}",
            dt,
            x.shape()
        );
        let pad = match inputs.get(1) {
            Some(p) => p.as_bytes().first().copied().unwrap_or(0),
            None => 0,
        };
        let (mn, panel_len, len) = (self.mn(), self.panel_len(), self.packed_len());
        let bytes = x.as_bytes();
        let mut values: TVec<Box<dyn MMMInputValue>> = tvec![];
        for b in 0..self.input[0] {
            for g in 0..self.group {
                // SAFETY: one-byte values; pack() writes every byte.
                let mut data =
                    unsafe { Tensor::uninitialized_aligned_dt(dt, &[len], self.packing.align())? };
                self.pack(bytes, b, g, pad, data.as_bytes_mut());
                values.push(Box::new(EagerPackedInput {
                    fact: PackedExoticFact {
                        format: self.packing.format(),
                        k: self.k(),
                        mn: mn.to_dim(),
                    },
                    packed: data.into_blob()?.into(),
                    panel_bytes: panel_len,
                    mn,
                }));
            }
        }
        let out =
            PackedMatrixStorage::new_batched(&[self.input[0], self.group], values).into_tensor(dt);
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for IgnPackedIm2col {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let pof = PackedExoticFact {
            format: self.packing.format(),
            k: self.k(),
            mn: self.mn().to_dim(),
        };
        Ok(tvec!(inputs[0]
            .datum_type
            .fact([self.input[0], self.group])
            .with_exotic_fact(pof)))
    }

    as_op!();
}

/// Replace every int8 `Im2col` of an optimized plan that packs for `PackedI8K4` kernels by
/// [`IgnPackedIm2col`] (same output, byte for byte). Returns how many were replaced.
pub fn replace_im2col(model: &mut TypedModel) -> TractResult<usize> {
    super::replace_nodes(model, |model, node| {
        let Some(op) = node.op_as::<Im2Col>() else {
            return Ok(None);
        };
        Ok(replacement(model, node, op)?.map(|new| (new, node.inputs.len())))
    })
}

/// The [`IgnPackedIm2col`] that replaces tract's `Im2col` `op` at `node`, when it packs one-byte
/// NCHW values for `PackedI8K4` kernels (`None` for anything else: tract's op stays).
pub fn replacement(
    model: &TypedModel,
    node: &TypedNode,
    op: &Im2Col,
) -> TractResult<Option<IgnPackedIm2col>> {
    let ps = &op.pool_spec;
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(pof) = node.outputs[0]
        .fact
        .exotic_fact()
        .and_then(|f| f.downcast_ref::<PackedExoticFact>())
    else {
        return Ok(None);
    };
    let packing = if let Some(p4) = pof.format.downcast_ref::<PackedI8K4>() {
        Packing::K4(p4.clone())
    } else if let Some(pf) = pof.format.downcast_ref::<PackedFormat>() {
        if pf.dt.size_of() != 1 {
            return Ok(None);
        }
        Packing::KMajor(pf.clone())
    } else {
        return Ok(None);
    };
    let Some(shape) = x.shape.as_concrete() else {
        return Ok(None);
    };
    if x.datum_type.size_of() != 1
        || ps.data_format != DataFormat::NCHW
        || shape.len() != 4
        || ps.kernel_shape.len() != 2
    {
        return Ok(None);
    }
    let input = [shape[0], shape[1], shape[2], shape[3]];
    let padding = ps.computed_padding(&input[2..]);
    let (strides, dilations) = (ps.strides(), ps.dilations());
    let geometry = ConvGeometry {
        kernel: [ps.kernel_shape[0], ps.kernel_shape[1]],
        strides: [strides[0], strides[1]],
        dilations: [dilations[0], dilations[1]],
        pad_before: [padding[0].pad_before, padding[1].pad_before],
        output: [padding[0].convoluted, padding[1].convoluted],
    };
    let p = IgnPackedIm2col::new(&geometry, input, op.group, packing);
    if p.k() != pof.k {
        return Ok(None);
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input value under tap `kk` (channel-major, then ky, kx) at output position `m`, or `pad`.
    fn reference(
        g: &ConvGeometry,
        x: &[u8],
        [_, c, h, w]: [usize; 4],
        kk: usize,
        m: usize,
        pad: u8,
    ) -> u8 {
        let [kh, kw] = g.kernel;
        let (ci, ky, kx) = (kk / (kh * kw), kk / kw % kh, kk % kw);
        let (oy, ox) = (m / g.output[1], m % g.output[1]);
        let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize - g.pad_before[0] as isize;
        let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize - g.pad_before[1] as isize;
        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) && ci < c {
            x[(ci * h + iy as usize) * w + ix as usize]
        } else {
            pad
        }
    }

    #[test]
    fn every_value_lands_at_its_packed_offset_and_padding_lanes_are_zero() {
        let input = [1, 3, 7, 6];
        let x: Vec<u8> = (0..3 * 7 * 6).map(|i| (i * 37 % 251) as u8 + 1).collect();
        for (k, s, d, p, r) in [
            (4, 2, 1, 1, 16),
            (3, 1, 1, 1, 8),
            (3, 2, 1, 0, 16),
            (2, 1, 2, 1, 8),
            (1, 1, 1, 0, 4),
        ] {
            let out = |n: usize| (n + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = ConvGeometry {
                kernel: [k, k],
                strides: [s, s],
                dilations: [d, d],
                pad_before: [p, p],
                output: [out(7), out(6)],
            };
            let k_major = PackedFormat {
                dt: DatumType::I8,
                r,
                alignment_bytes: 16,
                end_padding_record: 1,
            };
            for packing in [Packing::K4(PackedI8K4::new(r)), Packing::KMajor(k_major)] {
                let pp = IgnPackedIm2col::new(&g, input, 1, packing.clone());
                let mut packed = vec![0xAA; pp.packed_len()];
                pp.pack(&x, 0, 0, 200, &mut packed);
                let (kk_n, mn) = (3 * k * k, g.output[0] * g.output[1]);
                let panel_len = packing.panel_len(kk_n);
                let mut expected = vec![0u8; packed.len()];
                for kk in 0..kk_n {
                    for m in 0..mn {
                        let at = (m / r) * panel_len
                            + match packing {
                                Packing::K4(_) => (kk / 4) * r * 4 + (m % r) * 4 + kk % 4,
                                Packing::KMajor(_) => kk * r + m % r,
                            };
                        expected[at] = reference(&g, &x, input, kk, m, 200);
                    }
                }
                assert_eq!(packed, expected, "k{k} s{s} d{d} p{p} r{r} {packing:?}");
            }
        }
    }
}
