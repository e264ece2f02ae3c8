//! Tensor conversions between ign-edge's images (`C×H×W` float in `[-1, 1]`) and the NPU's
//! tensors: NHWC/NCHW layouts, the quantized input with the model's mean/std folded in, and the
//! dequantized output. Pure functions, built without the `rknn` feature too.
//!
//! A model compiled by `ign-edge rknn-prep`'s recipe has `mean_values=[[127.5]]` and
//! `std_values=[[127.5]]`: a uint8 pixel `u` means `(u - 127.5) / 127.5`, exactly the `[-1, 1]`
//! scale of the model file contract (docs/ARCHITECTURE.md). So `x` goes in as `u = round((x + 1) · 127.5)`, or, when the input is
//! passed through in the model's own int8 format (`scale`, `zero point`), as
//! `q = round(x / scale) + zp`: normalization and quantization in one step.
//!
//! ```
//! use ign_edge::backend::rknn::convert::{input_u8, Layout};
//! // a 1×1×2 image (C×H×W) to NHWC uint8
//! let mut u = [0u8; 2];
//! input_u8(&[-1.0, 1.0], (1, 1, 2), Layout::Nhwc, &mut u);
//! assert_eq!(u, [0, 255]);
//! ```

use anyhow::{bail, Result};

/// `rknn_tensor_type` values.
pub mod tensor_type {
    pub const FLOAT32: i32 = 0;
    pub const FLOAT16: i32 = 1;
    pub const INT8: i32 = 2;
    pub const UINT8: i32 = 3;
}

/// `rknn_tensor_format` values.
pub mod format {
    pub const NCHW: i32 = 0;
    pub const NHWC: i32 = 1;
}

/// `rknn_tensor_qnt_type` values.
pub mod qnt {
    pub const NONE: i32 = 0;
    pub const AFFINE_ASYMMETRIC: i32 = 2;
}

/// The mean and std the model is compiled with (uint8 pixel → `[-1, 1]`).
pub const MEAN: f32 = 127.5;
/// See [`MEAN`].
pub const STD: f32 = 127.5;

/// Memory order of a 4-D tensor with batch 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Layout {
    /// From an `rknn_tensor_format` code.
    pub fn from_code(fmt: i32) -> Result<Layout> {
        match fmt {
            format::NCHW => Ok(Layout::Nchw),
            format::NHWC => Ok(Layout::Nhwc),
            f => bail!("unsupported NPU tensor format {f} (expected NCHW or NHWC)"),
        }
    }

    /// The `rknn_tensor_format` code.
    pub fn code(self) -> i32 {
        match self {
            Layout::Nchw => format::NCHW,
            Layout::Nhwc => format::NHWC,
        }
    }

    /// `(channels, height, width)` of a batch-1 tensor of these dims.
    pub fn chw(self, dims: &[u32]) -> Result<(usize, usize, usize)> {
        let d: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        match (self, d.as_slice()) {
            (Layout::Nchw, [1, c, h, w]) => Ok((*c, *h, *w)),
            (Layout::Nhwc, [1, h, w, c]) => Ok((*c, *h, *w)),
            _ => bail!("expected a batch-1 image tensor in {self:?}, got dims {dims:?}"),
        }
    }

    /// Element offset of `(c, y, x)` in a tensor of `shape` (C, H, W) in this layout.
    #[inline]
    fn offset(self, (c, y, x): (usize, usize, usize), (cn, h, w): (usize, usize, usize)) -> usize {
        match self {
            Layout::Nchw => (c * h + y) * w + x,
            Layout::Nhwc => (y * w + x) * cn + c,
        }
    }
}

/// Apply `put(dst_index, src_value)` for every element of a C×H×W image going to `layout`.
fn scatter(
    chw: &[f32],
    shape: (usize, usize, usize),
    layout: Layout,
    mut put: impl FnMut(usize, f32),
) {
    let (c, h, w) = shape;
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                put(layout.offset((ci, y, x), shape), chw[(ci * h + y) * w + x]);
            }
        }
    }
}

/// `[-1, 1]` image to uint8 pixels (the runtime applies mean/std and its own quantization).
pub fn input_u8(chw: &[f32], shape: (usize, usize, usize), layout: Layout, out: &mut [u8]) {
    scatter(chw, shape, layout, |i, v| {
        out[i] = ((v + 1.0) * STD).round().clamp(0.0, 255.0) as u8
    });
}

/// `[-1, 1]` image to the model's int8 input format (`pass_through`): `round(x / scale) + zp`.
pub fn input_i8(
    chw: &[f32],
    shape: (usize, usize, usize),
    layout: Layout,
    scale: f32,
    zp: i32,
    out: &mut [i8],
) {
    let inv = 1.0 / scale;
    scatter(chw, shape, layout, |i, v| {
        out[i] = ((v * inv).round() + zp as f32).clamp(-128.0, 127.0) as i8
    });
}

/// The element type and quantization of an NPU output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputType {
    F32,
    F16,
    /// `value = (q - zp) · scale`
    I8 {
        scale: f32,
        zp: i32,
    },
    /// `value = (q - zp) · scale`
    U8 {
        scale: f32,
        zp: i32,
    },
}

impl OutputType {
    /// From `rknn_tensor_attr` fields.
    pub fn from_attr(type_: i32, qnt_type: i32, scale: f32, zp: i32) -> Result<OutputType> {
        let affine = qnt_type == qnt::AFFINE_ASYMMETRIC;
        let (scale, zp) = if affine { (scale, zp) } else { (1.0, 0) };
        match type_ {
            tensor_type::FLOAT32 => Ok(OutputType::F32),
            tensor_type::FLOAT16 => Ok(OutputType::F16),
            tensor_type::INT8 => Ok(OutputType::I8 { scale, zp }),
            tensor_type::UINT8 => Ok(OutputType::U8 { scale, zp }),
            t => {
                bail!("unsupported NPU output type {t} (expected float32, float16, int8 or uint8)")
            }
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            OutputType::F32 => 4,
            OutputType::F16 => 2,
            OutputType::I8 { .. } | OutputType::U8 { .. } => 1,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            OutputType::F32 => "float32",
            OutputType::F16 => "float16",
            OutputType::I8 { .. } => "int8",
            OutputType::U8 { .. } => "uint8",
        }
    }

    fn value(self, b: &[u8], i: usize) -> f32 {
        match self {
            OutputType::F32 => {
                f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            }
            OutputType::F16 => half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32(),
            OutputType::I8 { scale, zp } => (b[i] as i8 as i32 - zp) as f32 * scale,
            OutputType::U8 { scale, zp } => (b[i] as i32 - zp) as f32 * scale,
        }
    }
}

/// An NPU output (raw bytes of `ty` in `layout`) to a C×H×W float image.
pub fn output_to_chw(
    raw: &[u8],
    ty: OutputType,
    layout: Layout,
    shape: (usize, usize, usize),
    out: &mut [f32],
) -> Result<()> {
    let (c, h, w) = shape;
    let n = c * h * w;
    if raw.len() < n * ty.size() || out.len() != n {
        bail!(
            "the NPU output holds {} bytes; a {c}x{h}x{w} {} image needs {}",
            raw.len(),
            ty.name(),
            n * ty.size()
        );
    }
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                out[(ci * h + y) * w + x] = ty.value(raw, layout.offset((ci, y, x), shape));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> (Vec<f32>, (usize, usize, usize)) {
        // 3 channels, 2x4: distinct values in [-1, 1]
        let shape = (3, 2, 4);
        let v = (0..24).map(|i| i as f32 / 11.5 - 1.0).collect();
        (v, shape)
    }

    #[test]
    fn nhwc_puts_channels_innermost() {
        let (v, shape) = image();
        let mut u = vec![0u8; 24];
        input_u8(&v, shape, Layout::Nhwc, &mut u);
        // pixel (y=1, x=2): channels 0, 1, 2 of CHW index (c*2+1)*4+2
        let at = (4 + 2) * 3;
        for c in 0..3 {
            let want = ((v[(c * 2 + 1) * 4 + 2] + 1.0) * 127.5).round() as u8;
            assert_eq!(u[at + c], want);
        }
        assert_eq!(u[0], 0, "-1 maps to 0");
        assert_eq!(u[23], 255, "+1 maps to 255");
    }

    #[test]
    fn int8_input_folds_mean_std_and_quantization() {
        let (v, shape) = image();
        let (scale, zp) = (2.0 / 255.0, -1);
        let mut q = vec![0i8; 24];
        input_i8(&v, shape, Layout::Nchw, scale, zp, &mut q);
        for (x, q) in v.iter().zip(&q) {
            // dequantizing gives back x within half a step (clamped at the ends)
            let back = (*q as i32 - zp) as f32 * scale;
            assert!((back - x).abs() <= scale / 2.0 + 1e-6 || *q == 127 || *q == -128);
        }
        // and matches the uint8 path up to the zero point: u - 128 - 1 = q
        let mut u = vec![0u8; 24];
        input_u8(&v, shape, Layout::Nchw, &mut u);
        for (u, q) in u.iter().zip(&q) {
            assert!((*u as i32 - 128 + zp - *q as i32).abs() <= 1, "u {u} q {q}");
        }
    }

    #[test]
    fn outputs_dequantize_in_every_type_and_layout() {
        let (v, shape) = image();
        for layout in [Layout::Nchw, Layout::Nhwc] {
            // write v in `layout` as float32, float16 and int8 bytes
            let mut placed = [0f32; 24];
            scatter(&v, shape, layout, |i, x| placed[i] = x);
            let f32b: Vec<u8> = placed.iter().flat_map(|x| x.to_le_bytes()).collect();
            let f16b: Vec<u8> = placed
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect();
            let (scale, zp) = (1.0 / 120.0, 3);
            let i8b: Vec<u8> = placed
                .iter()
                .map(|x| ((x / scale).round() as i32 + zp).clamp(-128, 127) as i8 as u8)
                .collect();
            for (raw, ty, tol) in [
                (&f32b, OutputType::F32, 0.0),
                (&f16b, OutputType::F16, 1e-3),
                (&i8b, OutputType::I8 { scale, zp }, scale / 2.0 + 1e-6),
            ] {
                let mut out = vec![0f32; 24];
                output_to_chw(raw, ty, layout, shape, &mut out).unwrap();
                for (a, b) in out.iter().zip(&v) {
                    assert!((a - b).abs() <= tol, "{ty:?} {layout:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn short_output_is_an_error() {
        let mut out = vec![0f32; 24];
        let e = output_to_chw(
            &[0u8; 10],
            OutputType::F16,
            Layout::Nchw,
            (3, 2, 4),
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs 48"), "{e}");
    }

    #[test]
    fn layouts_read_their_dims() {
        assert_eq!(Layout::Nhwc.chw(&[1, 28, 28, 1]).unwrap(), (1, 28, 28));
        assert_eq!(Layout::Nchw.chw(&[1, 3, 64, 64]).unwrap(), (3, 64, 64));
        assert!(Layout::Nchw.chw(&[2, 3, 64, 64]).is_err());
    }
}
