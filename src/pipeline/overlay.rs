//! The on-screen overlay, drawn with embedded-graphics so the same code draws on every sink:
//! fps, per-stage latency (capture, preprocess, inference, display), end-to-end latency
//! (capture to display), dropped frames, model, precision, k.

use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::Text;
use image::RgbImage;

use super::telemetry::Telemetry;
use crate::draw::ImageTarget;

/// What the overlay shows: the loop's [`Telemetry`].
pub type Hud = Telemetry;

impl Telemetry {
    /// The two text lines.
    pub fn lines(&self) -> [String; 2] {
        [
            format!(
                "{} {} k={}  {:.1} fps  e2e {:.1} ms  drops {}",
                self.model, self.precision, self.steps, self.fps, self.e2e_ms, self.dropped
            ),
            format!(
                "cap {:.1}  pre {:.2}  inf {:.2}  disp {:.1} ms{}",
                self.capture_ms,
                self.preprocess_ms,
                self.inference_ms,
                self.display_ms,
                self.anomaly_line()
            ),
        ]
    }

    /// `  score 0.123 > 0.300 ANOMALY` (or `< 0.300 ok`, or the score alone without a
    /// threshold) with `--anomaly`; empty otherwise.
    fn anomaly_line(&self) -> String {
        match (self.anomaly_score, self.anomaly_threshold) {
            (Some(s), Some(t)) if s > t => format!("  score {s:.3} > {t:.3} ANOMALY"),
            (Some(s), Some(t)) => format!("  score {s:.3} <= {t:.3} ok"),
            (Some(s), None) => format!("  score {s:.3}"),
            _ => String::new(),
        }
    }

    /// Draw the bar at `y` (its height is [`super::compose::HUD_HEIGHT`]).
    pub fn draw(&self, canvas: &mut RgbImage, y: u32) {
        let w = canvas.width();
        let mut t = ImageTarget(canvas);
        let _ = Rectangle::new(
            Point::new(0, y as i32),
            Size::new(w, super::compose::HUD_HEIGHT),
        )
        .into_styled(PrimitiveStyle::with_fill(Rgb888::BLACK))
        .draw(&mut t);
        let style = MonoTextStyle::new(&FONT_6X10, Rgb888::new(120, 255, 120));
        for (i, line) in self.lines().iter().enumerate() {
            let _ =
                Text::new(line, Point::new(4, y as i32 + 10 + 12 * i as i32), style).draw(&mut t);
        }
    }
}
