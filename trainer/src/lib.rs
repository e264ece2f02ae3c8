//! # ign-train
//!
//! Train an Idempotent Generative Network (Shocher et al., ICLR 2024) on CPU with candle,
//! evaluate it, and export the ONNX file that `ign-edge` runs.
pub mod bnstats;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod corrupt;
pub mod data;
pub mod ema;
pub mod eval;
pub mod export;
pub mod fastconv;
pub mod fonts;
pub mod fused;
pub mod fused_bn;
pub mod loss;
pub mod model;
pub mod noise;
pub mod ood;
pub mod optim;
pub mod printed;
pub mod recipe;
pub mod samples;
pub mod train;

/// Use `n` CPU threads for the kernels (default: all cores). Call before any tensor work.
///
/// The heavy work (convolutions, the fused norm ops, matrix products) runs on rayon's pool of
/// `n` threads. candle's own pool for elementwise ops is kept to the calling thread (unless
/// `CANDLE_NUM_THREADS` is set): its workers spin while they wait, and beside rayon's threads
/// on a small board that spinning took a third of the cores (a BatchNorm width-32 step 0.12 s
/// with it, 0.095 s without, 2 threads on a 2-core host).
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
