//! Frame sources, one file each, chosen by a spec string (`--source SPEC`):
//! `test`, `file:<image|folder|video.y4m>`, `y4m:-` (stdin) or `y4m:<path>`,
//! `v4l2:/dev/videoN` (webcams), `rpicam` (Raspberry Pi camera modules) and, with the
//! `gstreamer` feature, `gst:<pipeline>` (any GStreamer source pipeline).

pub mod convert;
pub mod file;
#[cfg(feature = "gstreamer")]
pub mod gstreamer;
pub mod rpicam;
pub mod test_pattern;
#[cfg(target_os = "linux")]
pub mod v4l2;
pub mod y4m;

use anyhow::{bail, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::frame::Frame;

/// Something that produces frames.
pub trait Source: Send {
    /// What it is, for the summary.
    fn describe(&self) -> String;
    /// The next frame; `Ok(None)` at the end of a finite stream.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
    /// A live source (a camera) runs at its own pace and the loop drops stale frames; a
    /// recorded one (files) is read at the loop's pace, so nothing is dropped.
    fn live(&self) -> bool {
        false
    }
}

/// Pixel format asked of a camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraFormat {
    /// YUYV when the camera has it (no decoding), else MJPEG.
    #[default]
    Auto,
    Yuyv,
    Mjpeg,
}

/// Options shared by sources.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// Start again at the end of a file or folder.
    pub looping: bool,
    /// Frame rate of the synthetic `test` source (0: as fast as possible).
    pub fps: f64,
    /// Camera resolution (default 640x480).
    pub camera_size: Option<(u32, u32)>,
    /// Camera frame rate (0: the camera's default).
    pub camera_fps: f64,
    pub camera_format: CameraFormat,
    /// Set when the run should stop (cameras waiting to reconnect give up).
    pub stop: Option<Arc<AtomicBool>>,
}

/// Open a source from its spec.
pub fn open(spec: &str, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "test" => Ok(Box::new(test_pattern::TestPattern::new(160, 120, opts.fps))),
        "file" if !arg.is_empty() => file::open(std::path::Path::new(arg), opts),
        "y4m" if arg == "-" => Ok(Box::new(y4m::Y4mSource::new(
            Box::new(std::io::BufReader::new(std::io::stdin())),
            "stdin".into(),
        )?)),
        "y4m" if !arg.is_empty() => file::open(std::path::Path::new(arg), opts),
        #[cfg(target_os = "linux")]
        "v4l2" => {
            let dev = if arg.is_empty() { "/dev/video0" } else { arg };
            Ok(Box::new(v4l2::V4l2Source::open(std::path::Path::new(dev), opts)?))
        }
        "rpicam" => Ok(Box::new(rpicam::RpicamSource::spawn(arg, opts)?)),
        #[cfg(feature = "gstreamer")]
        "gst" => Ok(Box::new(gstreamer::GstSource::open(arg, opts)?)),
        #[cfg(not(feature = "gstreamer"))]
        "gst" => bail!(
            "{spec}: this ign-edge was built without GStreamer; rebuild with `cargo build --release --features gstreamer` (needs libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev)"
        ),
        _ => bail!(
            "{spec}: unknown source; use test, file:<image|folder|video.y4m>, y4m:- (stdin), v4l2:/dev/videoN, rpicam or gst:<pipeline>"
        ),
    }
}
