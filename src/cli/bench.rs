//! `ign-edge bench`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{choice, BackendArgs};
use crate::app::bench::{regressions_against, BenchPlan, PipelineSettings};
use crate::bench::{self, Budget, Machine, Report};
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
    #[arg(long = "precision", value_parser = choice::<Precision>(&Precision::NAMES))]
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
    /// Pipeline suite: run each configuration again with every frame scored (the live loop's
    /// --anomaly), so that the table shows what scoring costs.
    #[arg(long, requires = "pipeline")]
    pub anomaly: bool,
    /// Pin to these CPU cores: all, big (the fastest cores, e.g. RK3588's Cortex-A76 4-7),
    /// little, or a list such as 4-7.
    #[arg(long)]
    pub cores: Option<String>,
    /// Board profile whose defaults (precision, threads, cores) fill what is not given:
    /// rpi4, rpi5, rk3588, auto (from /proc/device-tree/model) or a board.toml.
    #[arg(long)]
    pub board: Option<String>,
}

impl BenchCmd {
    /// The plan this command line asks for.
    fn plan(&self) -> BenchPlan {
        BenchPlan {
            models: self.models.clone(),
            precisions: self.precisions.clone(),
            threads: self.threads.clone(),
            steps: self.steps.clone(),
            batch: self.batch,
            budget: Budget {
                warmup: self.warmup,
                iterations: self.iterations,
                duration: self.duration.map(Duration::from_secs_f64),
                profile: self.profile,
            },
            backend: self.backend.clone().into(),
            pipeline: self.pipeline.then(|| PipelineSettings {
                frames: self.frames,
                source: self.source.clone(),
                sink: self.sink.clone(),
                anomaly: self.anomaly,
            }),
            peak: !self.no_peak,
            cores: self.cores.clone(),
            board: self.board.clone(),
        }
    }

    pub fn run(self) -> Result<()> {
        let mut plan = self.plan();
        plan.prepare()?;
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
        let report = plan.run(machine)?;
        self.write(&report)?;
        if let Some(b) = &self.baseline {
            let regs = regressions_against(&report, b, self.tolerance)?;
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

    /// Print the tables and write the files asked for.
    fn write(&self, report: &Report) -> Result<()> {
        let results = &report.results;
        if self.pipeline {
            print!("{}", bench::pipeline::table(&report.pipeline));
        } else {
            print!("{}", bench::table(results));
            #[cfg(feature = "rknn")]
            print!("{}", bench::rknn::npu_lines(results));
        }
        for r in results {
            print!("{}", bench::profile_table(r));
        }
        if let Some(c) = &self.csv {
            crate::fsio::atomic_write(c, &bench::csv(results)?)?;
            eprintln!("wrote {}", c.display());
        }
        if let Some(p) = &self.plot {
            crate::fsio::save_png(p, &bench::cdf_plot(results))?;
            eprintln!("wrote {}", p.display());
        }
        if let Some(j) = &self.json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(report)?.as_bytes())?;
            eprintln!("wrote {}", j.display());
        }
        Ok(())
    }
}
