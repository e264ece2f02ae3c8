//! Display sinks, one file each, chosen by a spec string (`--sink SPEC`, several allowed):
//! `null`, `png:<dir>`, `gif:<file>`, `fb:<device or file>`, `drm[:<card>]` (KMS, where there is
//! no `/dev/fb0`), `lcd:<spidev>` (SPI panels, feature `lcd`), `http:[addr:port]`; `tee` shows
//! each picture on several of them.

#[cfg(target_os = "linux")]
pub mod drm;
pub mod fb;
pub mod gif;
pub mod http;
pub mod lcd;
pub mod null;
pub mod png;
pub mod tee;

use anyhow::{bail, Result};
use image::RgbImage;

/// Something that shows composed pictures.
pub trait Sink: Send {
    /// What it is, for the summary.
    fn describe(&self) -> String;
    /// The canvas size it wants.
    fn size(&self) -> (u32, u32);
    /// Show one composed picture (`size()` pixels); `seq` is the frame's sequence number.
    fn show(&mut self, canvas: &RgbImage, seq: u64) -> Result<()>;
    /// Whether the next picture will be looked at. Sinks that discard it (`null`) return
    /// false and the loop skips composing it: the canvas they get is the last one composed.
    fn wants_picture(&self) -> bool {
        true
    }
    /// The overlay figures of the frame about to be shown (for sinks that report them).
    fn status(&mut self, _now: &crate::pipeline::telemetry::Telemetry) {}
    /// Flush and close (write the GIF trailer, ...).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether it took over the screen (drm): such sinks are finished first, so the console
    /// comes back before slower sinks (a GIF being encoded) are done. They also restore the
    /// screen when dropped, so a panic or an early error gives it back too.
    fn holds_display(&self) -> bool {
        false
    }
}

/// Options shared by sinks.
#[derive(Clone)]
pub struct SinkOptions {
    /// Canvas size for sinks without a size of their own (png, gif, null).
    pub size: (u32, u32),
    /// `png:`: write every Nth frame.
    pub every: u64,
    /// `fb:` on a plain file: `(width, height, bits per pixel)`.
    pub fb_geometry: Option<(u32, u32, u32)>,
    /// `http:`: the model for the pad, the token, the client limit and the loop's controls.
    pub http: Option<http::HttpOptions>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            size: (480, 200),
            every: 1,
            fb_geometry: None,
            http: None,
        }
    }
}

/// Parse `--fb-geometry WxH:bpp`.
pub fn parse_geometry(s: &str) -> Result<(u32, u32, u32)> {
    let err = || anyhow::anyhow!("{s}: expected --fb-geometry WxH:bpp, e.g. 800x480:16");
    let (wh, bpp) = s.split_once(':').ok_or_else(err)?;
    let (w, h) = wh.split_once('x').ok_or_else(err)?;
    let g = (
        w.parse().map_err(|_| err())?,
        h.parse().map_err(|_| err())?,
        bpp.parse().map_err(|_| err())?,
    );
    if g.0 == 0 || g.1 == 0 || ![16, 24, 32].contains(&g.2) {
        bail!("{s}: width and height above 0 and 16, 24 or 32 bits per pixel");
    }
    Ok(g)
}

/// Open a sink from its spec.
pub fn open(spec: &str, opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "null" => Ok(Box::new(null::NullSink { size: opts.size })),
        "png" if !arg.is_empty() => Ok(Box::new(png::PngSink::new(arg.into(), opts)?)),
        "gif" if !arg.is_empty() => Ok(Box::new(gif::GifSink::new(arg.into(), opts)?)),
        "fb" => fb::FbSink::open(if arg.is_empty() { "/dev/fb0" } else { arg }, opts)
            .map(|s| Box::new(s) as Box<dyn Sink>),
        #[cfg(target_os = "linux")]
        "drm" => Ok(Box::new(drm::DrmSink::open(arg)?)),
        #[cfg(all(feature = "lcd", target_os = "linux"))]
        "lcd" => Ok(Box::new(lcd::LcdSink::open(arg.parse()?)?)),
        #[cfg(not(all(feature = "lcd", target_os = "linux")))]
        "lcd" => {
            arg.parse::<lcd::LcdSpec>()?;
            bail!("{spec}: this ign-edge was built without SPI LCD support; build it with `cargo build --release --features lcd`")
        }
        "http" => {
            let h = opts
                .http
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{spec}: the http sink is only available in `ign-edge run`"))?;
            Ok(Box::new(http::HttpSink::start(arg, opts.size, h)?))
        }
        _ => bail!("{spec}: unknown sink; use null, png:<dir>, gif:<file.gif>, fb[:/dev/fbN], drm[:/dev/dri/cardN], lcd:/dev/spidevB.C or http[:addr:port]"),
    }
}

/// Open every spec; several become one [`tee::TeeSink`] (the first one sets the canvas size).
pub fn open_all(specs: &[String], opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for spec in specs {
        let mut o = opts.clone();
        if let Some(first) = sinks.first() {
            o.size = Sink::size(first.as_ref());
        }
        sinks.push(open(spec, &o)?);
    }
    match sinks.len() {
        0 => bail!("no sink given"),
        1 => Ok(sinks.pop().expect("one")),
        _ => Ok(Box::new(tee::TeeSink::new(sinks))),
    }
}
