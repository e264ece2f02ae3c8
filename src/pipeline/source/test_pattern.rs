//! `test`: a synthetic moving scene that needs no hardware — thick bright strokes drifting on a
//! dark background with a little noise, like a digit drawn on a screen. `test:patch=A..B`
//! adds, on frames A to B (B excluded), what does not belong to it: a bright square in the
//! lower left of the model's view (the centred square), which an `--anomaly` score flags, so
//! that events can be tested without a camera. `test:patch=A..B/P` repeats it every P frames
//! (frame n has it when n mod P is in A..B): events all along, for a soak.

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
    backgrounds: Vec<RgbImage>,
    /// Frames that get the foreign square (of each period, with one).
    patch: std::ops::Range<u64>,
    period: Option<u64>,
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
            backgrounds: (0..4).map(|i| background(w, h, i + 1)).collect(),
            patch: 0..0,
            period: None,
        }
    }

    /// The same scene with the foreign square on frames `patch`, of every `period` frames
    /// when one is given.
    pub fn with_patch(self, patch: std::ops::Range<u64>, period: Option<u64>) -> Self {
        TestPattern {
            patch,
            period,
            ..self
        }
    }

    /// A bright square over the lower left of the centred square (a 28-pixel model's
    /// (2..8, 20..26)).
    fn paste_square(&self, img: &mut RgbImage) {
        let side = self.w.min(self.h);
        let (x0, y0) = ((self.w - side) / 2, (self.h - side) / 2);
        let at = |v: u32| v * side / 28;
        for y in y0 + at(20)..y0 + at(26) {
            for x in x0 + at(2)..x0 + at(8) {
                img.put_pixel(x, y, Rgb([250, 250, 250]));
            }
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
        // Background: one of a few pre-made noise images (the noise is part of the scene, and
        // making it per pixel per frame cost more than the model). Strokes: only in their
        // bounding box, widened by the ink.
        let bg = &self.backgrounds[(seq % self.backgrounds.len() as u64) as usize];
        let mut img = bg.clone();
        let margin = thick + 2.0;
        let fold = |f: fn(&(f32, f32)) -> f32| {
            p.iter()
                .map(f)
                .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)))
        };
        let ((x0, x1), (y0, y1)) = (fold(|q| q.0), fold(|q| q.1));
        let clampx = |v: f32| v.clamp(0.0, w - 1.0) as u32;
        let clampy = |v: f32| v.clamp(0.0, h - 1.0) as u32;
        let far = (thick + 1.5).powi(2);
        for y in clampy(y0 - margin)..=clampy(y1 + margin) {
            for x in clampx(x0 - margin)..=clampx(x1 + margin) {
                let (px, py) = (x as f32, y as f32);
                let d2 = p
                    .windows(2)
                    .map(|seg| seg_dist2(px, py, seg[0], seg[1]))
                    .fold(f32::MAX, f32::min);
                if d2 >= far {
                    continue;
                }
                let ink = (thick - d2.sqrt()).clamp(0.0, 1.5) / 1.5;
                let px = img.get_pixel_mut(x, y);
                let v = (ink * 235.0 + px.0[0] as f32).min(255.0) as u8;
                *px = Rgb([v, v, v]);
            }
        }
        img
    }
}

/// Dark background with a little noise (levels 10..35).
fn background(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut noise = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    RgbImage::from_fn(w, h, |_, _| {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let v = 10 + ((noise >> 58) as f32 * 0.4) as u8; // 0..63 -> 10..35
        Rgb([v, v, v])
    })
}

/// Squared distance from a point to a segment.
fn seg_dist2(px: f32, py: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((px - a.0) * dx + (py - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    (px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)
}

impl Source for TestPattern {
    fn describe(&self) -> String {
        format!("test pattern {}x{}", self.w, self.h)
    }

    /// Paced (`fps > 0`) it behaves like a camera: frames the loop cannot take are dropped.
    /// At `fps 0` each frame is made when the loop asks for it, like a recording.
    fn live(&self) -> bool {
        self.fps > 0.0
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
        let mut rgb = self.render(self.seq);
        if self
            .patch
            .contains(&self.period.map_or(self.seq, |p| self.seq % p))
        {
            self.paste_square(&mut rgb);
        }
        let f = Frame::ready(rgb, self.seq, t0);
        self.seq += 1;
        Ok(Some(f))
    }
}

/// `test`, `test:patch=A..B` or `test:patch=A..B/P`: the synthetic moving scene, 160×120 at
/// `--fps`.
pub fn open_spec(arg: &str, opts: &super::SourceOptions) -> anyhow::Result<Box<dyn super::Source>> {
    let pattern = TestPattern::new(160, 120, opts.fps);
    if arg.is_empty() {
        return Ok(Box::new(pattern));
    }
    let parse = |r: &str| -> Option<(std::ops::Range<u64>, Option<u64>)> {
        let (range, period) = match r.split_once('/') {
            Some((range, p)) => (range, Some(p.parse::<u64>().ok().filter(|&p| p > 0)?)),
            None => (r, None),
        };
        let (a, b) = range.split_once("..")?;
        Some((a.parse().ok()?..b.parse().ok()?, period))
    };
    match arg.strip_prefix("patch=").and_then(parse) {
        Some((r, period)) => Ok(Box::new(pattern.with_patch(r, period))),
        None => anyhow::bail!(
            "test:{arg}: use --source test, test:patch=A..B for a foreign square on frames A to B, or test:patch=A..B/P for the same in every P frames"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_covers_its_frames_only() {
        let opts = crate::pipeline::source::SourceOptions::default();
        let mut src = open_spec("patch=1..2", &opts).unwrap();
        let frames: Vec<RgbImage> = (0..3)
            .map(|_| src.next_frame().unwrap().unwrap().rgb)
            .collect();
        // (2..8, 20..26) of the 120-pixel centred square of 160x120: x 28..54, y 85..111
        let white =
            |f: &RgbImage| (28..54).all(|x| (86..111).all(|y| f.get_pixel(x, y).0 == [250; 3]));
        assert_eq!(
            frames.iter().map(white).collect::<Vec<_>>(),
            [false, true, false]
        );
        // every 4 frames: frames 1, 5, 9
        let mut src = open_spec("patch=1..2/4", &opts).unwrap();
        let marked: Vec<bool> = (0..10)
            .map(|_| white(&src.next_frame().unwrap().unwrap().rgb))
            .collect();
        let want: Vec<bool> = (0..10).map(|n| n % 4 == 1).collect();
        assert_eq!(marked, want);
        for bad in ["patch=3", "patch=a..b", "x", "patch=1..2/0", "patch=1..2/x"] {
            assert!(open_spec(bad, &opts).is_err(), "{bad}");
        }
    }
}
