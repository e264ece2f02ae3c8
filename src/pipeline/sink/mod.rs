//! Display sinks, one file each, chosen by a spec string (`--sink SPEC`, several allowed)
//! through the name → constructor table [`SINKS`]: `null`, `png:<dir>`, `gif:<file>`,
//! `fb:<device or file>`, `drm[:<card>]` (KMS, where there is no `/dev/fb0`), `lcd:<spidev>`
//! (SPI panels, feature `lcd`); each file parses its own part of the spec. `tee` shows each
//! picture on several of them. (`http:` is the web page, a peer of the loop: [`crate::web`].)

#[cfg(target_os = "linux")]
pub mod drm;
pub mod fb;
pub mod gif;
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
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            size: (480, 200),
            every: 1,
            fb_geometry: None,
        }
    }
}

/// One kind of sink: its name, the spec it takes, and how to open it from the part of the
/// spec after `name:`.
pub struct SinkKind {
    pub name: &'static str,
    /// The spec's form, as `--help` lists it.
    pub usage: &'static str,
    /// What it shows on, in a few words.
    pub about: &'static str,
    pub open: fn(&str, &SinkOptions) -> Result<Box<dyn Sink>>,
}

/// Every sink this build knows, by name.
pub const SINKS: &[SinkKind] = &[
    SinkKind {
        name: "null",
        usage: "null",
        about: "nothing (headless runs, benchmarks)",
        open: null::open_spec,
    },
    SinkKind {
        name: "png",
        usage: "png:<dir>",
        about: "one PNG per frame (--every N)",
        open: png::open_spec,
    },
    SinkKind {
        name: "gif",
        usage: "gif:<file.gif>",
        about: "an animated GIF",
        open: gif::open_spec,
    },
    SinkKind {
        name: "fb",
        usage: "fb[:/dev/fbN]",
        about: "a Linux framebuffer (--fb-geometry WxH:bpp for a plain file)",
        open: fb::open_spec,
    },
    #[cfg(target_os = "linux")]
    SinkKind {
        name: "drm",
        usage: "drm[:/dev/dri/cardN]",
        about: "a KMS display, where /dev/fb0 is absent (Pi 5, RK3588)",
        open: drm::open_spec,
    },
    SinkKind {
        name: "lcd",
        usage: "lcd:/dev/spidevB.C[,option=value...]",
        about: "an SPI LCD, ST7789/ILI9341 (feature lcd)",
        open: lcd::open_spec,
    },
];

/// The sinks for `--help`: one line each.
pub fn help() -> String {
    SINKS
        .iter()
        .map(|k| format!("  {:<38} {}", k.usage, k.about))
        .collect::<Vec<_>>()
        .join("\n")
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

/// Open a sink from its spec (`name` or `name:argument`).
pub fn open(spec: &str, opts: &SinkOptions) -> Result<Box<dyn Sink>> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match SINKS.iter().find(|k| k.name == name) {
        Some(k) => (k.open)(arg, opts),
        None => {
            let names: Vec<&str> = SINKS.iter().map(|k| k.usage).collect();
            bail!("{spec}: unknown sink; use {}", names.join(", "))
        }
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
