//! `capture` as a plain configuration and the function that runs it: frames from any source
//! into a folder of PNGs at the model's size, with a manifest beside them. This is the
//! training set of "teach it your scene" (`ign-train train --data DIR --recipe scene`).
//!
//! Frames go through the live loop's own crop and resize ([`Preprocess`]), so the model is
//! trained on exactly what `ign-edge run` will feed it. A frame that differs from the last one
//! kept by less than `min_change` grey levels on average (a frozen stream, a recorded source
//! repeating itself) is skipped. Every PNG is written whole (temporary file, then rename), and
//! the manifest is rewritten the same way at least once a second and at the end, also after
//! Ctrl-C: the folder is complete whenever the command stops.

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::imaging::chw_to_image;
use crate::pipeline::frame::Frame;
use crate::pipeline::preprocess::{Preprocess, Rect};
use crate::pipeline::source::{self, SourceOptions};
use crate::pipeline::STOP_POLL;

/// The manifest's file name inside the capture folder.
pub const MANIFEST: &str = "manifest.json";

/// What `ign-edge capture` does.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// The source spec (`v4l2:/dev/video0`, `rpicam`, `y4m:-`, `file:...`, `test`, `gst:...`).
    pub source: String,
    pub source_options: SourceOptions,
    /// The folder the PNGs and the manifest go to (created).
    pub out: PathBuf,
    /// Frames to keep.
    pub frames: u64,
    /// At least this long between kept frames of a live source (0: every frame).
    pub every: Duration,
    /// Output size (square) and channels (1 or 3): the model's.
    pub size: usize,
    pub channels: usize,
    /// Region of the frame to keep (default: the centred square, as the live loop crops).
    pub roi: Option<Rect>,
    /// A frame whose mean absolute difference to the last kept one is below this many grey
    /// levels (of 255) is a duplicate.
    pub min_change: f64,
    /// Add to a folder that already holds a capture, numbering on.
    pub append: bool,
}

/// One kept frame in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapturedFrame {
    pub file: String,
    /// The source's sequence number.
    pub seq: u64,
    /// Seconds since the capture started.
    pub t_s: f64,
    /// Mean absolute difference to the previous kept frame, grey levels (none for the first).
    pub change: Option<f64>,
}

/// The manifest (`manifest.json`): where the frames came from, when, with which settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub tool: String,
    pub source: String,
    /// Unix time (seconds) the capture started.
    pub started_unix: f64,
    pub size: usize,
    pub channels: usize,
    pub every_s: f64,
    pub min_change: f64,
    pub roi: Option<String>,
    pub frames: Vec<CapturedFrame>,
    /// Frames skipped as duplicates of the last kept one.
    pub skipped_similar: u64,
    /// `frames` (the count asked for was kept), `end` (the source ended), `signal` (Ctrl-C)
    /// or `running` (the command has not stopped yet).
    pub stopped_by: String,
}

/// How far a capture has come, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub kept: u64,
    pub wanted: u64,
    pub skipped_similar: u64,
}

/// Capture as `c` says until the frames are kept, the source ends or `stop` is set; calls
/// `progress` after every frame kept. Returns the manifest as written.
pub fn capture(
    c: &CaptureConfig,
    stop: &Arc<AtomicBool>,
    mut progress: impl FnMut(&Progress),
) -> Result<Manifest> {
    if !(c.channels == 1 || c.channels == 3) || !(8..=4096).contains(&c.size) {
        bail!(
            "{}x{}x{}: capture takes 1 or 3 channels and a size of 8 to 4096 pixels",
            c.channels,
            c.size,
            c.size
        );
    }
    let mut manifest = open_folder(c)?;
    let mut opts = c.source_options.clone();
    opts.stop = Some(stop.clone());
    let src = source::open(&c.source, &opts)?;
    manifest.source = src.describe();
    log::info!(
        "capturing {} frames of {}x{}x{} from {} into {} (Ctrl-C stops, keeping what was captured)",
        c.frames,
        c.size,
        c.size,
        c.channels,
        manifest.source,
        c.out.display()
    );
    let live = src.live();
    let frames = reader(src)?;
    let pre = Preprocess {
        channels: c.channels,
        height: c.size,
        width: c.size,
        roi: c.roi,
        paper: false,
    };
    let mut state = Keeper::new(c, &manifest);
    let start = Instant::now();
    let mut saved = Instant::now();
    let result = loop {
        if state.kept >= c.frames {
            break Ok("frames");
        }
        if stop.load(Ordering::Relaxed) {
            break Ok("signal");
        }
        let frame = match frames.recv_timeout(STOP_POLL) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => break Err(e),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break Ok("end"),
        };
        if live && !state.due(c.every) {
            continue;
        }
        match state.keep(&frame, &pre, c, start, &mut manifest) {
            Ok(true) => progress(&Progress {
                kept: state.kept,
                wanted: c.frames,
                skipped_similar: manifest.skipped_similar,
            }),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        if saved.elapsed() >= Duration::from_secs(1) {
            write_manifest(&c.out, &manifest)?;
            saved = Instant::now();
        }
    };
    manifest.stopped_by = match &result {
        Ok(why) => why.to_string(),
        Err(_) => "error".into(),
    };
    // written whatever happened: the frames kept so far are described
    write_manifest(&c.out, &manifest)?;
    result.map(|_| manifest)
}

/// The folder ready for frames, and the manifest to add them to (an earlier capture's with
/// `append`).
fn open_folder(c: &CaptureConfig) -> Result<Manifest> {
    let path = c.out.join(MANIFEST);
    let previous = if path.exists() {
        if !c.append {
            bail!(
                "{}: this folder already holds a capture; give another --out, or --append to add to it",
                c.out.display()
            );
        }
        let m = read_manifest(&c.out)?;
        if (m.size, m.channels) != (c.size, c.channels) {
            bail!(
                "{}: the capture there is {}x{}x{}, not {}x{}x{}; give another --out",
                c.out.display(),
                m.channels,
                m.size,
                m.size,
                c.channels,
                c.size,
                c.size
            );
        }
        Some(m)
    } else {
        None
    };
    std::fs::create_dir_all(&c.out)
        .with_context(|| format!("{}: cannot create the folder", c.out.display()))?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    Ok(previous.unwrap_or_else(|| Manifest {
        schema: 1,
        tool: format!("ign-edge {} capture", env!("CARGO_PKG_VERSION")),
        source: c.source.clone(),
        started_unix,
        size: c.size,
        channels: c.channels,
        every_s: c.every.as_secs_f64(),
        min_change: c.min_change,
        roi: c.roi.map(|r| format!("{},{},{},{}", r.x, r.y, r.w, r.h)),
        frames: Vec::new(),
        skipped_similar: 0,
        stopped_by: "running".into(),
    }))
}

/// The source read on a thread of its own, so that a read that blocks (a camera that stopped
/// delivering, a pipe that sends nothing) never keeps Ctrl-C from ending the capture.
fn reader(mut src: Box<dyn source::Source>) -> Result<Receiver<Result<Frame>>> {
    let (tx, rx) = sync_channel(2);
    std::thread::Builder::new()
        .name("capture-source".into())
        .spawn(move || loop {
            match src.next_frame() {
                Ok(Some(f)) => {
                    if tx.send(Ok(f)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        })
        .context("cannot start the source's thread")?;
    Ok(rx)
}

/// What decides which frames are kept.
struct Keeper {
    kept: u64,
    /// The number the next file gets.
    next: u64,
    last: Option<RgbImage>,
    last_kept_at: Option<Instant>,
    buf: Vec<f32>,
}

impl Keeper {
    fn new(c: &CaptureConfig, m: &Manifest) -> Keeper {
        Keeper {
            kept: 0,
            next: m.frames.len() as u64,
            last: None,
            last_kept_at: None,
            buf: vec![0.0; c.channels * c.size * c.size],
        }
    }

    /// Whether `every` has passed since the last kept frame.
    fn due(&self, every: Duration) -> bool {
        self.last_kept_at.is_none_or(|t| t.elapsed() >= every)
    }

    /// Keep `frame` unless it repeats the last kept one; true when kept.
    fn keep(
        &mut self,
        frame: &Frame,
        pre: &Preprocess,
        c: &CaptureConfig,
        start: Instant,
        m: &mut Manifest,
    ) -> Result<bool> {
        pre.run(&frame.rgb, &mut self.buf);
        let img = chw_to_image(&self.buf, c.channels, c.size, c.size);
        let change = self.last.as_ref().map(|l| mean_abs_difference(l, &img));
        if change.is_some_and(|d| d < c.min_change) {
            m.skipped_similar += 1;
            return Ok(false);
        }
        let file = format!("frame-{:06}.png", self.next);
        crate::fsio::save_png(&c.out.join(&file), &img)?;
        m.frames.push(CapturedFrame {
            file,
            seq: frame.seq,
            t_s: start.elapsed().as_secs_f64(),
            change,
        });
        self.next += 1;
        self.kept += 1;
        self.last = Some(img);
        self.last_kept_at = Some(Instant::now());
        Ok(true)
    }
}

/// Mean absolute difference of two images of the same size, in grey levels (0 to 255).
///
/// ```
/// use image::{Rgb, RgbImage};
/// let a = RgbImage::from_pixel(4, 4, Rgb([10, 10, 10]));
/// let b = RgbImage::from_pixel(4, 4, Rgb([13, 10, 7]));
/// assert_eq!(ign_edge::app::capture::mean_abs_difference(&a, &b), 2.0);
/// ```
pub fn mean_abs_difference(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    total as f64 / a.as_raw().len().max(1) as f64
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    crate::fsio::atomic_write(
        &dir.join(MANIFEST),
        serde_json::to_string_pretty(m)?.as_bytes(),
    )
}

/// The manifest of the capture in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let p = dir.join(MANIFEST);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a capture manifest (move it away to start anew)",
            p.display()
        )
    })
}
