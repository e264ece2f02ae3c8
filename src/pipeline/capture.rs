//! The capture stage: a thread that reads the source, preprocesses each frame into a model
//! input (a buffer from a small pool) and hands it to the inference stage through a one-slot
//! mailbox: replacing a stale frame for a live source, waiting for the slot for a recorded one.

use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::controls::Controls;
use super::frame::Frame;
use super::mailbox::{Mailbox, Taken};
use super::preprocess::Preprocess;
use super::source::Source;
use super::STOP_POLL;

/// A captured frame with its model input, on its way to the inference stage.
pub(super) struct Captured {
    pub frame: Frame,
    /// The preprocessed frame (`C×H×W` in [-1, 1]), a buffer from the pool.
    pub input: Vec<f32>,
    pub pre_secs: f64,
}

/// Model inputs go back and forth instead of being allocated per frame: at most one in the
/// mailbox, one being filled and one in the model exist at a time.
pub(super) type InputPool = Arc<Mutex<Vec<Vec<f32>>>>;

/// What the capture thread shares with the rest of the loop.
pub(super) struct CaptureShared {
    pub frames_in: Arc<Mailbox<Captured>>,
    pub pool: InputPool,
    /// The first error of the source.
    pub error: Arc<Mutex<Option<anyhow::Error>>>,
    /// Total seconds the source took to deliver, and frames delivered.
    pub secs: Arc<Mutex<(f64, u64)>>,
    /// Set by a signal (or a test): stop.
    pub stop: Arc<AtomicBool>,
    /// Set by the loop when it needs no more frames.
    pub done: Arc<AtomicBool>,
}

/// Start the capture thread. It ends when the source ends or fails, or `stop`/`done` is set
/// (checked between frames), and closes the mailbox.
pub(super) fn spawn(
    mut source: Box<dyn Source>,
    mut pre: Preprocess,
    controls: Option<Arc<Controls>>,
    shared: &CaptureShared,
) -> Result<JoinHandle<()>> {
    let live = source.live();
    let input_len = pre.channels * pre.height * pre.width;
    let (mb, err, stop, done, cs, pool) = (
        shared.frames_in.clone(),
        shared.error.clone(),
        shared.stop.clone(),
        shared.done.clone(),
        shared.secs.clone(),
        shared.pool.clone(),
    );
    let thread = std::thread::Builder::new()
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
        })?;
    Ok(thread)
}

/// The next captured frame, or `None` once the source ended or `quit()` says to stop.
pub(super) fn next_captured(
    frames_in: &Mailbox<Captured>,
    quit: impl Fn() -> bool,
) -> Option<Captured> {
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
pub(super) fn join_within(thread: JoinHandle<()>, grace: Duration) -> Result<bool> {
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
