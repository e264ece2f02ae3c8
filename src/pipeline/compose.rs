//! The picture a sink shows: camera ROI | f | f^k side by side, scaled to the largest square
//! that fits (nearest neighbour, so every model pixel is a visible block), letterboxed, with a
//! bar at the bottom for the overlay.

use anyhow::{bail, Result};
use image::{Rgb, RgbImage};

use super::preprocess::Rect;
use crate::imaging::to_u8;

/// Height of the overlay bar in pixels.
pub const HUD_HEIGHT: u32 = 26;
const PAD: u32 = 4;

/// Where panels go on a canvas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub canvas: (u32, u32),
    /// Side of each square panel.
    pub cell: u32,
    /// Top-left corner of each panel.
    pub panels: Vec<(u32, u32)>,
    /// Top of the overlay bar.
    pub hud_y: u32,
}

impl Layout {
    /// `n` panels on a `w×h` canvas.
    pub fn new(w: u32, h: u32, n: u32) -> Result<Layout> {
        if h <= HUD_HEIGHT + 2 * PAD + 8 || w <= (n + 1) * PAD + 8 * n {
            bail!("a {w}x{h} display is too small for the live view (at least 120x64)");
        }
        let avail_h = h - HUD_HEIGHT - 2 * PAD;
        let cell = ((w - (n + 1) * PAD) / n).min(avail_h);
        let used = n * cell + (n - 1) * PAD;
        let x0 = (w - used) / 2;
        let y0 = PAD + (avail_h - cell) / 2;
        Ok(Layout {
            canvas: (w, h),
            cell,
            panels: (0..n).map(|i| (x0 + i * (cell + PAD), y0)).collect(),
            hud_y: h - HUD_HEIGHT,
        })
    }
}

/// Draw the `crop` region of a camera frame into panel `at` (nearest neighbour).
pub fn draw_frame_panel(
    canvas: &mut RgbImage,
    frame: &RgbImage,
    crop: Rect,
    at: (u32, u32),
    cell: u32,
) {
    for py in 0..cell {
        let sy = crop.y + py * crop.h / cell;
        for px in 0..cell {
            let sx = crop.x + px * crop.w / cell;
            canvas.put_pixel(at.0 + px, at.1 + py, *frame.get_pixel(sx, sy));
        }
    }
}

/// Draw a `C×H×W` image in [-1, 1] into panel `at` (nearest neighbour).
pub fn draw_chw_panel(
    canvas: &mut RgbImage,
    data: &[f32],
    shape: (usize, usize, usize),
    at: (u32, u32),
    cell: u32,
) {
    let (c, h, w) = shape;
    let plane = h * w;
    for py in 0..cell {
        let sy = py as usize * h / cell as usize;
        for px in 0..cell {
            let sx = px as usize * w / cell as usize;
            let i = sy * w + sx;
            let p = if c == 1 {
                let v = to_u8(data[i]);
                [v, v, v]
            } else {
                [
                    to_u8(data[i]),
                    to_u8(data[plane + i]),
                    to_u8(data[2 * plane + i]),
                ]
            };
            canvas.put_pixel(at.0 + px, at.1 + py, Rgb(p));
        }
    }
}

/// Paint the canvas background.
pub fn clear(canvas: &mut RgbImage) {
    for p in canvas.pixels_mut() {
        *p = Rgb([16, 16, 20]);
    }
}
