//! `ign-edge bench`: latency of models on this machine, with a stable JSON report.
//!
//! JSON schema (version 1), stable for scripts:
//! ```text
//! { "schema": 1, "tool": "ign-edge", "version": "...",
//!   "machine": { "arch", "cpu", "cores", "features": [..], "kernel", "board" },
//!   "results": [ { "model", "model_file", "precision", "backend", "threads", "steps", "batch",
//!                  "load_ms", "first_inference_ms", "load_to_first_output_ms",
//!                  "latency": { "n", "p50_us", "p90_us", "p99_us", "max_us", "mean_us", "std_us" },
//!                  "images_per_s", "flops", "gflops_per_s", "peak_gflops_per_s",
//!                  "fraction_of_peak", "peak_rss_bytes", "profile": [ { "op", "nodes", "total_us" } ] | null } ] }
//! ```
//! `peak_gflops_per_s` is what a 512×512 f32 matrix product reaches in tract with the same
//! thread count on this machine ([`peak::matmul_peak_gflops`]).
//! `latency` is the time of one call that applies f `steps` times to a batch of `batch`.

pub mod machine;
pub mod peak;
pub mod pipeline;
#[cfg(feature = "rknn")]
pub mod rknn;
pub use ign_core::stats;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{cpu::CpuBackend, Backend};
use crate::inputs::noise_batch;
use crate::model::{Model, Precision};
pub use machine::Machine;
pub use stats::Latency;

/// One configuration to measure.
#[derive(Clone, Debug)]
pub struct ModelCase {
    pub model: PathBuf,
    /// Run the model in this precision (its variant file, or converted on load); `None`: as is.
    pub precision: Option<Precision>,
    pub threads: usize,
    pub steps: usize,
    pub batch: usize,
}

/// How long to measure each configuration, and what else to record.
#[derive(Clone, Debug)]
pub struct Budget {
    pub warmup: usize,
    pub iterations: usize,
    /// When set, run for this long instead of a fixed count.
    pub duration: Option<Duration>,
    /// Record the per-operator breakdown.
    pub profile: bool,
}

/// The figures of one configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelResult {
    pub model: String,
    pub model_file: String,
    pub precision: Precision,
    pub backend: String,
    /// Threads asked for.
    pub threads: usize,
    /// Threads the plan ran with: 1 where one thread measured faster at load (absent in files
    /// from before it was recorded).
    #[serde(default)]
    pub threads_used: Option<usize>,
    pub steps: usize,
    pub batch: usize,
    pub load_ms: f64,
    pub first_inference_ms: f64,
    pub load_to_first_output_ms: f64,
    pub latency: Latency,
    pub images_per_s: f64,
    /// FLOPs of one timed call (batch × steps × FLOPs of f).
    pub flops: u64,
    pub gflops_per_s: f64,
    #[serde(default)]
    pub peak_gflops_per_s: Option<f64>,
    #[serde(default)]
    pub fraction_of_peak: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Per-operator time of one call, with `--profile`.
    #[serde(default)]
    pub profile: Option<Vec<crate::backend::cpu::OpTime>>,
    /// Every node's time of one call, largest first, with `--profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_nodes: Option<Vec<crate::backend::cpu::NodeTime>>,
    /// The NPU's own figures, for `--backend rknn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npu: Option<NpuFigures>,
    /// The raw samples in microseconds (for plots; not in the JSON).
    #[serde(skip)]
    pub samples_us: Vec<f64>,
}

/// What the NPU backend measures beside the end-to-end latency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NpuFigures {
    /// Contexts (NPU cores) used.
    pub contexts: usize,
    /// Mean wall time of `rknn_run` alone, as rknn_benchmark times it.
    pub run_only_us: f64,
    /// `1e6 / run_only_us`: rknn_benchmark's FPS of one context.
    pub run_only_fps: f64,
    /// The runtime's own mean run time (RKNN_QUERY_PERF_RUN), when it reports one.
    pub runtime_perf_us: Option<f64>,
    /// Mean of input conversion + inputs_set + outputs_get + dequantization per application.
    pub io_us: f64,
}

/// A whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub tool: String,
    pub version: String,
    pub machine: Machine,
    pub results: Vec<ModelResult>,
    /// The pipeline suite (`--pipeline`): one live-loop run per configuration.
    #[serde(default)]
    pub pipeline: Vec<pipeline::PipelineResult>,
}

/// Measure one configuration.
pub fn run_case(case: &ModelCase, budget: &Budget) -> Result<ModelResult> {
    let t0 = Instant::now();
    let model = Model::load(&case.model)?;
    let model = match case.precision {
        Some(p) if p != model.info.precision => crate::quantize::in_precision(model, p)?,
        _ => model,
    };
    let mut backend = CpuBackend::new(&model, Some(case.threads))?;
    backend.prepare(case.batch)?;
    let load = t0.elapsed();
    let mut r = measure(&mut backend, &model.info, load, case, budget)?;
    r.threads_used = Some(backend.threads_for(case.batch));
    if budget.profile {
        let x = noise_batch(&model.info, case.batch, 1);
        let (ops, nodes) = backend.profile_nodes(&x, 20)?;
        (r.profile, r.profile_nodes) = (Some(ops), Some(nodes));
    }
    Ok(r)
}

/// Time `backend` (loaded in `load`) on noise batches: first call, warm-up, timed calls.
pub fn measure(
    backend: &mut dyn Backend,
    info: &crate::model::ModelInfo,
    load: Duration,
    case: &ModelCase,
    budget: &Budget,
) -> Result<ModelResult> {
    let x = noise_batch(info, case.batch, 1);
    let t1 = Instant::now();
    backend.project(&x, case.steps)?;
    let first = t1.elapsed();
    for _ in 0..budget.warmup {
        backend.project(&x, case.steps)?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        backend.project(&x, case.steps)?;
        samples.push(t.elapsed().as_secs_f64());
        let done = match budget.duration {
            Some(d) => start.elapsed() >= d && samples.len() >= 3,
            None => samples.len() >= budget.iterations.max(1),
        };
        if done {
            break;
        }
    }
    let latency = Latency::from_secs(&samples);
    let flops = info.flops * (case.batch * case.steps) as u64;
    let p50_s = latency.p50_us / 1e6;
    Ok(ModelResult {
        model: info
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        model_file: info.path.display().to_string(),
        precision: info.precision,
        backend: backend.name(),
        threads: case.threads,
        threads_used: None,
        steps: case.steps,
        batch: case.batch,
        load_ms: load.as_secs_f64() * 1e3,
        first_inference_ms: first.as_secs_f64() * 1e3,
        load_to_first_output_ms: (load + first).as_secs_f64() * 1e3,
        images_per_s: case.batch as f64 / p50_s,
        gflops_per_s: flops as f64 / p50_s / 1e9,
        latency,
        flops,
        peak_gflops_per_s: None,
        fraction_of_peak: None,
        peak_rss_bytes: machine::peak_rss_bytes(),
        profile: None,
        profile_nodes: None,
        npu: None,
        samples_us: samples.iter().map(|s| s * 1e6).collect(),
    })
}

/// One row of [`csv`]: a configuration's figures, flat.
#[derive(serde::Serialize)]
struct CsvRow<'a> {
    model: &'a str,
    precision: crate::model::Precision,
    backend: &'a str,
    threads: usize,
    steps: usize,
    batch: usize,
    load_ms: f64,
    first_inference_ms: f64,
    load_to_first_output_ms: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    mean_us: f64,
    std_us: f64,
    images_per_s: f64,
    flops: u64,
    gflops_per_s: f64,
    fraction_of_peak: Option<f64>,
    peak_rss_bytes: Option<u64>,
}

/// `x` to `d` decimals, so that the CSV shows what was measured and not float noise.
fn round(x: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (x * m).round() / m
}

/// The results as CSV (one row per configuration, a header; fields quoted where needed).
pub fn csv(results: &[ModelResult]) -> anyhow::Result<Vec<u8>> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    for r in results {
        let l = &r.latency;
        w.serialize(CsvRow {
            model: &r.model,
            precision: r.precision,
            backend: &r.backend,
            threads: r.threads,
            steps: r.steps,
            batch: r.batch,
            load_ms: round(r.load_ms, 3),
            first_inference_ms: round(r.first_inference_ms, 3),
            load_to_first_output_ms: round(r.load_to_first_output_ms, 3),
            p50_us: round(l.p50_us, 1),
            p90_us: round(l.p90_us, 1),
            p99_us: round(l.p99_us, 1),
            max_us: round(l.max_us, 1),
            mean_us: round(l.mean_us, 1),
            std_us: round(l.std_us, 1),
            images_per_s: round(r.images_per_s, 1),
            flops: r.flops,
            gflops_per_s: round(r.gflops_per_s, 3),
            fraction_of_peak: r.fraction_of_peak.map(|f| round(f, 4)),
            peak_rss_bytes: r.peak_rss_bytes,
        })?;
    }
    Ok(w.into_inner()?)
}

/// A latency CDF per configuration (x: microseconds, y: fraction of runs).
pub fn cdf_plot(results: &[ModelResult]) -> image::RgbImage {
    let series: Vec<crate::plot::Series> = results
        .iter()
        .map(|r| {
            let mut v = r.samples_us.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let n = v.len().max(1) as f64;
            crate::plot::Series {
                name: format!(
                    "{} {} t{} k{}",
                    r.model.trim_end_matches(".onnx"),
                    r.precision,
                    r.threads,
                    r.steps
                ),
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| (x, (i + 1) as f64 / n))
                    .collect(),
            }
        })
        .collect();
    crate::plot::line_plot(
        "latency CDF (fraction of runs at or below)",
        "microseconds per call",
        &series,
        720,
        420,
    )
}

/// Nodes the profile table lists (the JSON has them all).
const PROFILE_NODES: usize = 12;

/// The `--profile` table of `r`: each operator's share and rate, then the slowest nodes.
pub fn profile_table(r: &ModelResult) -> String {
    let Some(p) = &r.profile else {
        return String::new();
    };
    let total: f64 = p.iter().map(|o| o.total_us).sum();
    let mut s = format!(
        "profile of {} {} threads={} (per call, {:.1} us in operators)\n",
        r.model, r.precision, r.threads, total
    );
    // one row: a name column, µs, the share of the total, GFLOP/s
    let row = |name: String, us: f64, gflops: Option<f64>| {
        let rate = gflops.map_or_else(|| "-".to_string(), |g| format!("{g:.1}"));
        format!(
            "  {name} {us:>9.1} us {:>5.1}% {rate:>8} GFLOP/s\n",
            100.0 * us / total.max(1e-9)
        )
    };
    for o in p {
        s += &row(
            format!("{:<28} {:>3} nodes", o.op, o.nodes),
            o.total_us,
            o.gflops(),
        );
    }
    if let Some(nodes) = &r.profile_nodes {
        s += &format!("  the {} slowest nodes:\n", PROFILE_NODES.min(nodes.len()));
        for n in nodes.iter().take(PROFILE_NODES) {
            s += &row(format!("{:<48} {:<16}", n.node, n.op), n.us, n.gflops());
        }
    }
    s
}

/// The results as an aligned text table.
pub fn table(results: &[ModelResult]) -> String {
    let mut s = format!(
        "{:<22} {:>5} {:>3} {:>2} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9} {:>6}\n",
        "model",
        "prec",
        "thr",
        "k",
        "bat",
        "load ms",
        "1st ms",
        "p50 us",
        "p90 us",
        "p99 us",
        "mean±std",
        "img/s",
        "GFLOP/s",
        "%peak"
    );
    let mut fell_back = false;
    for r in results {
        let l = &r.latency;
        // "2>1": two threads asked, one used (it measured faster at load).
        let thr = match r.threads_used {
            Some(u) if u != r.threads => {
                fell_back = true;
                format!("{}>{u}", r.threads)
            }
            _ => r.threads.to_string(),
        };
        s += &format!(
            "{:<22} {:>5} {:>3} {:>2} {:>3} {:>9.1} {:>9.2} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>8.0} {:>9.2} {:>6}\n",
            r.model,
            r.precision.as_str(),
            thr,
            r.steps,
            r.batch,
            r.load_ms,
            r.first_inference_ms,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            format!("{:.0}±{:.0}", l.mean_us, l.std_us),
            r.images_per_s,
            r.gflops_per_s,
            r.fraction_of_peak
                .map(|f| format!("{:.1}", f * 100.0))
                .unwrap_or_else(|| "-".into())
        );
    }
    if fell_back {
        s += "thr N>1: N threads asked, 1 used: one thread measured faster when the model loaded\n";
    }
    s
}

/// Compare with a baseline report: the regressions of p50 beyond `tolerance` (0.1 = 10%).
pub fn regressions(current: &Report, baseline: &Report, tolerance: f64) -> Vec<String> {
    let mut out = Vec::new();
    for r in &current.results {
        let Some(b) = baseline.results.iter().find(|b| {
            b.model == r.model
                && b.precision == r.precision
                && b.threads == r.threads
                && b.steps == r.steps
                && b.batch == r.batch
        }) else {
            continue;
        };
        let ratio = r.latency.p50_us / b.latency.p50_us;
        if ratio > 1.0 + tolerance {
            out.push(format!(
                "{} {} threads={} k={} batch={}: p50 {:.1} us vs baseline {:.1} us (+{:.0}%)",
                r.model,
                r.precision,
                r.threads,
                r.steps,
                r.batch,
                r.latency.p50_us,
                b.latency.p50_us,
                (ratio - 1.0) * 100.0
            ));
        }
    }
    out
}

/// Read a report written with `--json`.
pub fn read_report(path: &Path) -> Result<Report> {
    let text = crate::limits::read_text_file(path)
        .with_context(|| format!("{}: cannot read baseline report", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not an ign-edge bench JSON report (schema 1)",
            path.display()
        )
    })
}
