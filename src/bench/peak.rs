//! The machine's practical peak: GFLOP/s of a large f32 matrix product through tract's own
//! kernels (the same ones the models use), so that a model's GFLOP/s can be read as a fraction
//! of what this CPU reaches.

use anyhow::{Context, Result};
use std::time::Instant;
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use crate::model::writer::{Dim, OnnxWriter};

/// GFLOP/s of an `n×n` by `n×n` f32 product in tract with `threads` threads (median of 7).
pub fn matmul_peak_gflops(threads: usize, n: usize) -> Result<f64> {
    let mut w = OnnxWriter::new("peak");
    w.input_f32("a", &[Dim::Fixed(n), Dim::Fixed(n)]);
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) / 13.0).collect();
    let bn = w.initializer_f32("b", &[n, n], &b);
    w.node("MatMul", &["a", &bn], &["c"], vec![]);
    w.output_f32("c", &[Dim::Fixed(n), Dim::Fixed(n)]);
    let bytes = w.to_bytes();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .context("building the peak-FLOPs probe")?;
    let a = Tensor::from_shape(&[n, n], &b)?;
    let exec = if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    };
    let mut state = plan.spawn()?;
    let mut times = Vec::new();
    for i in 0..9 {
        let t = Instant::now();
        multithread_tract_scope(exec.clone(), || state.run(tvec!(a.clone().into())))?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let median_s = super::stats::Latency::from_secs(&times).p50_us / 1e6;
    let flops = 2.0 * (n as f64).powi(3);
    Ok(flops / median_s / 1e9)
}
