//! The compute kernels of training, as candle ops with their own backward passes: the
//! convolutions ([`conv_kernels`] on slices, [`fastconv`] as candle ops) and the fused norm,
//! bias and activation ops ([`fused`], [`fused_bn`]). Which of them a model runs is its own
//! explicit choice ([`Kernels`]); candle's ops are the reference they are tested against.

pub mod conv_kernels;
pub mod fastconv;
pub mod fused;
pub mod fused_bn;

use candle_core::{CpuStorage, Layout, Result};

/// Which convolutions a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvKernels {
    /// The im2col/col2im + gemm kernels of [`fastconv`].
    #[default]
    Fast,
    /// candle's own `conv2d` and `conv_transpose2d` ([`fastconv::reference`]).
    Candle,
}

named_choices!(ConvKernels { Fast = "fast", Candle = "candle" });

/// How a model runs its norms, biases and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NormKernels {
    /// One fused op per block ([`fused`], [`fused_bn`]).
    #[default]
    Fused,
    /// candle's elementwise ops and `BatchNorm`.
    Candle,
}

named_choices!(NormKernels { Fused = "fused", Candle = "candle" });

/// The kernels a model runs, each chosen on its own (default: the fast and fused ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kernels {
    pub conv: ConvKernels,
    pub norm: NormKernels,
}

/// The values of a contiguous CPU tensor (the custom ops of this crate make their inputs so).
pub(crate) fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("custom op: inputs must be contiguous"),
    }
}
