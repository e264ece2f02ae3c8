//! `test`: a synthetic moving scene that needs no hardware — thick bright strokes drifting on a
//! dark background with a little noise, like a digit drawn on a screen.

use anyhow::Result;
use image::{Rgb, RgbImage};
use std::time::Instant;

use super::Source;
use crate::pipeline::frame::Frame;

/// The synthetic scene.
pub struct TestPattern {
    w: u32,
    h: u32,
    seq: u64,
    fps: f64,
    start: Option<Instant>,
}

impl TestPattern {
    /// A `w×h` scene at `fps` frames per second (0: as fast as asked).
    pub fn new(w: u32, h: u32, fps: f64) -> Self {
        TestPattern {
            w,
            h,
            seq: 0,
            fps,
            start: None,
        }
    }

    /// The picture for frame `seq` (a pure function of `seq`).
    pub fn render(&self, seq: u64) -> RgbImage {
        let (w, h) = (self.w as f32, self.h as f32);
        let t = seq as f32 * 0.05;
        let s = h.min(w) * 0.8;
        let (cx, cy) = (
            w / 2.0 + (t * 0.7).sin() * w * 0.08,
            h / 2.0 + (t * 0.5).cos() * h * 0.06,
        );
        // a "7"-like polyline that slowly rotates and breathes
        let a = (t * 0.3).sin() * 0.25;
        let (ca, sa) = (a.cos(), a.sin());
        let pts: [(f32, f32); 3] = [(-0.25, -0.3), (0.25, -0.3), (-0.05, 0.35)];
        let p: Vec<(f32, f32)> = pts
            .iter()
            .map(|&(x, y)| (cx + s * (x * ca - y * sa), cy + s * (x * sa + y * ca)))
            .collect();
        let thick = s * (0.06 + 0.015 * (t * 1.3).sin());
        let mut noise = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        RgbImage::from_fn(self.w, self.h, |x, y| {
            let (px, py) = (x as f32, y as f32);
            let d = p
                .windows(2)
                .map(|seg| seg_dist(px, py, seg[0], seg[1]))
                .fold(f32::MAX, f32::min);
            let ink = (thick - d).clamp(0.0, 1.5) / 1.5;
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let n = (noise >> 58) as f32; // 0..63
            let v = (ink * 235.0 + 10.0 + n * 0.4).min(255.0) as u8;
            Rgb([v, v, v])
        })
    }
}

fn seg_dist(px: f32, py: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((px - a.0) * dx + (py - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)).sqrt()
}

impl Source for TestPattern {
    fn describe(&self) -> String {
        format!("test pattern {}x{}", self.w, self.h)
    }

    fn live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        // pace like a camera: frame n is due at start + n / fps
        let start = *self.start.get_or_insert_with(Instant::now);
        if self.fps > 0.0 {
            let due = start + std::time::Duration::from_secs_f64(self.seq as f64 / self.fps);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let t0 = Instant::now();
        let rgb = self.render(self.seq);
        let f = Frame::ready(rgb, self.seq, t0);
        self.seq += 1;
        Ok(Some(f))
    }
}
