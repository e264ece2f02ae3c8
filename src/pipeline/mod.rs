//! The live loop: camera → projection → display.
//!
//! ```text
//! capture + preprocess ──> [latest-frame mailbox] ──> f^k ──> [mailbox] ──> compose + display
//!   (capture thread)         drops stale frames                   drops stale   (display thread)
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

pub mod compose;
pub mod frame;
pub mod mailbox;
pub mod overlay;
pub use ign_core::preprocess;
pub mod sink;
pub mod source;

use anyhow::{anyhow, Result};
use image::RgbImage;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::bench::stats::Latency;
use crate::tensor::ImageBatch;
use frame::Frame;
use mailbox::{Mailbox, Taken};
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
    pub controls: Option<Arc<sink::http::Controls>>,
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

/// A captured frame with its model input, on its way to the inference thread.
struct Captured {
    frame: Frame,
    /// The preprocessed frame (`C×H×W` in [-1, 1]), a buffer from the pool.
    input: Vec<f32>,
    pre_secs: f64,
}

/// A projected frame on its way to the display thread, which composes and shows it.
struct Picture {
    frame: Frame,
    /// f(x), and f^k(x) when a third panel is shown.
    outs: Vec<ImageBatch>,
    hud: Hud,
}

#[derive(Default)]
struct DisplayStats {
    shown: u64,
    last_seq: Option<u64>,
    e2e: Vec<f64>,
    compose_secs: f64,
    composed: u64,
    display_secs: f64,
    /// Pictures the display mailbox replaced, when the display thread ended.
    dropped: u64,
    error: Option<anyhow::Error>,
}

/// Frames on a pipelined backend: the frame, its preprocessing time, when it was sent.
type InFlight = std::collections::VecDeque<(Frame, f64, Instant)>;

/// Wait for the oldest frame in flight and hand it on.
fn receive_oldest(
    backend: &mut dyn Backend,
    in_flight: &mut InFlight,
    out: &mut Outbox,
) -> Result<()> {
    let (f, p, t) = in_flight.pop_front().expect("a frame in flight");
    let o = backend.receive()?;
    out.emit(f, o, p, t);
    Ok(())
}

/// Hands projected frames to the display thread and keeps the overlay's figures.
struct Outbox<'a> {
    pictures: &'a Mailbox<Picture>,
    frames_in: &'a Mailbox<Captured>,
    stats: &'a Mutex<DisplayStats>,
    capture_secs: &'a Mutex<(f64, u64)>,
    n_panels: u32,
    /// Live sources drop stale pictures; recorded ones wait for the display.
    live: bool,
    hud: Hud,
    /// Inference end times of the last second (moving fps).
    recent: std::collections::VecDeque<Instant>,
    t_pre: f64,
    t_inf: f64,
    processed: u64,
}

impl Outbox<'_> {
    /// `frame` was preprocessed in `pre_secs` and sent to the model at `sent`; `outs` are
    /// `[f(x), ..., f^k(x)]`.
    fn emit(&mut self, frame: Frame, mut outs: Vec<ImageBatch>, pre_secs: f64, sent: Instant) {
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
        if self.n_panels == 2 {
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
        };
        if self.live {
            self.pictures.put(picture);
        } else {
            self.pictures.put_when_empty(picture);
        }
    }
}

fn mean_ms(total_secs: f64, n: u64) -> f64 {
    total_secs * 1e3 / n.max(1) as f64
}

/// How often a waiting stage looks at the stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// How long the loop waits, once stopped, for a source blocked in a read (a pipe that sends
/// nothing, a camera that stopped delivering) before leaving its thread behind.
pub const SOURCE_GRACE: Duration = Duration::from_millis(500);

/// The next captured frame, or `None` once the source ended or `quit()` says to stop.
fn next_captured(frames_in: &Mailbox<Captured>, quit: impl Fn() -> bool) -> Option<Captured> {
    loop {
        match frames_in.take_timeout(STOP_POLL) {
            Taken::Item(c) => return Some(c),
            Taken::Closed => return None,
            Taken::TimedOut if quit() => return None,
            Taken::TimedOut => {}
        }
    }
}

/// Join `thread` if it ends within `grace`; otherwise leave it running (it is blocked in a
/// read that only the process's exit will end). Returns whether it was joined.
fn join_within(thread: std::thread::JoinHandle<()>, grace: Duration) -> Result<bool> {
    let deadline = Instant::now() + grace;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if !thread.is_finished() {
        return Ok(false);
    }
    thread
        .join()
        .map_err(|_| anyhow!("the capture thread panicked"))?;
    Ok(true)
}

/// Run the loop until the source ends, `frames` are shown, or `stop` is set.
pub fn run_loop(
    mut source: Box<dyn Source>,
    backend: &mut dyn Backend,
    pre: &Preprocess,
    mut sink: Box<dyn Sink>,
    opts: &LoopOptions,
) -> Result<Summary> {
    let mut steps = opts.steps.max(1);
    // With live controls k may change: keep the third panel (f^k) from the start.
    let n_panels = if steps >= 2 || opts.controls.is_some() {
        3
    } else {
        2
    };
    let (cw, ch) = sink.size();
    let layout = compose::Layout::new(cw, ch, n_panels)?;
    let source_name = source.describe();
    let sink_name = sink.describe();
    let live = source.live();

    let frames_in: Arc<Mailbox<Captured>> = Arc::new(Mailbox::default());
    // Model inputs go back and forth instead of being allocated per frame: at most one in the
    // mailbox, one being filled and one in the model exist at a time.
    let pool: Arc<Mutex<Vec<Vec<f32>>>> = Arc::default();
    let input_len = pre.channels * pre.height * pre.width;
    let pictures: Arc<Mailbox<Picture>> = Arc::new(Mailbox::default());
    let capture_error: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let capture_secs = Arc::new(Mutex::new((0f64, 0u64)));
    let done = Arc::new(AtomicBool::new(false));
    // Set by the display thread when it ends: N pictures shown, or the sink failed.
    let display_done = Arc::new(AtomicBool::new(false));

    let capture = {
        let (mb, err, stop, done, cs, pool) = (
            frames_in.clone(),
            capture_error.clone(),
            opts.stop.clone(),
            done.clone(),
            capture_secs.clone(),
            pool.clone(),
        );
        let (mut pre, controls) = (pre.clone(), opts.controls.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                    match source.next_frame() {
                        Ok(Some(frame)) => {
                            let mut c = cs.lock().unwrap();
                            c.0 += frame.capture_secs;
                            c.1 += 1;
                            drop(c);
                            if let Some(c) = &controls {
                                pre.paper = c.paper.load(Ordering::Relaxed);
                            }
                            let t0 = Instant::now();
                            let mut input = pool
                                .lock()
                                .unwrap()
                                .pop()
                                .unwrap_or_else(|| vec![0.0; input_len]);
                            pre.run(&frame.rgb, &mut input);
                            let item = Captured {
                                frame,
                                input,
                                pre_secs: t0.elapsed().as_secs_f64(),
                            };
                            if live {
                                mb.put(item);
                            } else {
                                // recorded sources wait for the consumer: nothing is dropped
                                mb.put_when_empty(item);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            *err.lock().unwrap() = Some(e);
                            break;
                        }
                    }
                }
                mb.close();
            })?
    };

    let stats = Arc::new(Mutex::new(DisplayStats::default()));
    let shape = (pre.channels, pre.height, pre.width);
    let target = opts.frames.unwrap_or(u64::MAX);
    let display = {
        let (mb, stats, pre, display_done) = (
            pictures.clone(),
            stats.clone(),
            pre.clone(),
            display_done.clone(),
        );
        std::thread::Builder::new()
            .name("display".into())
            .spawn(move || {
                // One canvas, reused: composing (and the sink) run beside the inference.
                let mut canvas = RgbImage::new(cw, ch);
                while let Some(p) = mb.take() {
                    let t = Instant::now();
                    let composing = sink.wants_picture();
                    if composing {
                        compose::clear(&mut canvas);
                        let rgb = &p.frame.rgb;
                        let crop = pre.crop(rgb.width(), rgb.height());
                        compose::draw_frame_panel(
                            &mut canvas,
                            rgb,
                            crop,
                            layout.panels[0],
                            layout.cell,
                        );
                        for (i, out) in p.outs.iter().enumerate() {
                            compose::draw_chw_panel(
                                &mut canvas,
                                &out.data,
                                shape,
                                layout.panels[1 + i],
                                layout.cell,
                            );
                        }
                        p.hud.draw(&mut canvas, layout.hud_y);
                    }
                    sink.status(&p.hud);
                    let t_shown = Instant::now();
                    let r = sink.show(&canvas, p.frame.seq);
                    let now = Instant::now();
                    let mut s = stats.lock().unwrap();
                    if composing {
                        s.compose_secs += (t_shown - t).as_secs_f64();
                        s.composed += 1;
                    }
                    s.display_secs += (now - t_shown).as_secs_f64();
                    if let Err(e) = r {
                        s.error = Some(e);
                        break;
                    }
                    s.e2e.push((now - p.frame.captured).as_secs_f64());
                    s.shown += 1;
                    s.last_seq = Some(p.frame.seq);
                    // `--frames N`: N pictures shown, then the sink is closed
                    if s.shown >= target {
                        break;
                    }
                }
                // nothing more is taken: a producer waiting to hand a picture over returns
                mb.close();
                stats.lock().unwrap().dropped = mb.dropped();
                display_done.store(true, Ordering::Relaxed);
                let r = sink.finish();
                if let Err(e) = r {
                    stats.lock().unwrap().error.get_or_insert(e);
                }
            })?
    };

    let mut input = ImageBatch {
        data: vec![0.0; input_len],
        shape: [1, pre.channels, pre.height, pre.width],
    };
    let hud = Hud {
        model: opts.model_name.clone(),
        precision: opts.precision.clone(),
        steps,
        ..Default::default()
    };
    let mut out = Outbox {
        pictures: &pictures,
        frames_in: &frames_in,
        stats: &stats,
        capture_secs: &capture_secs,
        n_panels,
        live,
        hud,
        recent: Default::default(),
        t_pre: 0.0,
        t_inf: 0.0,
        processed: 0,
    };
    // Pipelined backends (one NPU context per core) keep up to `depth` frames in flight;
    // results come back in frame order.
    let depth = backend.depth().max(1);
    let mut in_flight: InFlight = Default::default();
    let mut submitted = 0u64;
    let start = Instant::now();
    let mut result: Result<()> = Ok(());
    let quit = || opts.stop.load(Ordering::Relaxed) || display_done.load(Ordering::Relaxed);
    // Enough frames: a live loop runs until the display has shown N pictures (it drops some);
    // a recorded one drops nothing, so N frames processed (or sent to the NPU) are N shown.
    let enough = |processed: u64, submitted: u64| {
        if live {
            display_done.load(Ordering::Relaxed)
        } else {
            processed >= target || (depth > 1 && submitted >= target)
        }
    };
    loop {
        // With frames in flight and none waiting, collect the oldest result instead of
        // waiting for the camera: results leave as soon as the NPU is done.
        let captured = if !in_flight.is_empty() {
            match frames_in.try_take() {
                Some(f) => f,
                None => {
                    if let Err(e) = receive_oldest(backend, &mut in_flight, &mut out) {
                        result = Err(e);
                        break;
                    }
                    if enough(out.processed, submitted) || quit() {
                        break;
                    }
                    continue;
                }
            }
        } else {
            match next_captured(&frames_in, quit) {
                Some(f) => f,
                None => break,
            }
        };
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(c) = &opts.controls {
            steps = c.steps.load(Ordering::Relaxed).max(1);
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
        pool.lock().unwrap().push(data);
        let t1 = Instant::now();
        if depth == 1 {
            match backend.project(&input, steps) {
                Ok(o) => out.emit(frame, o, pre_secs, t1),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        } else {
            if let Err(e) = backend.submit(&input, steps) {
                result = Err(e);
                break;
            }
            submitted += 1;
            in_flight.push_back((frame, pre_secs, t1));
            if in_flight.len() >= depth {
                if let Err(e) = receive_oldest(backend, &mut in_flight, &mut out) {
                    result = Err(e);
                    break;
                }
            }
        }
        if enough(out.processed, submitted) || quit() {
            break;
        }
    }
    // frames still on the NPU
    while let Some((f, p, t)) = in_flight.pop_front() {
        match backend.receive() {
            Ok(o) if result.is_ok() => out.emit(f, o, p, t),
            Ok(_) => {}
            Err(e) => {
                result = result.and(Err(e));
            }
        }
    }
    let (t_pre, t_inf, processed) = (out.t_pre, out.t_inf, out.processed);
    done.store(true, Ordering::Relaxed);
    // closing wakes the capture thread if it waits for the consumer; one blocked in the
    // source's read is left behind
    frames_in.close();
    let capture_joined = join_within(capture, SOURCE_GRACE)?;
    pictures.close();
    display
        .join()
        .map_err(|_| anyhow!("the display thread panicked"))?;
    let elapsed = start.elapsed().as_secs_f64();
    result?;
    if let Some(e) = capture_joined
        .then(|| capture_error.lock().unwrap().take())
        .flatten()
    {
        return Err(e);
    }
    let mut s = stats.lock().unwrap();
    if let Some(e) = s.error.take() {
        return Err(e);
    }
    let c = *capture_secs.lock().unwrap();
    Ok(Summary {
        source: source_name,
        sink: sink_name,
        frames: s.shown,
        seconds: elapsed,
        fps: s.shown as f64 / elapsed.max(1e-9),
        e2e: Latency::from_secs(&s.e2e),
        dropped_capture: frames_in.dropped(),
        dropped_display: s.dropped,
        capture_ms: mean_ms(c.0, c.1),
        preprocess_ms: mean_ms(t_pre, processed),
        inference_ms: mean_ms(t_inf, processed),
        compose_ms: mean_ms(s.compose_secs, s.composed),
        display_ms: mean_ms(s.display_secs, s.shown),
        last_seq: s.last_seq,
    })
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
