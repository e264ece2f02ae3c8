//! The pipeline suite (`bench --pipeline`): the live loop run for N frames per configuration.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::model::{Model, Precision};
use crate::pipeline::{self, preprocess::Preprocess, sink, source, Summary};

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
}

/// The figures of one pipeline configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineResult {
    pub model: String,
    pub precision: Precision,
    pub backend: String,
    pub threads: usize,
    pub steps: usize,
    pub summary: Summary,
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
            http: None,
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
    };
    use crate::backend::Backend;
    let backend_name = backend.name();
    let summary = pipeline::run_loop(src, &mut backend, &pre, snk, &opts)?;
    Ok(PipelineResult {
        model: name,
        precision: model.info.precision,
        backend: backend_name,
        threads: case.threads,
        steps: case.steps,
        summary,
    })
}

/// The pipeline results as an aligned table.
pub fn table(results: &[PipelineResult]) -> String {
    let mut s = format!(
        "{:<22} {:>5} {:>3} {:>2} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11}\n",
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
        "drops c/d"
    );
    for r in results {
        let m = &r.summary;
        s += &format!(
            "{:<22} {:>5} {:>3} {:>2} {:>6} {:>7.1} {:>6.2}ms {:>6.2}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>6.3}ms {:>11}\n",
            r.model,
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
            format!("{}/{}", m.dropped_capture, m.dropped_display)
        );
    }
    s
}
