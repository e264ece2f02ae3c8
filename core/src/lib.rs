//! # ign-core
//!
//! What the `ign-edge` runtime and the `ign-train` trainer share, and nothing of a device:
//! the IGN model file ([`model`]: metadata, the family of variants, loading with tract),
//! ONNX writing and the named graph passes ([`quantize`]: deconvolution rewrite, dense,
//! LayerNorm fusion, fp16, int8), the tract CPU [`backend`], image batches ([`tensor`]),
//! images ([`imaging`], [`preprocess`]), readers that check before they allocate ([`idx`],
//! [`npy`], [`limits`]), inputs ([`inputs`]), safe file writes ([`fsio`]), latency
//! statistics ([`stats`]) and small plots ([`plot`], [`draw`]).
//!
//! The layers and the direction of dependencies: `docs/ARCHITECTURE.md`.
//!
//! ```no_run
//! use ign_core::{backend::{Backend, cpu::CpuBackend}, model::Model, inputs};
//! let model = Model::load("models/ign-mnist.onnx".as_ref())?;
//! let mut cpu = CpuBackend::new(&model, None)?;
//! let z = inputs::noise_batch(&model.info, 4, 0);
//! let steps = cpu.project(&z, 2)?; // [f(z), f(f(z))]
//! # anyhow::Ok(())
//! ```
pub mod anomaly;
pub mod backend;
pub mod draw;
pub mod fsio;
pub mod idx;
pub mod imaging;
pub mod inputs;
pub mod limits;
pub mod model;
pub mod notices;
pub mod npy;
pub mod plot;
pub mod preprocess;
pub mod quantize;
pub mod stats;
pub mod tensor;
