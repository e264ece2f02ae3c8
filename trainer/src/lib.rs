//! # ign-train
//!
//! Train an Idempotent Generative Network (Shocher et al., ICLR 2024) on CPU with candle,
//! evaluate it, and export the ONNX file that `ign-edge` runs.
pub mod bnstats;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod corrupt;
pub mod data;
pub mod eval;
pub mod export;
pub mod fastconv;
pub mod fused;
pub mod loss;
pub mod model;
pub mod noise;
pub mod ood;
pub mod optim;
pub mod printed;
pub mod samples;
pub mod train;

/// Use `n` CPU threads for candle's kernels (default: all cores). Call before any tensor work.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
