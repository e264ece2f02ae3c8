//! Backends run `f` on a batch of images. One trait, one file per implementation, chosen by
//! name ([`select`]): `cpu` (tract, fp32/fp16/int8, in `ign_core`) and `rknn` (the Rockchip
//! NPU, feature `rknn`).

pub use ign_core::backend::{
    cpu, own_ops, packed_im2col, projector, quantize_linear, Backend, Projector,
};

pub mod rknn;
pub mod select;
