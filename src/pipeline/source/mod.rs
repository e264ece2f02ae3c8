//! Frame sources, one file each, chosen by a spec string (`--source SPEC`) through the
//! name → constructor table [`SOURCES`]: `test`, `file:<image|folder|video.y4m>`, `y4m:-`
//! (stdin) or `y4m:<path>`, `v4l2:/dev/videoN` (webcams), `rpicam` (Raspberry Pi camera
//! modules) and, with the `gstreamer` feature, `gst:<pipeline>` (any GStreamer source
//! pipeline). Each file parses its own part of the spec.

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CameraFormat {
    /// YUYV when the camera has it (no decoding), else MJPEG.
    #[default]
    Auto,
    Yuyv,
    Mjpeg,
}

impl CameraFormat {
    /// The names `--camera-format` takes.
    pub const NAMES: [&'static str; 3] = ["auto", "yuyv", "mjpeg"];
}

impl std::str::FromStr for CameraFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CameraFormat::Auto),
            "yuyv" => Ok(CameraFormat::Yuyv),
            "mjpeg" => Ok(CameraFormat::Mjpeg),
            _ => bail!("{s}: not a camera format; use auto, yuyv or mjpeg"),
        }
    }
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

/// One kind of source: its name, the spec it takes, and how to open it from the part of the
/// spec after `name:`.
pub struct SourceKind {
    pub name: &'static str,
    /// The spec's form, as `--help` lists it.
    pub usage: &'static str,
    /// What it reads, in a few words.
    pub about: &'static str,
    pub open: fn(&str, &SourceOptions) -> Result<Box<dyn Source>>,
}

/// Every source this build knows, by name.
pub const SOURCES: &[SourceKind] = &[
    SourceKind {
        name: "test",
        usage: "test[:patch=A..B]",
        about: "a synthetic moving scene (--fps)",
        open: test_pattern::open_spec,
    },
    SourceKind {
        name: "file",
        usage: "file:<image|folder|video.y4m>",
        about: "recorded frames, read at the loop's pace",
        open: file::open_spec,
    },
    SourceKind {
        name: "y4m",
        usage: "y4m:-|<file.y4m>",
        about: "YUV4MPEG2, e.g. `ffmpeg ... -f yuv4mpegpipe -`",
        open: y4m::open_spec,
    },
    #[cfg(target_os = "linux")]
    SourceKind {
        name: "v4l2",
        usage: "v4l2[:/dev/videoN]",
        about: "a USB webcam, YUYV or MJPEG (waits if unplugged)",
        open: v4l2::open_spec,
    },
    SourceKind {
        name: "rpicam",
        usage: "rpicam[:<rpicam-vid args>]",
        about: "a Raspberry Pi camera module",
        open: rpicam::open_spec,
    },
    SourceKind {
        name: "gst",
        usage: "gst:<pipeline>",
        about: "any GStreamer source pipeline (feature gstreamer)",
        open: open_gst,
    },
];

#[cfg(feature = "gstreamer")]
fn open_gst(arg: &str, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    gstreamer::open_spec(arg, opts)
}

#[cfg(not(feature = "gstreamer"))]
fn open_gst(arg: &str, _opts: &SourceOptions) -> Result<Box<dyn Source>> {
    bail!(
        "gst:{arg}: this ign-edge was built without GStreamer; rebuild with `cargo build --release --features gstreamer` (needs libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev)"
    )
}

/// The sources for `--help`: one line each.
pub fn help() -> String {
    SOURCES
        .iter()
        .map(|k| format!("  {:<38} {}", k.usage, k.about))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Open a source from its spec (`name` or `name:argument`).
pub fn open(spec: &str, opts: &SourceOptions) -> Result<Box<dyn Source>> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match SOURCES.iter().find(|k| k.name == name) {
        Some(k) => (k.open)(arg, opts),
        None => {
            let names: Vec<&str> = SOURCES.iter().map(|k| k.usage).collect();
            bail!("{spec}: unknown source; use {}", names.join(", "))
        }
    }
}
