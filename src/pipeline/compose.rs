//! The picture a sink shows: camera ROI | f | f^k side by side, scaled to the largest square
//! that fits (nearest neighbour, so every model pixel is a visible block), letterboxed, with a
//! bar at the bottom for the overlay.

use anyhow::{bail, Result};
use image::RgbImage;

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

/// Draw the `crop` region of a camera frame into panel `at` (nearest neighbour), row by row
/// on the raw buffers.
pub fn draw_frame_panel(
    canvas: &mut RgbImage,
    frame: &RgbImage,
    crop: Rect,
    at: (u32, u32),
    cell: u32,
) {
    let cw = canvas.width() as usize;
    let fstride = frame.width() as usize * 3;
    let src = frame.as_raw();
    let dst = canvas.as_mut();
    let cell = cell as usize;
    for py in 0..cell {
        let sy = crop.y as usize + py * crop.h as usize / cell;
        let src_row = &src[sy * fstride..(sy + 1) * fstride];
        let start = ((at.1 as usize + py) * cw + at.0 as usize) * 3;
        for (px, d) in dst[start..start + cell * 3].chunks_exact_mut(3).enumerate() {
            let sx = (crop.x as usize + px * crop.w as usize / cell) * 3;
            d.copy_from_slice(&src_row[sx..sx + 3]);
        }
    }
}

/// Widest model image whose rows [`draw_chw_panel`] converts once into a stack buffer.
const MAX_ROW: usize = 512;

/// Draw a `C×H×W` image in [-1, 1] into panel `at` (nearest neighbour), row by row: each
/// source row is converted to 8-bit once, then repeated.
pub fn draw_chw_panel(
    canvas: &mut RgbImage,
    data: &[f32],
    shape: (usize, usize, usize),
    at: (u32, u32),
    cell: u32,
) {
    let (c, h, w) = shape;
    let plane = h * w;
    let cw = canvas.width() as usize;
    let dst = canvas.as_mut();
    let cell = cell as usize;
    let mut row = [[0u8; 3]; MAX_ROW];
    let mut row_y = usize::MAX;
    let pixel = |i: usize| -> [u8; 3] {
        if c == 1 {
            let v = to_u8(data[i]);
            [v, v, v]
        } else {
            [
                to_u8(data[i]),
                to_u8(data[plane + i]),
                to_u8(data[2 * plane + i]),
            ]
        }
    };
    for py in 0..cell {
        let sy = py * h / cell;
        if w <= MAX_ROW && sy != row_y {
            for (sx, p) in row[..w].iter_mut().enumerate() {
                *p = pixel(sy * w + sx);
            }
            row_y = sy;
        }
        let start = ((at.1 as usize + py) * cw + at.0 as usize) * 3;
        for (px, d) in dst[start..start + cell * 3].chunks_exact_mut(3).enumerate() {
            let sx = px * w / cell;
            let rgb = if w <= MAX_ROW {
                row[sx]
            } else {
                pixel(sy * w + sx)
            };
            d.copy_from_slice(&rgb);
        }
    }
}

/// Paint the canvas background.
pub fn clear(canvas: &mut RgbImage) {
    for p in canvas.as_mut().chunks_exact_mut(3) {
        p.copy_from_slice(&[16, 16, 20]);
    }
}
