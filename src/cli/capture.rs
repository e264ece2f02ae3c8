//! `ign-edge capture`: parses into [`CaptureConfig`] and runs it ([`crate::app::capture`]),
//! with a progress bar.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::args::choice;
use crate::app::capture::{capture, CaptureConfig};
use crate::pipeline::preprocess::Rect;
use crate::pipeline::source::{CameraFormat, SourceOptions};

/// Capture frames of your scene for training: PNGs at the model's size and a manifest.
///
/// Frames are cropped and resized as `ign-edge run` feeds the model (the centred square, or
/// --roi), so the model learns exactly what the loop will show it. Near-duplicates of the last
/// kept frame are skipped. Every PNG and the manifest (source, time, settings, one entry per
/// frame) are written whole, so the folder is complete whenever the command stops, Ctrl-C
/// included. Train on it with `ign-train train --data DIR --recipe scene`.
///
/// Examples:
///   ign-edge capture --source v4l2:/dev/video0 --out scene/ --frames 300 --every 1
///   ign-edge capture --source rpicam --out scene/ --frames 300 --every 2
///   ign-edge capture --source file:clip.y4m --out scene/ --frames 500
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CaptureCmd {
    /// Frame source, as `ign-edge run --source` takes it (see `ign-edge run --help`).
    #[arg(long)]
    pub source: String,
    /// Folder for the PNGs and manifest.json (created).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Frames to keep.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
    /// Seconds between kept frames of a live camera (0: every frame). Recorded sources give
    /// every frame.
    #[arg(long, default_value_t = 0.0)]
    pub every: f64,
    /// Take the size and channels from this model (its input shape) instead of --size/--gray.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Output size in pixels (square): the scene model's 64 by default.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Gray PNGs (for a 1-channel model) instead of RGB.
    #[arg(long)]
    pub gray: bool,
    /// Region of the frame to keep, x,y,w,h in pixels (default: the centred square).
    #[arg(long)]
    pub roi: Option<Rect>,
    /// Skip a frame that differs from the last kept one by less than this mean absolute
    /// difference, in grey levels of 255.
    #[arg(long, default_value_t = 1.0)]
    pub min_change: f64,
    /// Add to the capture already in --out (same size), numbering on.
    #[arg(long)]
    pub append: bool,
    /// Frame rate of the test source.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Camera resolution for v4l2 and rpicam, WxH.
    #[arg(long, default_value = "640x480")]
    pub camera_size: String,
    /// Camera frame rate for v4l2 and rpicam (0: the camera's default; rpicam: 30).
    #[arg(long, default_value_t = 0.0)]
    pub camera_fps: f64,
    /// Camera pixel format for v4l2.
    #[arg(long, default_value = "auto", value_parser = choice::<CameraFormat>(&CameraFormat::NAMES))]
    pub camera_format: CameraFormat,
}

impl CaptureCmd {
    pub fn run(self) -> Result<()> {
        let (size, channels) = match &self.model {
            Some(m) => {
                let info = crate::model::Model::load(m)?.info;
                if info.height != info.width {
                    anyhow::bail!(
                        "{}: capture writes square frames; the model takes {}x{}",
                        m.display(),
                        info.width,
                        info.height
                    );
                }
                (info.height, info.channels)
            }
            None => (self.size, if self.gray { 1 } else { 3 }),
        };
        if !self.every.is_finite() || self.every < 0.0 {
            anyhow::bail!("--every {}: give seconds, 0 or more", self.every);
        }
        let (w, h) = crate::app::run::parse_size(&self.camera_size)
            .map_err(|e| anyhow::anyhow!("--camera-size {e}"))?;
        let c = CaptureConfig {
            source: self.source,
            source_options: SourceOptions {
                looping: false,
                fps: self.fps,
                camera_size: Some((w, h)),
                camera_fps: self.camera_fps,
                camera_format: self.camera_format,
                stop: None,
            },
            out: self.out,
            frames: self.frames,
            every: Duration::from_secs_f64(self.every),
            size,
            channels,
            roi: self.roi,
            min_change: self.min_change,
            append: self.append,
        };
        let stop = Arc::new(AtomicBool::new(false));
        crate::signals::stop_on_signals(&stop)?;
        let bar = indicatif::ProgressBar::new(c.frames);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} frames, {msg} [{elapsed_precise}, eta {eta}]",
            )
            .expect("a valid template"),
        );
        let m = capture(&c, &stop, |p| {
            bar.set_position(p.kept);
            bar.set_message(format!("{} duplicates skipped", p.skipped_similar));
        });
        bar.finish_and_clear();
        let m = m?;
        eprintln!(
            "captured {} frames from {} into {} ({} duplicates skipped; stopped: {})",
            m.frames.len(),
            m.source,
            c.out.display(),
            m.skipped_similar,
            m.stopped_by
        );
        Ok(())
    }
}
