//! The inference stage, on the loop's own thread: takes the latest captured frame, applies
//! f^k through the backend and hands the result to the display stage, keeping the overlay's
//! figures.
//!
//! Every backend goes through one in-flight queue ([`InFlight`]): one that computes in the
//! caller's thread (depth 1) has its outputs at once, a pipelined one (one NPU context per
//! core) keeps up to `depth` frames in flight and returns them in frame order.

use anyhow::Result;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::capture::{next_captured, CaptureShared, Captured};
use super::controls::Controls;
use super::display::{DisplayStats, Picture};
use super::frame::Frame;
use super::mailbox::Mailbox;
use super::mean_ms;
use super::overlay::Hud;
use crate::backend::Backend;
use crate::tensor::ImageBatch;

/// A frame sent to the model and not yet handed on.
struct Pending {
    frame: Frame,
    pre_secs: f64,
    sent: Instant,
    /// The outputs, when the backend computed them in the caller's thread.
    outs: Option<Vec<ImageBatch>>,
    /// The model's input, kept when frames are scored (`--anomaly`).
    input: Option<Vec<f32>>,
}

/// Frames between the model's input and the display, oldest first.
struct InFlight {
    queue: VecDeque<Pending>,
    depth: usize,
}

impl InFlight {
    fn new(depth: usize) -> Self {
        InFlight {
            queue: VecDeque::new(),
            depth: depth.max(1),
        }
    }

    /// Send `input` (the model's view of `frame`) to the backend.
    fn submit(
        &mut self,
        backend: &mut dyn Backend,
        input: &ImageBatch,
        steps: usize,
        frame: Frame,
        pre_secs: f64,
        keep_input: bool,
    ) -> Result<()> {
        let sent = Instant::now();
        let outs = if self.depth == 1 {
            Some(backend.project(input, steps)?)
        } else {
            backend.submit(input, steps)?;
            None
        };
        self.queue.push_back(Pending {
            frame,
            pre_secs,
            sent,
            outs,
            input: keep_input.then(|| input.data.clone()),
        });
        Ok(())
    }

    /// The oldest frame and its outputs (waiting for the backend when it computes them).
    fn receive(&mut self, backend: &mut dyn Backend) -> Option<(Pending, Result<Vec<ImageBatch>>)> {
        let mut p = self.queue.pop_front()?;
        let outs = match p.outs.take() {
            Some(o) => Ok(o),
            None => backend.receive(),
        };
        Some((p, outs))
    }

    fn full(&self) -> bool {
        self.queue.len() >= self.depth
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Hands projected frames to the display thread and keeps the overlay's figures.
pub(super) struct Outbox {
    pub pictures: Arc<Mailbox<Picture>>,
    pub frames_in: Arc<Mailbox<Captured>>,
    pub stats: Arc<Mutex<DisplayStats>>,
    pub capture_secs: Arc<Mutex<(f64, u64)>>,
    pub n_panels: u32,
    /// Live sources drop stale pictures; recorded ones wait for the display.
    pub live: bool,
    pub hud: Hud,
    /// Inference end times of the last second (moving fps).
    pub recent: VecDeque<Instant>,
    pub t_pre: f64,
    pub t_inf: f64,
    pub processed: u64,
    /// Score each frame (`--anomaly`).
    pub anomaly: Option<super::AnomalySettings>,
}

impl Outbox {
    /// An outbox that hands pictures to `pictures` with this overlay, nothing counted yet.
    pub fn new(
        pictures: Arc<Mailbox<Picture>>,
        capture: &CaptureShared,
        stats: Arc<Mutex<DisplayStats>>,
        n_panels: u32,
        live: bool,
        hud: Hud,
    ) -> Self {
        Outbox {
            pictures,
            frames_in: capture.frames_in.clone(),
            stats,
            capture_secs: capture.secs.clone(),
            n_panels,
            live,
            hud,
            recent: Default::default(),
            t_pre: 0.0,
            t_inf: 0.0,
            processed: 0,
            anomaly: None,
        }
    }

    /// The heatmap of `input` (when kept) against `outs`, with its score and verdict in the
    /// overlay's figures.
    fn score(&mut self, input: Option<&[f32]>, outs: &[ImageBatch]) -> Option<Vec<f32>> {
        let (a, x) = (self.anomaly?, input?);
        let [_, c, h, w] = outs[0].shape;
        let ffx = outs.get(1).map(|o| o.image(0));
        match crate::anomaly::score(a.kind, x, outs[0].image(0), ffx, (c, h, w)) {
            Ok(s) => {
                self.hud.anomaly_score = Some(s.score);
                self.hud.anomaly_threshold = a.threshold;
                self.hud.anomalous = a.threshold.map(|t| s.score > t);
                let (x, y) = s.peak(w);
                self.hud.anomaly_peak = Some((x as u32, y as u32));
                Some(s.map)
            }
            Err(e) => {
                log::debug!("anomaly score: {e:#}");
                // no figure rather than the last frame's
                self.hud.anomaly_score = None;
                self.hud.anomalous = None;
                self.hud.anomaly_peak = None;
                None
            }
        }
    }

    /// `frame` was preprocessed in `pre_secs` and sent to the model at `sent`; `outs` are
    /// `[f(x), ..., f^k(x)]`; `input` is x when frames are scored.
    fn emit(
        &mut self,
        frame: Frame,
        mut outs: Vec<ImageBatch>,
        pre_secs: f64,
        sent: Instant,
        input: Option<Vec<f32>>,
    ) {
        let heat = self.score(input.as_deref(), &outs);
        let t2 = Instant::now();
        self.recent.push_back(t2);
        while self
            .recent
            .front()
            .map(|t| (t2 - *t).as_secs_f64() > 1.0)
            .unwrap_or(false)
        {
            self.recent.pop_front();
        }
        let hud = &mut self.hud;
        {
            let s = self.stats.lock().unwrap();
            hud.e2e_ms = s.e2e.last().map(|v| v * 1e3).unwrap_or(0.0);
            hud.display_ms = mean_ms(s.display_secs, s.shown);
        }
        let c = *self.capture_secs.lock().unwrap();
        hud.capture_ms = mean_ms(c.0, c.1);
        hud.fps = self.recent.len() as f64;
        hud.preprocess_ms = mean_ms(self.t_pre, self.processed);
        hud.inference_ms = mean_ms(self.t_inf, self.processed);
        hud.dropped = self.frames_in.dropped() + self.pictures.dropped();

        self.t_pre += pre_secs;
        self.t_inf += (t2 - sent).as_secs_f64();
        self.processed += 1;
        if self.n_panels == 2 || heat.is_some() {
            outs.truncate(1);
        } else if outs.len() == 1 {
            outs.push(outs[0].clone());
        } else if outs.len() > 2 {
            let last = outs.pop().expect("steps >= 2");
            outs.truncate(1);
            outs.push(last);
        }
        let picture = Picture {
            frame,
            outs,
            hud: hud.clone(),
            heat,
        };
        if self.live {
            self.pictures.put(picture);
        } else {
            self.pictures.put_when_empty(picture);
        }
    }
}

/// When the inference stage stops.
pub(super) struct InferPlan<'a> {
    pub steps: usize,
    /// The model input's `(C, H, W)`.
    pub shape: (usize, usize, usize),
    /// `--frames N` (or unbounded).
    pub target: u64,
    pub controls: Option<&'a Controls>,
    /// Set by the display thread when it ended (N shown, or the sink failed).
    pub display_done: &'a AtomicBool,
}

/// Hand the oldest frame in flight on to the display.
fn deliver_oldest(
    backend: &mut dyn Backend,
    in_flight: &mut InFlight,
    out: &mut Outbox,
) -> Result<()> {
    if let Some((p, outs)) = in_flight.receive(backend) {
        out.emit(p.frame, outs?, p.pre_secs, p.sent, p.input);
    }
    Ok(())
}

/// Run the inference stage until the source ends, enough frames went through, or the loop is
/// stopped; frames still in flight are collected (and shown unless an error came first).
pub(super) fn run(
    backend: &mut dyn Backend,
    capture: &CaptureShared,
    out: &mut Outbox,
    plan: &InferPlan,
) -> Result<()> {
    let mut in_flight = InFlight::new(backend.depth());
    let mut result = feed(backend, capture, out, plan, &mut in_flight);
    // frames still on the NPU
    while let Some((p, outs)) = in_flight.receive(backend) {
        match outs {
            Ok(o) if result.is_ok() => out.emit(p.frame, o, p.pre_secs, p.sent, p.input),
            Ok(_) => {}
            Err(e) => result = result.and(Err(e)),
        }
    }
    result
}

/// The stage's main loop: take a frame, send it to the model, hand results on.
fn feed(
    backend: &mut dyn Backend,
    capture: &CaptureShared,
    out: &mut Outbox,
    plan: &InferPlan,
    in_flight: &mut InFlight,
) -> Result<()> {
    let (c, h, w) = plan.shape;
    let mut input = ImageBatch {
        data: vec![0.0; c * h * w],
        shape: [1, c, h, w],
    };
    let mut steps = plan.steps;
    let mut submitted = 0u64;
    let frames_in = &capture.frames_in;
    let quit = || capture.stop.load(Ordering::Relaxed) || plan.display_done.load(Ordering::Relaxed);
    // Enough frames: a live loop runs until the display has shown N pictures (it drops some);
    // a recorded one drops nothing, so N frames processed (or sent to the NPU) are N shown.
    let (live, pipelined) = (out.live, in_flight.depth > 1);
    let enough = |processed: u64, submitted: u64| {
        if live {
            plan.display_done.load(Ordering::Relaxed)
        } else {
            processed >= plan.target || (pipelined && submitted >= plan.target)
        }
    };
    loop {
        // With frames in flight and none waiting, collect the oldest result instead of
        // waiting for the camera: results leave as soon as the NPU is done.
        let captured = if !in_flight.is_empty() {
            match frames_in.try_take() {
                Some(f) => f,
                None => {
                    deliver_oldest(backend, in_flight, out)?;
                    if enough(out.processed, submitted) || quit() {
                        return Ok(());
                    }
                    continue;
                }
            }
        } else {
            match next_captured(frames_in, quit) {
                Some(f) => f,
                None => return Ok(()),
            }
        };
        if capture.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(c) = plan.controls {
            // a score that compares f(x) with f(f(x)) keeps its second application
            let needs = out.anomaly.map_or(1, |a| a.kind.applications());
            steps = c.steps.load(Ordering::Relaxed).max(needs);
            out.hud.steps = steps;
            if let Some(p) = c.precision() {
                out.hud.precision = p.to_string();
            }
        }
        let Captured {
            frame,
            input: mut data,
            pre_secs,
        } = captured;
        std::mem::swap(&mut input.data, &mut data);
        capture.pool.lock().unwrap().push(data);
        let keep = out.anomaly.is_some();
        in_flight.submit(backend, &input, steps, frame, pre_secs, keep)?;
        submitted += 1;
        if in_flight.full() {
            deliver_oldest(backend, in_flight, out)?;
        }
        if enough(out.processed, submitted) || quit() {
            return Ok(());
        }
    }
}
