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
pub mod backend;
pub mod bench;
pub mod board;
pub mod cli;
pub mod cores;
pub mod draw;
pub mod fsio;
pub mod idx;
pub mod imaging;
pub mod inputs;
pub mod latent;
pub mod limits;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod plot;
pub mod quantize;
pub mod signals;
pub mod tensor;
