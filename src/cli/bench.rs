//! `ign-edge bench`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::select::{BackendArgs, BackendKind};
use crate::bench::{self, Budget, Machine, ModelCase, ModelResult, Report};
use crate::model::Precision;

/// Measure model latency on this machine, and compare with an earlier run.
///
/// Load time, first inference, then timed runs (p50/p90/p99/max, mean±std, images/s, GFLOP/s
/// and its fraction of this CPU's matmul peak, peak RSS) for every model × precision ×
/// threads × steps given.
///
/// Examples:
///   ign-edge bench
///   ign-edge bench --model models/ign-mnist.onnx --threads 1 --threads 4 --json bench.json
///   ign-edge bench --baseline bench.json --tolerance 0.1
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BenchCmd {
    /// Models (default: the shipped models under models/); .rknn models run on the NPU.
    #[arg(long = "model", short = 'm')]
    pub models: Vec<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Precisions (default: each model's own, plus its int8 variant file and, on CPUs with
    /// fp16 arithmetic, its fp16 one, when they exist beside it). A precision without a
    /// variant file is converted on load (int8 then calibrates on noise).
    #[arg(long = "precision", value_enum)]
    pub precisions: Vec<Precision>,
    /// Thread counts (default: 1 and all cores).
    #[arg(long = "threads")]
    pub threads: Vec<usize>,
    /// Applications of f per call (sweep with several --steps).
    #[arg(long = "steps", short = 'k')]
    pub steps: Vec<usize>,
    /// Images per call.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed runs per configuration.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Run each configuration for this many seconds instead of --iterations.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Write the report as JSON (stable schema, see the README).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compare with an earlier JSON report; exit 2 when a p50 regresses beyond --tolerance.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Allowed p50 regression against the baseline (0.1 = 10%).
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
    /// Write the results as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw a latency CDF per configuration into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the per-operator time breakdown of each configuration (from tract's plan).
    #[arg(long)]
    pub profile: bool,
    /// Skip measuring the machine's matmul peak (saves about a second per thread count).
    #[arg(long)]
    pub no_peak: bool,
    /// Run the pipeline suite instead: the live loop (--source, --sink) for --frames frames
    /// per configuration, with fps, per-stage latency, end-to-end p50/p99 and drops.
    #[arg(long)]
    pub pipeline: bool,
    /// Pipeline suite: frames per configuration.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
    /// Pipeline suite: frame source (the test scene at full speed by default).
    #[arg(long, default_value = "test")]
    pub source: String,
    /// Pipeline suite: sink.
    #[arg(long, default_value = "null")]
    pub sink: String,
    /// Pin to these CPU cores: all, big (the fastest cores, e.g. RK3588's Cortex-A76 4-7),
    /// little, or a list such as 4-7.
    #[arg(long)]
    pub cores: Option<String>,
    /// Board profile whose defaults (precision, threads, cores) fill what is not given:
    /// rpi4, rpi5, rk3588, auto (from /proc/device-tree/model) or a board.toml.
    #[arg(long)]
    pub board: Option<String>,
}

fn default_models() -> Vec<PathBuf> {
    ["models/ign-mnist.onnx", "models/ign-fashion.onnx"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

impl BenchCmd {
    pub fn run(mut self) -> Result<()> {
        if let Some(name) = &self.board {
            let b = crate::board::load(name)?;
            eprintln!("board {}: {}", b.name, b.description);
            if self.threads.is_empty() {
                self.threads.push(b.defaults.threads);
            }
            if self.precisions.is_empty() {
                self.precisions.push(Precision::Fp32);
                if b.defaults.precision != Precision::Fp32 {
                    self.precisions.push(b.defaults.precision);
                }
            }
            self.cores.get_or_insert(b.defaults.cores.clone());
        }
        let models = if self.models.is_empty() {
            default_models()
        } else {
            self.models.clone()
        };
        if models.is_empty() {
            bail!("no model to benchmark: pass --model FILE.onnx (models/ has none here)");
        }
        let precisions_of = |m: &PathBuf| -> Vec<Option<Precision>> {
            if !self.precisions.is_empty() {
                return self.precisions.iter().map(|&p| Some(p)).collect();
            }
            let mut v = vec![None];
            let mut natives = vec![Precision::Int8];
            if crate::backend::cpu::cpu_has_fp16() {
                natives.push(Precision::Fp16);
            }
            for p in natives {
                if crate::quantize::variant_path(m, p).exists() {
                    v.push(Some(p));
                }
            }
            v
        };
        let cores = crate::backend::cpu::available_cores();
        let mut threads = if self.threads.is_empty() {
            vec![1, cores]
        } else {
            self.threads.clone()
        };
        threads.dedup();
        let steps = if self.steps.is_empty() {
            vec![1]
        } else {
            self.steps.clone()
        };
        let budget = Budget {
            warmup: self.warmup,
            iterations: self.iterations,
            duration: self.duration.map(Duration::from_secs_f64),
            profile: self.profile,
        };
        if let Some(spec) = &self.cores {
            let cores = crate::cores::pin_spec(spec)?;
            eprintln!("pinned to cores {cores:?}");
        }
        let machine = Machine::detect();
        if let Some(b) = machine.board.as_deref().and_then(crate::board::for_model) {
            if self.board.is_none() {
                eprintln!(
                    "this board fits the {0} profile: add --board {0} for its defaults",
                    b.name
                );
            }
        }
        eprintln!(
            "machine: {} ({}, {} cores, {}){}",
            machine.cpu,
            machine.arch,
            machine.cores,
            machine.features.join(" "),
            machine
                .board
                .as_ref()
                .map(|b| format!(", board {b}"))
                .unwrap_or_default()
        );
        let mut results = Vec::new();
        let mut pipeline = Vec::new();
        for m in models.iter().filter(|_| self.pipeline) {
            for p in precisions_of(m) {
                for &t in &threads {
                    for &k in &steps {
                        pipeline.push(bench::pipeline::run_pipeline(
                            &bench::pipeline::PipelineCase {
                                model: m.clone(),
                                precision: p,
                                threads: t,
                                steps: k,
                                frames: self.frames,
                                source: self.source.clone(),
                                sink: self.sink.clone(),
                            },
                        )?);
                    }
                }
            }
        }
        let on_npu = |m: &PathBuf| {
            self.backend.backend == BackendKind::Rknn || crate::backend::select::is_rknn(m)
        };
        if self.pipeline && models.iter().any(on_npu) {
            bail!("the pipeline suite runs on the CPU; for the NPU, time the live loop with `ign-edge run --backend rknn --sink null --frames 300 --json run.json`");
        }
        for m in models.iter().filter(|_| !self.pipeline) {
            if on_npu(m) {
                for &k in &steps {
                    let case = ModelCase {
                        model: m.clone(),
                        precision: None,
                        threads: 1,
                        steps: k,
                        batch: self.batch,
                    };
                    results.push(self.npu_case(&case, &budget)?);
                }
                continue;
            }
            for p in precisions_of(m) {
                for &t in &threads {
                    for &k in &steps {
                        let case = ModelCase {
                            model: m.clone(),
                            precision: p,
                            threads: t,
                            steps: k,
                            batch: self.batch,
                        };
                        results.push(bench::run_case(&case, &budget)?);
                    }
                }
            }
        }
        if !self.no_peak && !self.pipeline {
            let mut peaks = std::collections::HashMap::new();
            for &t in &threads {
                peaks.insert(t, bench::peak::matmul_peak_gflops(t, 512)?);
            }
            for r in results.iter_mut().filter(|r| r.npu.is_none()) {
                let p = peaks[&r.threads];
                r.peak_gflops_per_s = Some(p);
                r.fraction_of_peak = Some(r.gflops_per_s / p);
            }
            let mut ps: Vec<_> = peaks.into_iter().collect();
            ps.sort_by_key(|p| p.0);
            for (t, p) in ps {
                eprintln!(
                    "peak: {p:.1} GFLOP/s for a 512x512 f32 matmul in tract with {t} thread(s)"
                );
            }
        }
        if self.pipeline {
            print!("{}", bench::pipeline::table(&pipeline));
        } else {
            print!("{}", bench::table(&results));
            #[cfg(feature = "rknn")]
            print!("{}", bench::rknn::npu_lines(&results));
        }
        for r in &results {
            print!("{}", bench::profile_table(r));
        }
        if let Some(c) = &self.csv {
            crate::fsio::atomic_write(c, bench::csv(&results).as_bytes())?;
            eprintln!("wrote {}", c.display());
        }
        if let Some(p) = &self.plot {
            crate::fsio::save_png(p, &bench::cdf_plot(&results))?;
            eprintln!("wrote {}", p.display());
        }
        let report = Report {
            schema: 1,
            tool: "ign-edge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            machine,
            results,
            pipeline,
        };
        if let Some(j) = &self.json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
            eprintln!("wrote {}", j.display());
        }
        if let Some(b) = &self.baseline {
            let base = bench::read_report(b)?;
            let regs = bench::regressions(&report, &base, self.tolerance);
            if !regs.is_empty() {
                for r in &regs {
                    eprintln!("regression: {r}");
                }
                bail!(
                    "{} configuration(s) slower than {} by more than {:.0}%",
                    regs.len(),
                    b.display(),
                    self.tolerance * 100.0
                );
            }
            eprintln!(
                "no p50 regression beyond {:.0}% against {}",
                self.tolerance * 100.0,
                b.display()
            );
        }
        Ok(())
    }

    #[cfg(feature = "rknn")]
    fn npu_case(&self, case: &ModelCase, budget: &Budget) -> Result<ModelResult> {
        bench::rknn::run_case(
            case,
            budget,
            &crate::backend::rknn::RknnOptions {
                lib: self.backend.rknn_lib.clone(),
                cores: self.backend.npu_cores.clone(),
                pass_through: self.backend.npu_pass_through,
            },
        )
    }

    #[cfg(not(feature = "rknn"))]
    fn npu_case(&self, case: &ModelCase, _budget: &Budget) -> Result<ModelResult> {
        bail!(
            "{}: this ign-edge was built without the NPU backend; build it with `cargo build --release --features rknn`",
            case.model.display()
        )
    }
}
