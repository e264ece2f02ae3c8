//! Several sinks at once (`--sink fb:/dev/fb0 --sink http:`): every picture goes to each.

use anyhow::Result;
use image::RgbImage;

use super::Sink;
use crate::pipeline::overlay::Hud;

/// Shows each picture on all its sinks; the first one sets the canvas size.
pub struct TeeSink {
    sinks: Vec<Box<dyn Sink>>,
}

impl TeeSink {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        TeeSink { sinks }
    }
}

impl Sink for TeeSink {
    fn describe(&self) -> String {
        self.sinks
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
            .join(" + ")
    }
    fn size(&self) -> (u32, u32) {
        self.sinks[0].size()
    }
    fn wants_picture(&self) -> bool {
        self.sinks.iter().any(|s| s.wants_picture())
    }
    fn status(&mut self, hud: &Hud) {
        for s in &mut self.sinks {
            s.status(hud);
        }
    }
    fn show(&mut self, canvas: &RgbImage, seq: u64) -> Result<()> {
        for s in &mut self.sinks {
            s.show(canvas, seq)?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        let mut first_err = None;
        // screens first: the console comes back before a slow sink (a GIF) is written
        for screen_pass in [true, false] {
            for s in self
                .sinks
                .iter_mut()
                .filter(|s| s.holds_display() == screen_pass)
            {
                if let Err(e) = s.finish() {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn holds_display(&self) -> bool {
        self.sinks.iter().any(|s| s.holds_display())
    }
}
