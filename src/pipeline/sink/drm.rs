//! `drm[:/dev/dri/cardN]`: a KMS dumb buffer on the first connected display, for boards without
//! `/dev/fb0` (Raspberry Pi 5 with the KMS driver, RK3588 HDMI). The sink takes the display's
//! preferred mode, shows one XRGB8888 buffer on its CRTC, and puts the CRTC back as it found it
//! when the loop ends. It needs DRM master: stop the desktop (or run from a text console).

use anyhow::{anyhow, bail, Context, Result};
use drm::buffer::DrmFourcc;
use drm::control::{connector, crtc, dumbbuffer::DumbBuffer, framebuffer, Device as _, Mode};
use image::RgbImage;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use super::fb::encode_pixel;
use super::Sink;

/// An open DRM device.
struct Card(std::fs::File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for Card {}
impl drm::control::Device for Card {}

/// Shows frames on a display through KMS.
pub struct DrmSink {
    path: PathBuf,
    card: Card,
    connector: connector::Handle,
    crtc: crtc::Handle,
    mode: Mode,
    buffer: Option<DumbBuffer>,
    fb: Option<framebuffer::Handle>,
    saved: Option<crtc::Info>,
    /// The same restore, for a second signal that ends the process before [`Sink::finish`].
    forced_restore: Option<crate::signals::Restore>,
    width: u32,
    height: u32,
}

/// The first connected connector with a mode, its preferred mode and a CRTC that can drive it.
fn pick_output(card: &Card) -> Result<(connector::Handle, Mode, crtc::Handle)> {
    let res = card.resource_handles()?;
    for &h in res.connectors() {
        let info = card.get_connector(h, false)?;
        if info.state() != connector::State::Connected || info.modes().is_empty() {
            continue;
        }
        let mode = info.modes()[0];
        let encoders = info
            .current_encoder()
            .into_iter()
            .chain(info.encoders().iter().copied());
        for e in encoders {
            let enc = card.get_encoder(e)?;
            if let Some(c) = enc.crtc() {
                return Ok((h, mode, c));
            }
            if let Some(&c) = res.filter_crtcs(enc.possible_crtcs()).first() {
                return Ok((h, mode, c));
            }
        }
    }
    bail!("no connected display with a mode (is the monitor plugged in and on?)")
}

impl DrmSink {
    /// Open `path` (default `/dev/dri/card0`) and show a black frame on its first display.
    pub fn open(path: &str) -> Result<Self> {
        let path = PathBuf::from(if path.is_empty() {
            "/dev/dri/card0"
        } else {
            path
        });
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "{}: cannot open the DRM device (no KMS driver, or add the user to the video/render groups)",
                    path.display()
                )
            })?;
        let card = Card(file);
        let ctx = |e: std::io::Error, what: &str| anyhow!("{}: {what}: {e}", path.display());
        let (connector, mode, crtc) =
            pick_output(&card).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let (w, h) = mode.size();
        let (width, height) = (w as u32, h as u32);
        let saved = card.get_crtc(crtc).ok();
        let mut buffer = card
            .create_dumb_buffer((width, height), DrmFourcc::Xrgb8888, 32)
            .map_err(|e| ctx(e, "cannot create a dumb buffer"))?;
        {
            let mut map = card
                .map_dumb_buffer(&mut buffer)
                .map_err(|e| ctx(e, "cannot map the dumb buffer"))?;
            map.as_mut().fill(0);
        }
        let fb = card
            .add_framebuffer(&buffer, 24, 32)
            .map_err(|e| ctx(e, "cannot add a framebuffer"))?;
        card.set_crtc(crtc, Some(fb), (0, 0), &[connector], Some(mode))
            .map_err(|e| {
                ctx(
                    e,
                    "cannot set the display mode (another program holds DRM master: stop the desktop or use --sink fb / http)",
                )
            })?;
        let forced_restore = saved.and_then(|s| {
            let card = Card(card.0.try_clone().ok()?);
            Some(crate::signals::restore_on_forced_exit(move || {
                let _ = card.set_crtc(crtc, s.framebuffer(), s.position(), &[connector], s.mode());
            }))
        });
        Ok(DrmSink {
            forced_restore,
            path,
            card,
            connector,
            crtc,
            mode,
            buffer: Some(buffer),
            fb: Some(fb),
            saved,
            width,
            height,
        })
    }
}

impl Sink for DrmSink {
    fn describe(&self) -> String {
        format!(
            "drm {} {}x{}@{}",
            self.path.display(),
            self.width,
            self.height,
            self.mode.vrefresh()
        )
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn show(&mut self, canvas: &RgbImage, _seq: u64) -> Result<()> {
        let buffer = self.buffer.as_mut().expect("open until finish");
        let pitch = drm::buffer::Buffer::pitch(buffer) as usize;
        let mut map = self
            .card
            .map_dumb_buffer(buffer)
            .with_context(|| format!("{}: cannot map the dumb buffer", self.path.display()))?;
        let bytes = map.as_mut();
        let w = canvas.width().min(self.width) as usize;
        let h = canvas.height().min(self.height) as usize;
        for y in 0..h {
            let row = &mut bytes[y * pitch..y * pitch + w * 4];
            for x in 0..w {
                encode_pixel(
                    32,
                    canvas.get_pixel(x as u32, y as u32).0,
                    &mut row[x * 4..],
                );
            }
        }
        Ok(())
    }

    fn holds_display(&self) -> bool {
        true
    }

    fn finish(&mut self) -> Result<()> {
        // put the display back as it was (the console), then free the buffer
        self.forced_restore = None;
        if let Some(s) = self.saved.take() {
            let _ = self.card.set_crtc(
                self.crtc,
                s.framebuffer(),
                s.position(),
                &[self.connector],
                s.mode(),
            );
        }
        if let Some(fb) = self.fb.take() {
            let _ = self.card.destroy_framebuffer(fb);
        }
        if let Some(b) = self.buffer.take() {
            let _ = self.card.destroy_dumb_buffer(b);
        }
        Ok(())
    }
}

impl Drop for DrmSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// `drm[:<card>]`: a KMS display (default: the first card with a connected screen).
pub fn open_spec(arg: &str, _opts: &super::SinkOptions) -> Result<Box<dyn super::Sink>> {
    Ok(Box::new(DrmSink::open(arg)?))
}
