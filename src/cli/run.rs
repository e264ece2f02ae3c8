//! `ign-edge run`: parses into [`crate::app::run::RunConfig`] and runs it.

use anyhow::Result;
use clap::Args;

use crate::app::run::RunConfig;

/// The live loop: camera (or file) -> projection -> display, with an overlay.
///
/// Reads frames from a source, projects each onto the model's manifold (f, and f^k with
/// --steps), shows camera | f | f^k with an overlay on a sink. Ctrl-C stops it and prints a
/// summary (frames, fps, end-to-end latency, drops).
///
/// Sources: test (a synthetic moving scene), file:<image|folder|video.y4m>, y4m:- (stdin,
/// e.g. `ffmpeg ... -f yuv4mpegpipe -`), v4l2:/dev/videoN (USB webcams: YUYV or MJPEG; if the
/// camera goes away the loop waits for it), rpicam[:<extra rpicam-vid args>] (Pi camera modules),
/// gst:<pipeline> (any GStreamer source, gst-launch syntax without the sink; feature gstreamer).
/// Sinks: null, png:<dir>, gif:<file.gif>, fb[:/dev/fbN] (--fb-geometry WxH:bpp for a file),
/// drm[:/dev/dri/cardN] (KMS, where /dev/fb0 is absent: Pi 5, RK3588), lcd:/dev/spidevB.C[,...]
/// (SPI LCDs, ST7789/ILI9341, feature lcd; options in `src/pipeline/sink/lcd.rs`),
/// http[:addr:port] (a web page with the stream, controls and a drawing pad; default
/// 127.0.0.1:8080). Give --sink several times to show on several.
///
/// Examples:
///   ign-edge run --source test --sink gif:live.gif --frames 60
///   ign-edge run --source file:drawings/ --paper --sink png:out --steps 2
///   ign-edge run --source test --sink fb:/dev/fb0
///   ign-edge run --source v4l2:/dev/video0 --camera-size 640x480 --paper --sink fb:/dev/fb0
///   ign-edge run --source rpicam --sink fb:/dev/fb0 --steps 2
///   ign-edge run --source 'gst:libcamerasrc ! video/x-raw,width=640,height=480' --sink drm
///   ign-edge run --source v4l2:/dev/video0 --sink fb:/dev/fb0 --sink http:0.0.0.0:8080 --http-token-file /etc/ign-edge/http-token
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunCmd {
    #[command(flatten)]
    pub config: RunConfig,
}

impl RunCmd {
    pub fn run(self) -> Result<()> {
        let json = self.config.json.clone();
        let summary = crate::app::run::run(self.config)?;
        eprintln!("{}", summary.line());
        if let Some(j) = &json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(&summary)?.as_bytes())?;
        }
        Ok(())
    }
}
