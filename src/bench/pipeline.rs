//! The pipeline suite (`bench --pipeline`): the live loop run for N frames per configuration.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::model::{Model, Precision};
use crate::pipeline::{self, preprocess::Preprocess, sink, source, Summary};
use crate::tensor::ImageBatch;
use std::time::Instant;

/// One pipeline configuration.
#[derive(Clone, Debug)]
pub struct PipelineCase {
    pub model: PathBuf,
    pub precision: Option<Precision>,
    pub threads: usize,
    pub steps: usize,
    pub frames: u64,
    pub source: String,
    pub sink: String,
    /// Score every frame (`--anomaly`, with the default score and no threshold).
    pub anomaly: bool,
}

/// The figures of one pipeline configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineResult {
    pub model: String,
    pub precision: Precision,
    pub backend: String,
    pub threads: usize,
    pub steps: usize,
    /// The loop scored every frame (`--anomaly`).
    #[serde(default)]
    pub anomaly: bool,
    pub summary: Summary,
    /// Model-only throughput in the same run (`project` on one preprocessed frame, half of
    /// the frames before the loop and half after), frames per second.
    pub model_fps: f64,
    /// What the pipeline costs: `1 - fps / model_fps` (target: under 0.10).
    pub cost: f64,
}

/// Frames per second of `project` alone on `input`, `n` times.
fn model_only(backend: &mut dyn Backend, input: &ImageBatch, steps: usize, n: u64) -> Result<f64> {
    backend.project(input, steps)?;
    let t = Instant::now();
    for _ in 0..n {
        backend.project(input, steps)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Run the live loop for `case.frames` frames (test source at full speed by default).
pub fn run_pipeline(case: &PipelineCase) -> Result<PipelineResult> {
    let model = Model::load(&case.model)?;
    let model = match case.precision {
        Some(p) if p != model.info.precision => crate::quantize::in_precision(model, p)?,
        _ => model,
    };
    let mut backend = CpuBackend::new(&model, Some(case.threads))?;
    let src = source::open(
        &case.source,
        &source::SourceOptions {
            looping: true,
            fps: 0.0,
            ..Default::default()
        },
    )?;
    let snk = sink::open(
        &case.sink,
        &sink::SinkOptions {
            size: (480, 200),
            every: 1,
            fb_geometry: None,
        },
    )?;
    let pre = Preprocess {
        channels: model.info.channels,
        height: model.info.height,
        width: model.info.width,
        roi: None,
        paper: false,
    };
    let name = model
        .info
        .path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = pipeline::LoopOptions {
        frames: Some(case.frames),
        steps: case.steps,
        stop: Arc::new(AtomicBool::new(false)),
        model_name: name.clone(),
        precision: model.info.precision.to_string(),
        controls: None,
        watchers: Vec::new(),
        anomaly: case.anomaly.then_some(pipeline::AnomalySettings {
            kind: crate::anomaly::ScoreKind::default(),
            threshold: None,
        }),
    };
    let backend_name = backend.name();
    // The model alone, on a frame of the same source, around the loop (the host drifts).
    let mut input = ImageBatch {
        data: vec![0.0; pre.channels * pre.height * pre.width],
        shape: [1, pre.channels, pre.height, pre.width],
    };
    if let Some(f) = source::open(&case.source, &source::SourceOptions::default())?.next_frame()? {
        pre.run(&f.rgb, &mut input.data);
    }
    let half = (case.frames / 2).max(1);
    let before = model_only(&mut backend, &input, case.steps, half)?;
    let summary = pipeline::run_loop(src, &mut backend, &pre, snk, &opts)?;
    let after = model_only(&mut backend, &input, case.steps, half)?;
    let model_fps = (2 * half) as f64 / (before + after).max(1e-9);
    Ok(PipelineResult {
        model_fps,
        cost: 1.0 - summary.fps / model_fps,
        model: name,
        precision: model.info.precision,
        backend: backend_name,
        threads: case.threads,
        steps: case.steps,
        anomaly: case.anomaly,
        summary,
    })
}

/// The pipeline results as an aligned table.
pub fn table(results: &[PipelineResult]) -> String {
    let mut s = format!(
        "{:<22} {:>5} {:>3} {:>2} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9} {:>6}\n",
        "pipeline",
        "prec",
        "thr",
        "k",
        "frames",
        "fps",
        "e2e p50",
        "e2e p99",
        "capture",
        "preproc",
        "infer",
        "compose",
        "display",
        "drops c/d",
        "model fps",
        "cost"
    );
    for r in results {
        let m = &r.summary;
        let name = if r.anomaly {
            format!("{} +anomaly", r.model)
        } else {
            r.model.clone()
        };
        s += &format!(
            "{:<22} {:>5} {:>3} {:>2} {:>6} {:>7.1} {:>6.2}ms {:>6.2}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>11} {:>9.1} {:>5.1}%\n",
            name,
            r.precision.as_str(),
            r.threads,
            r.steps,
            m.frames,
            m.fps,
            m.e2e.p50_us / 1e3,
            m.e2e.p99_us / 1e3,
            m.capture_ms,
            m.preprocess_ms,
            m.inference_ms,
            m.compose_ms,
            m.display_ms,
            format!("{}/{}", m.dropped_capture, m.dropped_display),
            r.model_fps,
            r.cost * 100.0
        );
    }
    s
}
