//! The anomalies of the scene benchmark ([`Kind`]): what is drawn into the camera's view
//! before the camera's nuisances, with its mask.
//!
//! Each object covers [`MIN_AREA`]–[`MAX_AREA`] of the frame (the small object at most
//! [`SMALL_MAX_AREA`]), keeps [`MARGIN`] pixels from the border (so that the camera's jitter
//! moves it without cutting it) and changes the view inside its mask by at least
//! [`MIN_CONTRAST`] on average (a draw that changes less, e.g. a patch of sky moved into the
//! sky, is drawn again; after [`TRIES`] draws the most visible one is kept).

use anyhow::{bail, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::augment::MAX_SHIFT;

/// The smallest share of the frame an object covers.
pub const MIN_AREA: f64 = 0.01;
/// The largest share of the frame an object covers.
pub const MAX_AREA: f64 = 0.06;
/// The largest share of the frame the small object covers.
pub const SMALL_MAX_AREA: f64 = 0.03;
/// Pixels between an object and the frame's border.
pub const MARGIN: usize = MAX_SHIFT as usize + 1;
/// The least mean change inside the mask (mean over pixels and channels of `|with −
/// without|`, in the `[-1, 1]` scale: 0.1 is about 13 grey levels).
pub const MIN_CONTRAST: f32 = 0.1;
/// Draws of one object before the most visible is kept.
pub const TRIES: usize = 60;
/// The darkening of a soft shadow's core (the light is multiplied by `1 − depth`).
pub const SHADOW_DEPTH: (f32, f32) = (0.35, 0.65);

/// A kind of anomaly of the scene benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A rectangle cut from another photo.
    Foreign,
    /// A smaller ellipse of a colour that contrasts with what it covers, lightly shaded.
    Object,
    /// A rectangle of the same view copied elsewhere in it.
    Moved,
    /// A soft-edged ellipse where the light is darkened.
    Shadow,
}

named_choices!(Kind {
    Foreign = "foreign",
    Object = "object",
    Moved = "moved",
    Shadow = "shadow",
});

impl Kind {
    /// Every kind, in the benchmark's order.
    pub const ALL: [Kind; 4] = [Kind::Foreign, Kind::Object, Kind::Moved, Kind::Shadow];

    /// What the kind is, in a few words (the manifest and the report say it).
    pub fn description(self) -> &'static str {
        match self {
            Kind::Foreign => "foreign patch: a rectangle of another photo",
            Kind::Object => "small object: an ellipse of a contrasting colour (1-3%)",
            Kind::Moved => "patch moved within the scene: a rectangle of the view copied elsewhere",
            Kind::Shadow => "soft shadow: a darkened ellipse with soft edges",
        }
    }
}

/// A view (`3×s×s` in `[-1, 1]`) with an object drawn in, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    /// The view with the object.
    pub image: Vec<f32>,
    /// `s×s`, true inside the object.
    pub mask: Vec<bool>,
    /// The object's bounding box `(x, y, w, h)`.
    pub bbox: (usize, usize, usize, usize),
    /// The mask's share of the frame.
    pub area: f64,
    /// The mean change inside the mask (see [`MIN_CONTRAST`]).
    pub contrast: f32,
}

/// Draw an object of `kind` into `view` (`3×s×s`); `foreign` are other photos' views (`3×p×p`
/// each, any `p ≥ s`) for [`Kind::Foreign`].
pub fn place(
    kind: Kind,
    view: &[f32],
    s: usize,
    foreign: &[(Vec<f32>, usize)],
    rng: &mut impl Rng,
) -> Result<Placed> {
    if view.len() != 3 * s * s {
        bail!("the view is not 3x{s}x{s}");
    }
    if s < 8 * MARGIN {
        bail!("a frame of {s} pixels is too small for the benchmark's objects (16 at least)");
    }
    if kind == Kind::Foreign && foreign.is_empty() {
        bail!("foreign patches need a second photo: pass two or more with --photos");
    }
    let mut best: Option<Placed> = None;
    for _ in 0..TRIES {
        let p = draw_once(kind, view, s, foreign, rng);
        let max = if kind == Kind::Object {
            SMALL_MAX_AREA
        } else {
            MAX_AREA
        };
        if p.area < MIN_AREA || p.area > max {
            continue;
        }
        if p.contrast >= MIN_CONTRAST {
            return Ok(p);
        }
        if best.as_ref().is_none_or(|b| p.contrast > b.contrast) {
            best = Some(p);
        }
    }
    match best {
        Some(b) => {
            log::debug!(
                "a {kind} object with a contrast of {} (below {MIN_CONTRAST})",
                b.contrast
            );
            Ok(b)
        }
        None => bail!("no {kind} object of the stated area fits a {s}x{s} frame"),
    }
}

fn draw_once(
    kind: Kind,
    view: &[f32],
    s: usize,
    foreign: &[(Vec<f32>, usize)],
    rng: &mut impl Rng,
) -> Placed {
    let max = if kind == Kind::Object {
        SMALL_MAX_AREA
    } else {
        MAX_AREA
    };
    // a little inside the range, so that rounding to pixels stays in it
    let share = rng.random_range(MIN_AREA * 1.15..max * 0.95);
    let pixels = share * (s * s) as f64;
    let mut image = view.to_vec();
    let mask = match kind {
        Kind::Foreign => {
            let r = rect(s, pixels, rng);
            let (src, p) = &foreign[rng.random_range(0..foreign.len())];
            let (sx, sy) = (rng.random_range(0..=p - r.2), rng.random_range(0..=p - r.3));
            copy_rect(src, *p, (sx, sy), &mut image, s, r);
            rect_mask(s, r)
        }
        Kind::Moved => {
            let r = rect(s, pixels, rng);
            let from = loop {
                let f = (rng.random_range(0..=s - r.2), rng.random_range(0..=s - r.3));
                // apart from where it lands
                if f.0.abs_diff(r.0) >= r.2 || f.1.abs_diff(r.1) >= r.3 {
                    break f;
                }
            };
            copy_rect(view, s, from, &mut image, s, r);
            rect_mask(s, r)
        }
        Kind::Object => {
            let alpha = ellipse(s, pixels, 0.0, rng);
            paint_object(&mut image, s, &alpha, rng);
            alpha.iter().map(|&a| a > 0.0).collect()
        }
        Kind::Shadow => {
            let alpha = ellipse(s, pixels, 0.5, rng);
            let depth = rng.random_range(SHADOW_DEPTH.0..SHADOW_DEPTH.1);
            for plane in image.chunks_mut(s * s) {
                for (v, &a) in plane.iter_mut().zip(&alpha).filter(|(_, &a)| a > 0.0) {
                    *v = (*v + 1.0) * (1.0 - depth * a) - 1.0;
                }
            }
            alpha.iter().map(|&a| a > 0.0).collect()
        }
    };
    finish(view, image, mask, s)
}

/// The mask's box, area and contrast.
fn finish(view: &[f32], image: Vec<f32>, mask: Vec<bool>, s: usize) -> Placed {
    let (mut x0, mut y0, mut x1, mut y1) = (s, s, 0, 0);
    let mut n = 0usize;
    let mut diff = 0.0f64;
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (x, y) = (i % s, i / s);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        n += 1;
        for c in 0..3 {
            diff += (image[c * s * s + i] - view[c * s * s + i]).abs() as f64;
        }
    }
    Placed {
        image,
        mask,
        bbox: (
            x0,
            y0,
            (x1 + 1).saturating_sub(x0),
            (y1 + 1).saturating_sub(y0),
        ),
        area: n as f64 / (s * s) as f64,
        contrast: (diff / (3 * n.max(1)) as f64) as f32,
    }
}

/// A rectangle `(x, y, w, h)` of about `pixels` pixels, aspect 0.6–1.6, inside the margins.
fn rect(s: usize, pixels: f64, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
    let aspect: f64 = rng.random_range(0.6..1.6);
    let room = s - 2 * MARGIN;
    let w = ((pixels * aspect).sqrt().round() as usize).clamp(2, room);
    let h = ((pixels / w as f64).round() as usize).clamp(2, room);
    let x = rng.random_range(MARGIN..=s - MARGIN - w);
    let y = rng.random_range(MARGIN..=s - MARGIN - h);
    (x, y, w, h)
}

fn rect_mask(s: usize, (x, y, w, h): (usize, usize, usize, usize)) -> Vec<bool> {
    (0..s * s)
        .map(|i| (x..x + w).contains(&(i % s)) && (y..y + h).contains(&(i / s)))
        .collect()
}

/// Copy the `w×h` window at `from` of `src` (`3×p×p`) to the rectangle `to` of `dst` (`3×s×s`).
fn copy_rect(
    src: &[f32],
    p: usize,
    from: (usize, usize),
    dst: &mut [f32],
    s: usize,
    (x, y, w, h): (usize, usize, usize, usize),
) {
    for c in 0..3 {
        for dy in 0..h {
            for dx in 0..w {
                dst[c * s * s + (y + dy) * s + x + dx] =
                    src[c * p * p + (from.1 + dy) * p + from.0 + dx];
            }
        }
    }
}

/// An ellipse of about `pixels` pixels, rotated at random, inside the margins, as an opacity
/// per pixel: 1 inside `core` of the normalised radius, falling smoothly to 0 at the edge (a
/// hard edge when `core` is 0).
fn ellipse(s: usize, pixels: f64, core: f32, rng: &mut impl Rng) -> Vec<f32> {
    let ratio: f64 = rng.random_range(0.5..1.0);
    let rx = (pixels / (std::f64::consts::PI * ratio)).sqrt();
    let ry = rx * ratio;
    let reach = rx.ceil() as usize + 1;
    let lo = MARGIN + reach;
    let hi = (s - MARGIN).saturating_sub(reach).max(lo + 1);
    let (cx, cy) = (
        rng.random_range(lo as f64..hi as f64),
        rng.random_range(lo as f64..hi as f64),
    );
    let theta: f64 = rng.random_range(0.0..std::f64::consts::PI);
    let (cos, sin) = (theta.cos(), theta.sin());
    (0..s * s)
        .map(|i| {
            let (dx, dy) = ((i % s) as f64 + 0.5 - cx, (i / s) as f64 + 0.5 - cy);
            let (u, v) = ((dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry);
            let d = (u * u + v * v).sqrt() as f32;
            if d >= 1.0 {
                0.0
            } else if d <= core {
                1.0
            } else {
                let t = (1.0 - d) / (1.0 - core);
                t * t * (3.0 - 2.0 * t)
            }
        })
        .collect()
}

/// Saturated colours of the small object, in `[0, 1]` RGB.
const PALETTE: [[f32; 3]; 8] = [
    [0.9, 0.1, 0.1],
    [0.1, 0.2, 0.9],
    [0.95, 0.85, 0.1],
    [0.85, 0.1, 0.8],
    [0.1, 0.85, 0.9],
    [0.95, 0.95, 0.95],
    [0.05, 0.05, 0.05],
    [0.95, 0.5, 0.05],
];

/// Paint where `alpha` is set with the palette colour farthest from what it covers (one of the
/// two farthest, at random), shaded by ±10% across the object.
fn paint_object(image: &mut [f32], s: usize, alpha: &[f32], rng: &mut impl Rng) {
    let plane = s * s;
    let n = alpha.iter().filter(|&&a| a > 0.0).count().max(1) as f32;
    let mean: Vec<f32> = (0..3)
        .map(|c| {
            let sum: f32 = (0..plane)
                .filter(|&i| alpha[i] > 0.0)
                .map(|i| (image[c * plane + i] + 1.0) / 2.0)
                .sum();
            sum / n
        })
        .collect();
    let mut order: Vec<(f32, usize)> = PALETTE
        .iter()
        .enumerate()
        .map(|(k, p)| ((0..3).map(|c| (p[c] - mean[c]).powi(2)).sum(), k))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let colour = PALETTE[order[rng.random_range(0..2)].1];
    let (gx, gy) = (
        rng.random_range(-1.0f32..1.0),
        rng.random_range(-1.0f32..1.0),
    );
    for i in (0..plane).filter(|&i| alpha[i] > 0.0) {
        let (fx, fy) = (
            (i % s) as f32 / s as f32 - 0.5,
            (i / s) as f32 / s as f32 - 0.5,
        );
        let shade = 1.0 + 0.2 * (gx * fx + gy * fy);
        for (c, &col) in colour.iter().enumerate() {
            let v = (col * shade).clamp(0.0, 1.0) * 2.0 - 1.0;
            image[c * plane + i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn view(s: usize) -> Vec<f32> {
        (0..3 * s * s)
            .map(|i| ((i % s) as f32 / s as f32) * 0.8 - 0.4 + (i / (s * s)) as f32 * 0.1)
            .collect()
    }

    #[test]
    fn every_kind_keeps_its_area_margin_and_changes_only_its_mask() {
        let s = 64;
        let v = view(s);
        let other: Vec<f32> = (0..3 * 80 * 80)
            .map(|i| ((i * 37) % 200) as f32 / 100.0 - 1.0)
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for kind in Kind::ALL {
            for _ in 0..20 {
                let p = place(kind, &v, s, &[(other.clone(), 80)], &mut rng).unwrap();
                assert!(
                    (MIN_AREA..=MAX_AREA).contains(&p.area),
                    "{kind}: {}",
                    p.area
                );
                let (x, y, w, h) = p.bbox;
                assert!(x >= MARGIN && y >= MARGIN && x + w <= s - MARGIN && y + h <= s - MARGIN);
                for i in (0..3 * s * s).filter(|i| !p.mask[i % (s * s)]) {
                    assert_eq!(p.image[i], v[i], "{kind}: outside the mask");
                }
            }
        }
        let err = place(Kind::Foreign, &v, s, &[], &mut rng).unwrap_err();
        assert!(err.to_string().contains("second photo"), "{err}");
    }
}
