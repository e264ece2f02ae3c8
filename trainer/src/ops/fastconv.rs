//! Fast CPU convolutions for training, as candle ops: [`conv2d`] and [`conv_transpose2d`] run
//! the kernels of [`crate::ops::conv_kernels`] forward and backward; [`reference`](mod@reference) holds
//! candle's own, which they are checked against and which `bench-step --conv candle` times.
//!
//! candle's CPU `conv_transpose2d` is a direct loop parallelised over output channels only,
//! and the input gradient of `conv2d` goes through it; an IGN step does 4 forward passes and
//! a backward pass of an encoder-decoder, so most of the step time was spent there.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};

use super::contiguous;
use super::conv_kernels::{
    bwd_data, bwd_weight, bwd_weight_from_cols, fwd, fwd_and_bwd_weight, fwd_keeping, Geom,
};

fn run2<F32Fn, F64Fn>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    f32fn: F32Fn,
    f64fn: F64Fn,
) -> Result<CpuStorage>
where
    F32Fn: FnOnce(&[f32], &[f32]) -> Vec<f32>,
    F64Fn: FnOnce(&[f64], &[f64]) -> Vec<f64>,
{
    match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok(CpuStorage::F32(f32fn(
            contiguous(s1, l1)?,
            contiguous(s2, l2)?,
        ))),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => Ok(CpuStorage::F64(f64fn(
            contiguous(s1, l1)?,
            contiguous(s2, l2)?,
        ))),
        _ => candle_core::bail!("fastconv: f32 or f64 inputs of one dtype"),
    }
}

/// One of the three kernels ([`fwd`], [`bwd_data`], [`bwd_weight`]) for one float type.
type Kernel<T> = fn(&[T], &[T], &Geom) -> Vec<T>;

/// Apply a kernel to two tensors (made contiguous) and wrap the result; the kernel reads the
/// tensors' storage in place.
fn apply_kernel(
    a: &Tensor,
    b: &Tensor,
    out_shape: (usize, usize, usize, usize),
    kernel: Kernel<f32>,
    kernel64: Kernel<f64>,
    g: &Geom,
) -> Result<Tensor> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let out = {
        let (sa, la) = a.storage_and_layout();
        let (sb, lb) = b.storage_and_layout();
        let (Storage::Cpu(ca), Storage::Cpu(cb)) = (&*sa, &*sb) else {
            candle_core::bail!("fastconv: CPU tensors only");
        };
        run2(
            ca,
            la,
            cb,
            lb,
            |x, y| kernel(x, y, g),
            |x, y| kernel64(x, y, g),
        )?
    };
    let dev = a.device();
    match out {
        CpuStorage::F32(v) => Tensor::from_vec(v, out_shape, dev),
        CpuStorage::F64(v) => Tensor::from_vec(v, out_shape, dev),
        _ => unreachable!("run2 returns f32 or f64"),
    }
}

/// `conv2d` (`transpose: false`) or `conv_transpose2d` (`transpose: true`) as one custom op:
/// both are the same three kernels on the geometry of the underlying convolution.
struct ConvOp {
    stride: usize,
    pad: usize,
    transpose: bool,
    /// For a convolution whose weight gets a gradient: the forward pass keeps its unfolded
    /// input here for the weight gradient.
    cols: Option<std::sync::Mutex<Option<CpuStorage>>>,
}

impl ConvOp {
    fn name(&self) -> &'static str {
        if self.transpose {
            "fast-conv-transpose2d"
        } else {
            "fast-conv2d"
        }
    }

    /// The convolution geometry; for a transposed convolution, that of its adjoint (from this
    /// op's output to its input).
    fn geom(&self, x: &[usize], w: &[usize]) -> Result<Geom> {
        let (&[b, ci, h, wd], &[w0, w1, k, k2]) = (x, w) else {
            candle_core::bail!("{}: expected 4-d input and kernel", self.name());
        };
        // conv weight [co, ci, k, k]; transposed-conv weight [ci, co, k, k]
        let (wci, co) = if self.transpose { (w0, w1) } else { (w1, w0) };
        if ci != wci || k != k2 {
            candle_core::bail!("{}: input {x:?} and kernel {w:?} do not match", self.name());
        }
        if !self.transpose {
            return Ok(Geom::conv(b, ci, h, wd, co, k, self.stride, self.pad));
        }
        let oh = (h - 1) * self.stride + k - 2 * self.pad;
        let ow = (wd - 1) * self.stride + k - 2 * self.pad;
        let g = Geom::conv(b, co, oh, ow, ci, k, self.stride, self.pad);
        if (g.oh, g.ow) != (h, wd) {
            candle_core::bail!(
                "{}: geometry {x:?} k{k} s{} p{} is not invertible",
                self.name(),
                self.stride,
                self.pad
            );
        }
        Ok(g)
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        ConvOp::name(self)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom(l1.dims(), l2.dims())?;
        if self.transpose {
            let out = run2(
                s1,
                l1,
                s2,
                l2,
                |x, w| bwd_data(x, w, &g),
                |x, w| bwd_data(x, w, &g),
            )?;
            Ok((out, Shape::from((g.batch, g.ci, g.h, g.w))))
        } else {
            let keep = self.cols.is_some();
            let (out, kept) = match (s1, s2) {
                (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                    let (y, c) =
                        fwd_keeping::<f32>(contiguous(s1, l1)?, contiguous(s2, l2)?, &g, keep);
                    (CpuStorage::F32(y), c.map(CpuStorage::F32))
                }
                (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                    let (y, c) =
                        fwd_keeping::<f64>(contiguous(s1, l1)?, contiguous(s2, l2)?, &g, keep);
                    (CpuStorage::F64(y), c.map(CpuStorage::F64))
                }
                _ => candle_core::bail!("fastconv: f32 or f64 inputs of one dtype"),
            };
            if let (Some(slot), Some(kept)) = (&self.cols, kept) {
                *slot.lock().unwrap() = Some(kept);
            }
            Ok((out, Shape::from((g.batch, g.co, g.oh, g.ow))))
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geom(x.dims(), w.dims())?;
        if self.transpose && x.track_op() && w.track_op() {
            return transpose_grads(x, w, grad, &g).map(|(dx, dw)| (Some(dx), Some(dw)));
        }
        // Only what something asks for: no weight gradient through the frozen copy (detached
        // weights), no input gradient for data, noise or the detached f(z).
        // a transposed convolution's input gradient is the forward convolution, and its weight
        // gradient takes the output gradient in the input's place
        let dx = if x.track_op() {
            let (shape, k32, k64): (_, Kernel<f32>, Kernel<f64>) = if self.transpose {
                ((g.batch, g.co, g.oh, g.ow), fwd, fwd)
            } else {
                ((g.batch, g.ci, g.h, g.w), bwd_data, bwd_data)
            };
            Some(apply_kernel(grad, w, shape, k32, k64, &g)?)
        } else {
            None
        };
        let kept = self.cols.as_ref().and_then(|c| c.lock().unwrap().take());
        let dw = match kept {
            _ if !w.track_op() => None,
            Some(cols) => Some(weight_grad_from_cols(&cols, grad, &g)?),
            None => {
                let (a, b) = if self.transpose { (grad, x) } else { (x, grad) };
                let shape = (g.co, g.ci, g.k, g.k);
                Some(apply_kernel(a, b, shape, bwd_weight, bwd_weight, &g)?)
            }
        };
        Ok((dx, dw))
    }
}

/// A convolution's weight gradient from its kept unfolded input and its output gradient.
fn weight_grad_from_cols(cols: &CpuStorage, grad: &Tensor, g: &Geom) -> Result<Tensor> {
    let grad = grad.contiguous()?;
    let (sg, lg) = grad.storage_and_layout();
    let Storage::Cpu(cg) = &*sg else {
        candle_core::bail!("fastconv: CPU tensors only");
    };
    let shape = (g.co, g.ci, g.k, g.k);
    let dev = grad.device();
    match cols {
        CpuStorage::F32(c) => {
            Tensor::from_vec(bwd_weight_from_cols(c, contiguous(cg, lg)?, g), shape, dev)
        }
        CpuStorage::F64(c) => {
            Tensor::from_vec(bwd_weight_from_cols(c, contiguous(cg, lg)?, g), shape, dev)
        }
        _ => candle_core::bail!("fastconv: f32 or f64"),
    }
}

/// Both gradients of a transposed convolution (input `x`, weight `w`) from its output
/// gradient, with one im2col.
fn transpose_grads(x: &Tensor, w: &Tensor, grad: &Tensor, g: &Geom) -> Result<(Tensor, Tensor)> {
    let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
    let (sx, sw, sg) = (
        x.storage_and_layout(),
        w.storage_and_layout(),
        grad.storage_and_layout(),
    );
    let (Storage::Cpu(cx), Storage::Cpu(cw), Storage::Cpu(cg)) = (&*sx.0, &*sw.0, &*sg.0) else {
        candle_core::bail!("fastconv: CPU tensors only");
    };
    let dev = x.device();
    let (dx_shape, dw_shape) = ((g.batch, g.co, g.oh, g.ow), (g.co, g.ci, g.k, g.k));
    macro_rules! run {
        ($t:ty) => {{
            let (dx, dw) = fwd_and_bwd_weight::<$t>(
                contiguous(cg, sg.1)?,
                contiguous(cw, sw.1)?,
                contiguous(cx, sx.1)?,
                g,
            );
            Ok((
                Tensor::from_vec(dx, dx_shape, dev)?,
                Tensor::from_vec(dw, dw_shape, dev)?,
            ))
        }};
    }
    match cx {
        CpuStorage::F32(_) => run!(f32),
        CpuStorage::F64(_) => run!(f64),
        _ => candle_core::bail!("fastconv: f32 or f64"),
    }
}

/// `conv2d(x, w)` (no bias) with the fast kernels (candle's on devices other than the CPU).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return reference::conv2d(x, w, stride, pad);
    }
    x.apply_op2(
        w,
        ConvOp {
            stride,
            pad,
            transpose: false,
            cols: w.track_op().then(Default::default),
        },
    )
}

/// `conv_transpose2d(x, w)` (no bias, no output padding) with the fast kernels (candle's on
/// devices other than the CPU).
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return reference::conv_transpose2d(x, w, stride, pad);
    }
    x.apply_op2(
        w,
        ConvOp {
            stride,
            pad,
            transpose: true,
            cols: None,
        },
    )
}

/// candle's own convolutions, with the same arguments as the fast ones.
pub mod reference {
    use candle_core::{Result, Tensor};

    /// candle's `conv2d(x, w)` (no bias).
    pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        x.conv2d(w, pad, stride, 1, 1)
    }

    /// candle's `conv_transpose2d(x, w)` (no bias, no output padding).
    pub fn conv_transpose2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        x.conv_transpose2d(w, pad, 0, stride, 1)
    }
}

/// `y + bias` with the bias broadcast over `[B, C, H, W]`.
pub fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// A candle `Conv2d` layer (its weight, bias, stride and padding) through [`conv2d`].
pub fn conv2d_layer(c: &candle_nn::Conv2d, x: &Tensor) -> Result<Tensor> {
    let cfg = c.config();
    add_bias(conv2d(x, c.weight(), cfg.stride, cfg.padding)?, c.bias())
}
