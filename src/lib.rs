//! # ign-edge
//!
//! Run Idempotent Generative Networks (Shocher et al., ICLR 2024) on small boards: load an
//! ONNX model with tract, project images, noise or camera frames onto the learned manifold.
//!
//! ```no_run
//! use ign_edge::{backend::{Backend, cpu::CpuBackend}, model::Model, inputs};
//! let model = Model::load("models/ign-mnist.onnx".as_ref())?;
//! let mut cpu = CpuBackend::new(&model, None)?;
//! let z = inputs::noise_batch(&model.info, 4, 0);
//! let steps = cpu.project(&z, 2)?; // [f(z), f(f(z))]
//! # anyhow::Ok(())
//! ```
pub mod app;
pub mod backend;
pub mod bench;
pub mod board;
pub mod cli;
pub mod cores;
pub mod events;
pub mod latent;
pub mod pipeline;
pub mod signals;
pub mod web;

// The model format, passes, CPU backend and imaging live in `ign-core`, shared with the
// trainer; re-exported so that `ign_edge::model` and friends stay where users found them.
pub use ign_core::{
    anomaly, draw, fsio, idx, imaging, inputs, limits, model, notices, npy, plot, quantize, tensor,
};
