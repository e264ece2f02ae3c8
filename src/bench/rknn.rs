//! `bench --backend rknn`: end-to-end latency of the NPU backend (input conversion, run,
//! output read and dequantization) next to rknn_benchmark's run-only time and FPS.

use anyhow::Result;
use std::time::Instant;

use super::{measure, Budget, ModelCase, ModelResult, NpuFigures};
use crate::backend::rknn::{RknnBackend, RknnOptions};

/// Measure one `.rknn` model on the NPU.
pub fn run_case(case: &ModelCase, budget: &Budget, opts: &RknnOptions) -> Result<ModelResult> {
    let t0 = Instant::now();
    let mut backend = RknnBackend::open(&case.model, opts)?;
    let load = t0.elapsed();
    let info = backend.info().clone();
    // the NPU figures are means over every call (first, warm-up and timed)
    let mut r = measure(&mut backend, &info, load, case, budget)?;
    let s = backend.stats();
    let runs = s.runs.max(1) as f64;
    let run_only_us = s.run_s * 1e6 / runs;
    r.threads = s.per_context.len();
    r.npu = Some(NpuFigures {
        contexts: s.per_context.len(),
        run_only_us,
        run_only_fps: 1e6 / run_only_us.max(1e-9),
        runtime_perf_us: (s.perf_runs > 0).then(|| s.perf_run_us as f64 / s.perf_runs as f64),
        io_us: s.io_s * 1e6 / runs,
    });
    Ok(r)
}

/// One line per NPU result: rknn_benchmark's figures beside the end-to-end ones.
pub fn npu_lines(results: &[ModelResult]) -> String {
    let mut out = String::new();
    for r in results {
        if let Some(n) = &r.npu {
            out += &format!(
                "npu {} ({} context(s)): run-only {:.1} us ({:.1} FPS per context, as rknn_benchmark), runtime's own {}, input+output {:.1} us; end-to-end p50 {:.1} us, {:.1} images/s\n",
                r.model,
                n.contexts,
                n.run_only_us,
                n.run_only_fps,
                n.runtime_perf_us
                    .map(|p| format!("{p:.1} us"))
                    .unwrap_or_else(|| "n/a".into()),
                n.io_us,
                r.latency.p50_us,
                r.images_per_s
            );
        }
    }
    out
}
