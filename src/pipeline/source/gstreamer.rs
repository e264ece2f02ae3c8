//! `gst:<pipeline>`: any GStreamer source pipeline (feature `gstreamer`), in `gst-launch-1.0`
//! syntax without the sink: ign-edge appends `videoconvert ! video/x-raw,format=RGB ! appsink`
//! and pulls RGB frames from it.
//!
//! ```text
//! ign-edge run --source 'gst:libcamerasrc ! video/x-raw,width=640,height=480'
//! ign-edge run --source 'gst:v4l2src device=/dev/video0 ! image/jpeg,width=1280 ! jpegdec'
//! ign-edge run --source 'gst:rtspsrc location=rtsp://cam/stream ! decodebin'
//! ign-edge run --source 'gst:filesrc location=clip.mp4 ! decodebin'
//! ```
//!
//! A live pipeline (a camera, a network stream) runs at its own pace and the loop keeps only the
//! newest frame; a file pipeline is read at the loop's pace, every frame, until its end.

use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use image::RgbImage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Source, SourceOptions};
use crate::pipeline::frame::Frame;

/// Name of the appsink ign-edge appends to the user's pipeline.
const SINK_NAME: &str = "ign_edge_sink";

/// How long one wait for a sample lasts before the stop flag and the bus are checked again.
const POLL: Duration = Duration::from_millis(100);

/// Frames pulled from a running GStreamer pipeline.
pub struct GstSource {
    description: String,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    live: bool,
    seq: u64,
    stop: Option<Arc<AtomicBool>>,
}

/// The full pipeline that ign-edge runs for the user's source part.
pub fn full_pipeline(description: &str) -> String {
    format!(
        "{description} ! videoconvert ! video/x-raw,format=RGB ! appsink name={SINK_NAME} sync=false"
    )
}

impl GstSource {
    /// Parse and start the pipeline; fails with one line naming the pipeline and the fix when
    /// GStreamer, an element or the device is missing.
    pub fn open(description: &str, opts: &SourceOptions) -> Result<GstSource> {
        let description = description.trim();
        if description.is_empty() {
            bail!("gst: needs a source pipeline, e.g. --source 'gst:videotestsrc' or 'gst:v4l2src device=/dev/video0'");
        }
        if description.contains("appsink") {
            bail!("gst:{description}: leave out the sink; ign-edge appends `videoconvert ! video/x-raw,format=RGB ! appsink` itself");
        }
        gst::init().map_err(|e| {
            anyhow!("gst:{description}: cannot initialise GStreamer ({e}); install it (`sudo apt install gstreamer1.0-plugins-base`)")
        })?;
        let launch = full_pipeline(description);
        let element = gst::parse::launch(&launch).map_err(|e| {
            let hint = if e.matches(gst::ParseError::NoSuchElement) {
                "; install the plugin that provides it (gstreamer1.0-plugins-good for v4l2src, \
                 gstreamer1.0-libcamera for libcamerasrc, gstreamer1.0-plugins-bad, -ugly, -libav) \
                 and check with gst-inspect-1.0"
            } else {
                "; check the pipeline with `gst-launch-1.0 <pipeline> ! fakesink`"
            };
            anyhow!("gst:{description}: {e}{hint}")
        })?;
        let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
            anyhow!("gst:{description}: not a pipeline; give a chain of elements joined by `!`")
        })?;
        let sink = pipeline
            .by_name(SINK_NAME)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .with_context(|| format!("gst:{description}: the appended appsink is missing"))?;
        let mut src = GstSource {
            description: description.to_string(),
            pipeline,
            sink,
            live: false,
            seq: 0,
            stop: opts.stop.clone(),
        };
        // Pausing first tells a live pipeline (no preroll) from a file.
        let started = src
            .pipeline
            .set_state(gst::State::Paused)
            .and_then(|paused| {
                src.live = paused == gst::StateChangeSuccess::NoPreroll;
                src.pipeline.set_state(gst::State::Playing)
            });
        if started.is_err() {
            return Err(src.bus_error().unwrap_or_else(|| {
                anyhow!("gst:{description}: the pipeline would not start; run it with `gst-launch-1.0 -v` to see why")
            }));
        }
        // A camera drops what the loop cannot take; a file is read at the loop's pace.
        if src.live {
            src.sink.set_max_buffers(1);
            src.sink.set_drop(true);
        } else {
            src.sink.set_max_buffers(2);
        }
        Ok(src)
    }

    /// The first error on the pipeline's bus, as one line.
    fn bus_error(&self) -> Option<anyhow::Error> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                let from = err
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let debug = err
                    .debug()
                    .map(|d| format!(" ({})", d.lines().last().unwrap_or_default()))
                    .unwrap_or_default();
                return Some(anyhow!(
                    "gst:{}: {from}: {}{debug}",
                    self.description,
                    err.error()
                ));
            }
        }
        None
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// Copy an RGB video frame (rows padded to the stride GStreamer chose) into an image.
fn to_image(sample: &gst::Sample) -> Result<RgbImage> {
    let caps = sample.caps().context("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).context("caps are not raw video")?;
    let buffer = sample.buffer().context("sample without a buffer")?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| anyhow!("cannot map the video buffer"))?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).context("no pixel plane")?;
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in data.chunks(stride).take(h) {
        rgb.extend_from_slice(&row[..w * 3]);
    }
    RgbImage::from_raw(w as u32, h as u32, rgb).context("frame smaller than its caps")
}

impl Source for GstSource {
    fn describe(&self) -> String {
        format!(
            "gstreamer {} ({})",
            self.description,
            if self.live { "live" } else { "file" }
        )
    }

    fn live(&self) -> bool {
        self.live
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.stopping() {
                return Ok(None);
            }
            let t0 = Instant::now();
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64))
            {
                let rgb = to_image(&sample)
                    .with_context(|| format!("gst:{}: frame {}", self.description, self.seq))?;
                let frame = Frame::ready(rgb, self.seq, t0);
                self.seq += 1;
                return Ok(Some(frame));
            }
            if let Some(err) = self.bus_error() {
                return Err(err);
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
        }
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// `gst:<pipeline>`: any GStreamer source pipeline, gst-launch syntax without the sink.
pub fn open_spec(arg: &str, opts: &super::SourceOptions) -> Result<Box<dyn super::Source>> {
    Ok(Box::new(GstSource::open(arg, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(description: &str) -> Result<GstSource> {
        GstSource::open(description, &SourceOptions::default())
    }

    fn frames(src: &mut GstSource) -> Vec<Frame> {
        std::iter::from_fn(|| src.next_frame().unwrap()).collect()
    }

    #[test]
    fn a_finite_pipeline_gives_every_frame_then_ends() {
        // An odd width makes GStreamer pad each RGB row (33*3 = 99 bytes, stride 100); a
        // padding byte in the image would break the solid colour at the start of a row.
        let mut src = open(
            "videotestsrc num-buffers=7 pattern=solid-color foreground-color=0xffff8000 \
             ! video/x-raw,width=33,height=21",
        )
        .unwrap();
        assert!(
            !src.live(),
            "a file-like pipeline is read at the loop's pace"
        );
        let got = frames(&mut src);
        assert_eq!(got.len(), 7);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f.seq, i as u64);
            assert_eq!(f.rgb.dimensions(), (33, 21));
            assert!(f.rgb.pixels().all(|p| p.0 == [255, 128, 0]), "frame {i}");
        }
        assert!(src.next_frame().unwrap().is_none(), "stays ended");
    }

    #[test]
    fn converts_other_formats_to_rgb() {
        // I420 from the source, converted by the appended videoconvert.
        let mut src = open(
            "videotestsrc num-buffers=2 pattern=checkers-8 \
             ! video/x-raw,format=I420,width=64,height=32",
        )
        .unwrap();
        let got = frames(&mut src);
        assert_eq!(got.len(), 2);
        let rgb = &got[0].rgb;
        // checkers-8: 8x8 squares, red and green alternating from a red one at the top left.
        let near = |x, y, want: [u8; 3]| {
            let p = rgb.get_pixel(x, y).0;
            assert!(
                p.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= 8),
                "({x},{y}): {p:?}, want {want:?}"
            );
        };
        near(3, 3, [255, 0, 0]);
        near(11, 3, [0, 255, 0]);
        near(3, 11, [0, 255, 0]);
        near(11, 11, [255, 0, 0]);
        near(60, 20, [0, 255, 0]);
        near(60, 28, [255, 0, 0]);
    }

    #[test]
    fn a_live_pipeline_is_live_and_stops_on_request() {
        let stop = Arc::new(AtomicBool::new(false));
        let opts = SourceOptions {
            stop: Some(stop.clone()),
            ..Default::default()
        };
        let mut src = GstSource::open(
            "videotestsrc is-live=true ! video/x-raw,width=32,height=32,framerate=30/1",
            &opts,
        )
        .unwrap();
        assert!(src.live());
        assert!(src.describe().contains("live"));
        let a = src.next_frame().unwrap().unwrap();
        let b = src.next_frame().unwrap().unwrap();
        assert!(b.seq > a.seq && b.captured > a.captured);
        stop.store(true, Ordering::Relaxed);
        assert!(src.next_frame().unwrap().is_none(), "a stopped source ends");
    }

    #[test]
    fn errors_name_the_pipeline_and_the_fix() {
        let msg = |d: &str| open(d).err().map(|e| e.to_string()).unwrap_or_default();
        let m = msg("nosuchelement ! videoflip");
        assert!(
            m.contains("nosuchelement") && m.contains("gst-inspect-1.0"),
            "{m}"
        );
        let m = msg("videotestsrc ! appsink");
        assert!(m.contains("leave out the sink"), "{m}");
        assert!(msg("  ").contains("needs a source pipeline"));
        let m = msg("videotestsrc !");
        assert!(m.starts_with("gst:videotestsrc !"), "{m}");
        let m = msg("filesrc location=/nonexistent/clip.mp4 ! decodebin");
        assert!(m.contains("/nonexistent/clip.mp4"), "{m}");
    }
}
