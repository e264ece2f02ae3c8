//! `v4l2:/dev/videoN`: USB webcams and other V4L2 capture devices (YUYV or MJPEG), through the
//! pure-Rust `linuxvideo` crate (no libclang, no libv4l). If the camera disappears mid-run
//! (unplugged, reset), the source says so and reopens it with backoff instead of exiting.

use anyhow::{anyhow, bail, Result};
use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, Device, Fract};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::convert::{mjpeg_to_rgb, yuyv_to_rgb};
use super::{CameraFormat, Source, SourceOptions};
use crate::pipeline::frame::Frame;

/// A streaming V4L2 camera.
pub struct V4l2Source {
    path: PathBuf,
    opts: SourceOptions,
    stream: Option<ReadStream>,
    format: CamFormat,
    seq: u64,
}

/// What the driver chose.
#[derive(Clone, Copy, Debug)]
struct CamFormat {
    w: u32,
    h: u32,
    pixel_format: PixelFormat,
    stride: usize,
}

struct Opened {
    stream: ReadStream,
    format: CamFormat,
}

fn open_device(path: &Path, opts: &SourceOptions) -> Result<Opened> {
    let device = Device::open(path).map_err(|e| {
        anyhow!(
            "{}: cannot open the camera ({e}); is it plugged in? `ls /dev/video*` lists cameras, and the user needs the video group",
            path.display()
        )
    })?;
    let formats: Vec<PixelFormat> = device
        .formats(BufType::VIDEO_CAPTURE)
        .filter_map(|f| f.ok().map(|f| f.pixel_format()))
        .collect();
    if formats.is_empty() {
        bail!(
            "{}: not a video capture device (no capture formats)",
            path.display()
        );
    }
    let want = |f: PixelFormat| formats.contains(&f);
    let pixel_format = match opts.camera_format {
        CameraFormat::Yuyv if want(PixelFormat::YUYV) => PixelFormat::YUYV,
        CameraFormat::Mjpeg if want(PixelFormat::MJPG) => PixelFormat::MJPG,
        CameraFormat::Auto if want(PixelFormat::YUYV) => PixelFormat::YUYV,
        CameraFormat::Auto if want(PixelFormat::MJPG) => PixelFormat::MJPG,
        f => bail!(
            "{}: the camera offers {:?}, not {f:?}; pass --camera-format yuyv or mjpeg",
            path.display(),
            formats
        ),
    };
    let (w, h) = opts.camera_size.unwrap_or((640, 480));
    let capture = device
        .video_capture(PixFormat::new(w, h, pixel_format))
        .map_err(|e| {
            anyhow!(
                "{}: cannot set {w}x{h} {pixel_format:?}: {e}",
                path.display()
            )
        })?;
    if opts.camera_fps > 0.0 {
        // The driver picks the nearest rate it has; a refusal is not fatal.
        let _ =
            capture.set_frame_interval(Fract::new(1000, (opts.camera_fps * 1000.0).round() as u32));
    }
    let f = capture.format();
    let format = CamFormat {
        w: f.width(),
        h: f.height(),
        pixel_format: f.pixel_format(),
        stride: f.bytes_per_line() as usize,
    };
    let stream = capture
        .into_stream()
        .map_err(|e| anyhow!("{}: cannot start streaming: {e}", path.display()))?;
    Ok(Opened { stream, format })
}

impl V4l2Source {
    /// Open the camera at `path` (an error now if it is missing: a typo should not retry).
    pub fn open(path: &Path, opts: &SourceOptions) -> Result<V4l2Source> {
        let o = open_device(path, opts)?;
        Ok(V4l2Source {
            path: path.to_path_buf(),
            opts: opts.clone(),
            stream: Some(o.stream),
            format: o.format,
            seq: 0,
        })
    }

    fn stopped(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Reopen after the camera went away: 0.5 s, 1 s, 2 s ... up to 5 s between tries.
    fn reconnect(&mut self, why: &str) -> Result<bool> {
        self.stream = None;
        let mut wait = Duration::from_millis(500);
        loop {
            log::warn!(
                "camera {} lost ({why}); retrying in {:.1} s (Ctrl-C to stop)",
                self.path.display(),
                wait.as_secs_f64()
            );
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.stopped() {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match open_device(&self.path, &self.opts) {
                Ok(o) => {
                    log::warn!("camera {} is back", self.path.display());
                    self.stream = Some(o.stream);
                    self.format = o.format;
                    return Ok(true);
                }
                Err(e) => {
                    let _ = e;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Source for V4l2Source {
    fn describe(&self) -> String {
        format!(
            "v4l2 {} {}x{} {:?}",
            self.path.display(),
            self.format.w,
            self.format.h,
            self.format.pixel_format
        )
    }

    fn live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.stopped() {
                return Ok(None);
            }
            let Some(stream) = self.stream.as_mut() else {
                if !self.reconnect("not streaming")? {
                    return Ok(None);
                }
                continue;
            };
            let CamFormat {
                w,
                h,
                pixel_format: fmt,
                stride,
            } = self.format;
            let mut started = Instant::now();
            let r = stream.dequeue(|buf| {
                started = Instant::now();
                let img = if fmt == PixelFormat::MJPG {
                    mjpeg_to_rgb(&buf)
                } else {
                    yuyv_to_rgb(&buf, w, h, stride)
                };
                Ok(img)
            });
            match r {
                Ok(Ok(rgb)) => {
                    let f = Frame::ready(rgb, self.seq, started);
                    self.seq += 1;
                    return Ok(Some(f));
                }
                // A corrupt frame (USB hiccup): skip it.
                Ok(Err(e)) => log::warn!("camera {}: skipping a frame: {e:#}", self.path.display()),
                Err(e) => {
                    if !self.reconnect(&e.to_string())? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// `v4l2[:/dev/videoN]`: a webcam (default `/dev/video0`).
pub fn open_spec(arg: &str, opts: &super::SourceOptions) -> Result<Box<dyn super::Source>> {
    let dev = if arg.is_empty() { "/dev/video0" } else { arg };
    Ok(Box::new(V4l2Source::open(Path::new(dev), opts)?))
}
