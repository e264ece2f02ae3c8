//! What `ign-edge bench` measures, as a plain plan: models × precisions × threads × steps,
//! filled from a board profile's defaults once, then swept into a [`Report`]; and the
//! regression gate against an earlier report.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

use crate::backend::select::{is_rknn, BackendKind, BackendOptions};
use crate::bench::pipeline::{run_pipeline, PipelineCase};
use crate::bench::{Budget, Machine, ModelCase, ModelResult, Report};
use crate::model::Precision;

/// The pipeline suite's settings: the live loop for `frames` frames per configuration.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub frames: u64,
    pub source: String,
    pub sink: String,
    /// Also run each configuration with every frame scored (`--anomaly`).
    pub anomaly: bool,
}

/// One run of the bench.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    /// Models (empty: the shipped ones under models/).
    pub models: Vec<PathBuf>,
    /// Precisions (empty: each model's own and its native variant files).
    pub precisions: Vec<Precision>,
    /// Thread counts (empty: 1 and all cores).
    pub threads: Vec<usize>,
    /// Applications of f per call (empty: 1).
    pub steps: Vec<usize>,
    pub batch: usize,
    pub budget: Budget,
    /// The NPU's options (and `--backend rknn`).
    pub backend: BackendOptions,
    /// Run the pipeline suite instead of the model suite.
    pub pipeline: Option<PipelineSettings>,
    /// Measure the matmul peak per thread count.
    pub peak: bool,
    /// Core pinning (`all`, `big`, `little`, a list).
    pub cores: Option<String>,
    /// Board profile whose defaults fill what is not given (name, path or `auto`).
    pub board: Option<String>,
}

/// The shipped models that are present.
pub fn default_models() -> Vec<PathBuf> {
    ["models/ign-mnist.onnx", "models/ign-fashion.onnx"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

impl BenchPlan {
    /// Fill what is not given from a board profile: threads, fp32 plus the board's precision,
    /// cores.
    pub fn apply_board(&mut self, b: &crate::board::Board) {
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

    /// The precisions to run `m` in (`None`: the file as it is).
    pub fn precisions_of(&self, m: &Path) -> Vec<Option<Precision>> {
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
    }

    fn models(&self) -> Result<Vec<PathBuf>> {
        let models = if self.models.is_empty() {
            default_models()
        } else {
            self.models.clone()
        };
        if models.is_empty() {
            bail!("no model to benchmark: pass --model FILE.onnx (models/ has none here)");
        }
        Ok(models)
    }

    fn thread_counts(&self) -> Vec<usize> {
        let mut threads = if self.threads.is_empty() {
            vec![1, crate::backend::cpu::available_cores()]
        } else {
            self.threads.clone()
        };
        threads.dedup();
        threads
    }

    fn step_counts(&self) -> Vec<usize> {
        if self.steps.is_empty() {
            vec![1]
        } else {
            self.steps.clone()
        }
    }

    fn on_npu(&self, m: &Path) -> bool {
        self.backend.kind == BackendKind::Rknn || is_rknn(m)
    }

    /// Fill what is not given from the board profile, check that there is a model to
    /// measure, and pin this process to the plan's cores (before the machine is described:
    /// its core count is what the process may use).
    pub fn prepare(&mut self) -> Result<()> {
        if let Some(name) = &self.board {
            let b = crate::board::load(name)?;
            log::info!("board {}: {}", b.name, b.description);
            self.apply_board(&b);
        }
        self.models()?;
        if let Some(spec) = &self.cores {
            let cores = crate::cores::pin_spec(spec)?;
            log::info!("pinned to cores {cores:?}");
        }
        Ok(())
    }

    /// Run every configuration on `machine` (after [`BenchPlan::prepare`]).
    pub fn run(&self, machine: Machine) -> Result<Report> {
        let models = self.models()?;
        let (mut results, mut pipeline) = (Vec::new(), Vec::new());
        match &self.pipeline {
            Some(settings) => pipeline = self.pipeline_suite(&models, settings)?,
            None => {
                results = self.model_suite(&models)?;
                if self.peak {
                    self.add_peaks(&mut results)?;
                }
            }
        }
        Ok(Report {
            schema: 1,
            tool: "ign-edge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            machine,
            results,
            pipeline,
        })
    }

    fn pipeline_suite(
        &self,
        models: &[PathBuf],
        settings: &PipelineSettings,
    ) -> Result<Vec<crate::bench::pipeline::PipelineResult>> {
        if models.iter().any(|m| self.on_npu(m)) {
            bail!("the pipeline suite runs on the CPU; for the NPU, time the live loop with `ign-edge run --backend rknn --sink null --frames 300 --json run.json`");
        }
        let mut out = Vec::new();
        for m in models {
            for p in self.precisions_of(m) {
                for &t in &self.thread_counts() {
                    for &k in &self.step_counts() {
                        // with --anomaly, the plain loop and the scoring one, back to back
                        for anomaly in [false, true] {
                            if anomaly && !settings.anomaly {
                                continue;
                            }
                            out.push(run_pipeline(&PipelineCase {
                                model: m.clone(),
                                precision: p,
                                threads: t,
                                steps: k,
                                frames: settings.frames,
                                source: settings.source.clone(),
                                sink: settings.sink.clone(),
                                anomaly,
                            })?);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn model_suite(&self, models: &[PathBuf]) -> Result<Vec<ModelResult>> {
        let mut results = Vec::new();
        for m in models {
            let on_npu = self.on_npu(m);
            let precisions = if on_npu {
                vec![None]
            } else {
                self.precisions_of(m)
            };
            let threads = if on_npu {
                vec![1]
            } else {
                self.thread_counts()
            };
            for &p in &precisions {
                for &t in &threads {
                    for &k in &self.step_counts() {
                        let case = ModelCase {
                            model: m.clone(),
                            precision: p,
                            threads: t,
                            steps: k,
                            batch: self.batch,
                        };
                        results.push(if on_npu {
                            self.npu_case(&case)?
                        } else {
                            crate::bench::run_case(&case, &self.budget)?
                        });
                    }
                }
            }
        }
        Ok(results)
    }

    /// Each CPU result's fraction of this machine's matmul peak at its thread count.
    fn add_peaks(&self, results: &mut [ModelResult]) -> Result<()> {
        let mut peaks = std::collections::BTreeMap::new();
        for &t in &self.thread_counts() {
            peaks.insert(t, crate::bench::peak::matmul_peak_gflops(t, 512)?);
        }
        for r in results.iter_mut().filter(|r| r.npu.is_none()) {
            if let Some(&p) = peaks.get(&r.threads) {
                r.peak_gflops_per_s = Some(p);
                r.fraction_of_peak = Some(r.gflops_per_s / p);
            }
        }
        for (t, p) in peaks {
            log::info!("peak: {p:.1} GFLOP/s for a 512x512 f32 matmul in tract with {t} thread(s)");
        }
        Ok(())
    }

    #[cfg(feature = "rknn")]
    fn npu_case(&self, case: &ModelCase) -> Result<ModelResult> {
        crate::bench::rknn::run_case(
            case,
            &self.budget,
            &crate::backend::rknn::RknnOptions {
                lib: self.backend.rknn_lib.clone(),
                cores: self.backend.npu_cores.clone(),
                pass_through: self.backend.npu_pass_through,
            },
        )
    }

    #[cfg(not(feature = "rknn"))]
    fn npu_case(&self, case: &ModelCase) -> Result<ModelResult> {
        bail!(
            "{}: this ign-edge was built without the NPU backend; build it with `cargo build --release --features rknn`",
            case.model.display()
        )
    }
}

/// The configurations of `report` whose p50 got slower than in the earlier report at
/// `baseline` by more than `tolerance` (0.1 = 10%), one line each.
pub fn regressions_against(
    report: &Report,
    baseline: &Path,
    tolerance: f64,
) -> Result<Vec<String>> {
    let base = crate::bench::read_report(baseline)?;
    Ok(crate::bench::regressions(report, &base, tolerance))
}
