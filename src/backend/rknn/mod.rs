//! The Rockchip NPU (RK3588) backend, `--backend rknn`.
//!
//! The runtime library `librknnrt.so` is loaded when the backend starts ([`api`], feature
//! `rknn`), so the default build and CI need nothing of Rockchip's. Models are `.rknn` files
//! compiled on a host by rknn-toolkit2 from the ONNX model ([`prep`]: the calibration set and the
//! conversion script, `ign-edge rknn-prep`). [`convert`] (layouts, input quantization,
//! output dequantization) and [`cores`] (`--npu-cores`) build everywhere.

#[cfg(feature = "rknn")]
pub mod api;
#[cfg(feature = "rknn")]
mod backend;
pub mod convert;
pub mod cores;
pub mod prep;

#[cfg(feature = "rknn")]
pub use backend::{InputMode, IoSpec, NpuStats, NpuTiming, RknnBackend, RknnOptions};

/// Whether this build has the NPU backend (cargo feature `rknn`).
pub const BUILT: bool = cfg!(feature = "rknn");
