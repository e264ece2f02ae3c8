//! The live loop: camera → projection → display, as three stages (docs/ARCHITECTURE.md, "A
//! frame's walk through the live loop").
//!
//! ```text
//! capture + preprocess ──> [latest-frame mailbox] ──> f^k ──> [mailbox] ──> compose + display
//!   (capture.rs, a thread)   drops stale frames   (infer.rs)  drops stale  (display.rs, a thread)
//! ```
//! The inference thread only runs the model: preprocessing happens on the capture thread and
//! composing on the display thread, beside it. Model inputs are recycled through a small pool.
//! Each frame carries its capture time and sequence number, so the end-to-end latency and the
//! drops are measured at the sink. Memory stays bounded: each mailbox holds at most one item.
//!
//! A live source (a camera) drops stale frames and pictures; a recorded one (files, `test` at
//! `--fps 0`) applies back-pressure through both mailboxes, so it drops nothing and a run of it
//! is the same under any schedule: `--frames N` processes and shows exactly N frames.
//! Every wait is bounded: a stop request ends the loop even when the source delivers nothing,
//! and a source stuck in a read is left behind instead of being waited for.

mod capture;
pub mod compose;
pub mod controls;
mod display;
pub mod feed;
pub mod frame;
mod infer;
pub mod mailbox;
pub mod overlay;
pub use ign_core::preprocess;
pub mod sink;
pub mod source;
pub mod telemetry;

use anyhow::{anyhow, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use capture::CaptureShared;
use display::{DisplayPlan, DisplayStats, Picture};
use ign_core::stats::Latency;
use infer::{InferPlan, Outbox};
use mailbox::Mailbox;
use overlay::Hud;
use preprocess::Preprocess;
use sink::Sink;
use source::Source;

/// Settings of one run of the loop.
pub struct LoopOptions {
    /// Stop after this many displayed frames (exactly this many: a picture a live display
    /// drops is made up for by another frame).
    pub frames: Option<u64>,
    /// Applications of f per frame.
    pub steps: usize,
    /// Set from a signal handler (or a test) to stop cleanly; the loop notices within
    /// [`STOP_POLL`] whatever the source does.
    pub stop: Arc<AtomicBool>,
    /// Shown in the overlay.
    pub model_name: String,
    pub precision: String,
    /// Settings changed while running (the web page's k and paper mode).
    pub controls: Option<Arc<controls::Controls>>,
    /// What watches the loop beside its sink (the web page: [`crate::web`]).
    pub watchers: feed::Watchers,
    /// Score each frame against the scene the model learnt, and show the heatmap as the
    /// third panel (`--anomaly`).
    pub anomaly: Option<AnomalySettings>,
}

/// How `--anomaly` scores frames ([`crate::anomaly`]).
#[derive(Clone, Copy, Debug)]
pub struct AnomalySettings {
    pub kind: crate::anomaly::ScoreKind,
    /// A score above it is anomalous (none: scores without verdicts).
    pub threshold: Option<f32>,
}

/// What a run did (printed at the end; `--json` writes it).
#[derive(Clone, Debug, Serialize, serde::Deserialize, Default)]
pub struct Summary {
    pub source: String,
    pub sink: String,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub e2e: Latency,
    /// Frames the capture mailbox replaced before the model took them.
    pub dropped_capture: u64,
    /// Pictures the display mailbox replaced before the sink took them.
    pub dropped_display: u64,
    pub capture_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub compose_ms: f64,
    pub display_ms: f64,
    /// Sequence number of the last frame the sink showed.
    pub last_seq: Option<u64>,
}

impl Summary {
    /// One human line.
    pub fn line(&self) -> String {
        format!(
            "{} frames in {:.1} s: {:.1} fps; end-to-end p50 {:.1} ms, p99 {:.1} ms; dropped {} at capture, {} at display; per frame: capture {:.2} ms, preprocess {:.3} ms, inference {:.2} ms, compose {:.2} ms, display {:.2} ms",
            self.frames,
            self.seconds,
            self.fps,
            self.e2e.p50_us / 1e3,
            self.e2e.p99_us / 1e3,
            self.dropped_capture,
            self.dropped_display,
            self.capture_ms,
            self.preprocess_ms,
            self.inference_ms,
            self.compose_ms,
            self.display_ms
        )
    }
}

pub(crate) fn mean_ms(total_secs: f64, n: u64) -> f64 {
    total_secs * 1e3 / n.max(1) as f64
}

/// How often a waiting stage looks at the stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// How long the loop waits, once stopped, for a source blocked in a read (a pipe that sends
/// nothing, a camera that stopped delivering) before leaving its thread behind.
pub const SOURCE_GRACE: Duration = Duration::from_millis(500);

/// Run the loop until the source ends, `frames` are shown, or `stop` is set: the capture and
/// display stages on threads of their own, the inference stage on this one.
pub fn run_loop(
    source: Box<dyn Source>,
    backend: &mut dyn Backend,
    pre: &Preprocess,
    sink: Box<dyn Sink>,
    opts: &LoopOptions,
) -> Result<Summary> {
    let steps = opts.steps.max(1);
    let n_panels = panels(opts);
    let (cw, ch) = sink.size();
    let layout = compose::Layout::new(cw, ch, n_panels)?;
    let (source_name, sink_name, live) = (source.describe(), sink.describe(), source.live());
    let target = opts.frames.unwrap_or(u64::MAX);

    let shared = CaptureShared {
        frames_in: Arc::new(Mailbox::default()),
        pool: Arc::default(),
        error: Arc::default(),
        secs: Arc::default(),
        stop: opts.stop.clone(),
        done: Arc::new(AtomicBool::new(false)),
    };
    let capture = capture::spawn(source, pre.clone(), opts.controls.clone(), &shared)?;
    let pictures: Arc<Mailbox<Picture>> = Arc::new(Mailbox::default());
    let stats = Arc::new(Mutex::new(DisplayStats::default()));
    // Set by the display thread when it ends: N pictures shown, or the sink failed.
    let display_done = Arc::new(AtomicBool::new(false));
    let display = display::spawn(
        sink,
        DisplayPlan {
            layout,
            pre: pre.clone(),
            target,
            watchers: opts.watchers.clone(),
        },
        pictures.clone(),
        stats.clone(),
        display_done.clone(),
    )?;

    let hud = Hud {
        model: opts.model_name.clone(),
        precision: opts.precision.clone(),
        steps,
        ..Default::default()
    };
    let (p, st) = (pictures.clone(), stats.clone());
    let mut out = Outbox::new(p, &shared, st, n_panels, live, hud);
    out.anomaly = opts.anomaly;
    let start = Instant::now();
    let plan = InferPlan {
        steps,
        shape: (pre.channels, pre.height, pre.width),
        target,
        controls: opts.controls.as_deref(),
        display_done: &display_done,
    };
    let result = infer::run(backend, &shared, &mut out, &plan);
    shared.done.store(true, Ordering::Relaxed);
    // closing wakes the capture thread if it waits for the consumer; one blocked in the
    // source's read is left behind
    shared.frames_in.close();
    let capture_joined = capture::join_within(capture, SOURCE_GRACE)?;
    pictures.close();
    display
        .join()
        .map_err(|_| anyhow!("the display thread panicked"))?;
    let elapsed = start.elapsed().as_secs_f64();
    result?;
    if let Some(e) = capture_joined
        .then(|| shared.error.lock().unwrap().take())
        .flatten()
    {
        return Err(e);
    }
    let mut s = stats.lock().unwrap();
    if let Some(e) = s.error.take() {
        return Err(e);
    }
    let capture = *shared.secs.lock().unwrap();
    Ok(Summary {
        source: source_name,
        sink: sink_name,
        frames: s.shown,
        seconds: elapsed,
        fps: s.shown as f64 / elapsed.max(1e-9),
        e2e: Latency::from_secs(&s.e2e),
        dropped_capture: shared.frames_in.dropped(),
        dropped_display: s.dropped,
        capture_ms: mean_ms(capture.0, capture.1),
        preprocess_ms: mean_ms(out.t_pre, out.processed),
        inference_ms: mean_ms(out.t_inf, out.processed),
        compose_ms: mean_ms(s.compose_secs, s.composed),
        display_ms: mean_ms(s.display_secs, s.shown),
        last_seq: s.last_seq,
    })
}

/// Panels on the canvas: input and f, and f^k when k ≥ 2 or when k may change while running
/// (live controls keep the third panel from the start).
fn panels(opts: &LoopOptions) -> u32 {
    if opts.steps.max(1) >= 2 || opts.controls.is_some() || opts.anomaly.is_some() {
        3
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_keeps_only_the_latest() {
        let m = Mailbox::default();
        for i in 0..100 {
            m.put(i);
        }
        assert_eq!(m.take(), Some(99));
        assert_eq!(m.dropped(), 99);
        m.close();
        assert_eq!(m.take(), None);
    }
}
