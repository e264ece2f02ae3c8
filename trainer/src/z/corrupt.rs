//! Corruptions of real images, the one place training and evaluation take them from: the
//! "anything else" an IGN should map onto the data manifold besides noise (occluded, thick or
//! thin strokes, blurred, on a noisy background, shifted and rotated). `--z-mix` draws part of
//! the idempotence and tightness source `z` from them ([`Corruption`]); `eval --ood` and
//! `eval`'s pictures make named kinds of them from test images ([`make`]).
//!
//! Images are `C×H×W` in `[-1, 1]` with a dark background (-1), as MNIST and Fashion-MNIST are.
//! Every corruption is a pure function of the image and the generator's state, and keeps the
//! value range.

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// A kind of corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Corruption {
    /// A third of the image blanked: the top, bottom, left or right.
    Occlude,
    /// Strokes thickened (3×3 maximum, once or twice).
    Dilate,
    /// Strokes thinned (3×3 minimum).
    Erode,
    /// A 3×3 box blur, one to three passes.
    Blur,
    /// Gaussian noise (σ 0.3 to 0.8) added, clipped to the range.
    NoisyBackground,
    /// Shifted (±3 px), rotated (±20°) and scaled (0.8 to 1.2), bilinear.
    Affine,
}

impl Corruption {
    /// Every kind, in a fixed order.
    pub const ALL: [Corruption; 6] = [
        Corruption::Occlude,
        Corruption::Dilate,
        Corruption::Erode,
        Corruption::Blur,
        Corruption::NoisyBackground,
        Corruption::Affine,
    ];

    /// Apply to `img` (`c×h×w`, in place), drawing its parameters from `rng`.
    ///
    /// ```
    /// use ign_train::z::corrupt::Corruption;
    /// use rand::SeedableRng;
    /// let mut img = vec![-1.0f32; 3 * 3];
    /// img[4] = 1.0; // one bright pixel in the middle
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// Corruption::Erode.apply(&mut img, (1, 3, 3), &mut rng);
    /// assert!(img.iter().all(|&v| v == -1.0)); // a one-pixel stroke is eroded away
    /// ```
    pub fn apply(self, img: &mut [f32], shape: (usize, usize, usize), rng: &mut impl Rng) {
        let (c, h, w) = shape;
        assert_eq!(img.len(), c * h * w, "image of shape {shape:?}");
        match self {
            Corruption::Occlude => occlude(img, shape, rng.random_range(0..4)),
            Corruption::Dilate => {
                for _ in 0..rng.random_range(1..=2) {
                    filter3(img, shape, f32::max);
                }
            }
            Corruption::Erode => filter3(img, shape, f32::min),
            Corruption::Blur => {
                for _ in 0..rng.random_range(1..=3) {
                    box_blur(img, shape);
                }
            }
            Corruption::NoisyBackground => {
                let sigma = rng.random_range(0.3f32..0.8);
                for v in img.iter_mut() {
                    let n: f32 = StandardNormal.sample(rng);
                    *v = (*v + sigma * n).clamp(-1.0, 1.0);
                }
            }
            Corruption::Affine => {
                let angle = rng.random_range(-20f32..20.0).to_radians();
                let scale = rng.random_range(0.8f32..1.2);
                let (dx, dy) = (rng.random_range(-3f32..3.0), rng.random_range(-3f32..3.0));
                affine(img, shape, angle, scale, dx, dy);
            }
        }
    }

    /// A kind drawn uniformly, applied.
    pub fn random(img: &mut [f32], shape: (usize, usize, usize), rng: &mut impl Rng) {
        let k = Corruption::ALL[rng.random_range(0..Corruption::ALL.len())];
        k.apply(img, shape, rng);
    }
}

/// The inputs of `eval --ood`, by name, in report order (`printed` and `pad-sketch` are drawn,
/// the others made from a test image by [`make`]).
pub const OOD_KINDS: [&str; 13] = [
    "clean",
    "gaussian-noise",
    "occlude-top",
    "occlude-bottom",
    "occlude-side",
    "thick",
    "thin",
    "blur",
    "noisy-background",
    "affine",
    "ink-on-paper",
    "printed",
    "pad-sketch",
];

/// Test image `img` (`c×h×w` in [-1, 1]) turned into `kind`, from `seed`.
///
/// ```
/// let img = vec![-1.0f32; 28 * 28];
/// let a = ign_train::z::corrupt::make("noisy-background", &img, (1, 28, 28), 5).unwrap();
/// assert_eq!(a, ign_train::z::corrupt::make("noisy-background", &img, (1, 28, 28), 5).unwrap());
/// assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)) && a != img);
/// ```
pub fn make(kind: &str, img: &[f32], shape: (usize, usize, usize), seed: u64) -> Result<Vec<f32>> {
    let (_, h, _) = shape;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = img.to_vec();
    match kind {
        "clean" => {}
        "gaussian-noise" => {
            for p in v.iter_mut() {
                let e: f32 = StandardNormal.sample(&mut rng);
                *p = (*p + 0.5 * e).clamp(-1.0, 1.0);
            }
        }
        "occlude-top" => occlude(&mut v, shape, 0),
        "occlude-bottom" => occlude(&mut v, shape, 1),
        "occlude-side" => occlude(&mut v, shape, 2 + rng.random_range(0..2)),
        "thick" => {
            filter3(&mut v, shape, f32::max);
        }
        "thin" => filter3(&mut v, shape, f32::min),
        "blur" => {
            box_blur(&mut v, shape);
            box_blur(&mut v, shape);
        }
        "noisy-background" => textured_background(&mut v, shape, &mut rng),
        "half-mask" => half_mask(&mut v, shape),
        "edges" => v = edges(img, shape),
        "ink-on-paper" => {
            if shape.0 != 1 {
                anyhow::bail!("ink-on-paper is for gray models");
            }
            let photo = crate::z::photo::ink_on_paper(img, h, &mut rng)?;
            v = crate::z::photo::paper_mode(&photo, h);
        }
        "printed" | "pad-sketch" => {
            anyhow::bail!("{kind} digits are drawn, not made from a test image")
        }
        "affine" => {
            let angle = rng.random_range(-25f32..25.0).to_radians();
            let scale = rng.random_range(0.75f32..1.15);
            let (dx, dy) = (rng.random_range(-3f32..3.0), rng.random_range(-3f32..3.0));
            affine(&mut v, shape, angle, scale, dx, dy);
        }
        other => anyhow::bail!(
            "unknown OOD kind {other:?}; the kinds are {OOD_KINDS:?} and {GRID_KINDS:?}"
        ),
    }
    Ok(v)
}

/// The corruptions of `eval`'s projections.png: noisy, half-masked and edge-sketched test
/// images, made by [`make`].
pub const GRID_KINDS: [&str; 3] = ["gaussian-noise", "half-mask", "edges"];

/// Blank a third of the image to the background: `side` 0 top, 1 bottom, 2 left, 3 right.
pub fn occlude(img: &mut [f32], (c, h, w): (usize, usize, usize), side: u32) {
    for ch in 0..c {
        let plane = &mut img[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let blank = match side {
                    0 => y < h / 3,
                    1 => y >= h - h / 3,
                    2 => x < w / 3,
                    _ => x >= w - w / 3,
                };
                if blank {
                    plane[y * w + x] = -1.0;
                }
            }
        }
    }
}

/// Each pixel becomes `op` over its 3×3 neighbourhood (inside the image), per channel:
/// `f32::max` thickens strokes, `f32::min` thins them.
pub fn filter3(img: &mut [f32], (c, h, w): (usize, usize, usize), op: fn(f32, f32) -> f32) {
    let src = img.to_vec();
    for ch in 0..c {
        let p = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = p[y * w + x];
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        acc = op(acc, p[yy * w + xx]);
                    }
                }
                img[ch * h * w + y * w + x] = acc;
            }
        }
    }
}

/// A 3×3 box blur (the mean of the neighbours inside the image).
pub fn box_blur(img: &mut [f32], (c, h, w): (usize, usize, usize)) {
    let src = img.to_vec();
    for ch in 0..c {
        let p = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let (mut sum, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        sum += p[yy * w + xx];
                        n += 1.0;
                    }
                }
                img[ch * h * w + y * w + x] = sum / n;
            }
        }
    }
}

/// Rotate by `angle` and scale about the centre, then shift by `(dx, dy)`; bilinear, the
/// background (-1) where the source falls outside.
pub fn affine(
    img: &mut [f32],
    (c, h, w): (usize, usize, usize),
    angle: f32,
    scale: f32,
    dx: f32,
    dy: f32,
) {
    let src = img.to_vec();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |p: &[f32], x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            -1.0
        } else {
            p[y as usize * w + x as usize]
        }
    };
    for ch in 0..c {
        let p = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                // inverse map: output pixel -> source position
                let (ox, oy) = (x as f32 - cx - dx, y as f32 - cy - dy);
                let sx = (cos * ox + sin * oy) / scale + cx;
                let sy = (-sin * ox + cos * oy) / scale + cy;
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let v = at(p, x0, y0) * (1.0 - fx) * (1.0 - fy)
                    + at(p, x0 + 1, y0) * fx * (1.0 - fy)
                    + at(p, x0, y0 + 1) * (1.0 - fx) * fy
                    + at(p, x0 + 1, y0 + 1) * fx * fy;
                img[ch * h * w + y * w + x] = v.clamp(-1.0, 1.0);
            }
        }
    }
}

/// A wavy texture of random phase and a little noise under the strokes (`noisy-background`).
fn textured_background(v: &mut [f32], (_, h, w): (usize, usize, usize), rng: &mut impl Rng) {
    let (fx, fy) = (rng.random_range(0.2f32..0.6), rng.random_range(0.2f32..0.6));
    let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
    let plane = h * w;
    for (i, p) in v.iter_mut().enumerate() {
        let (y, x) = ((i % plane) / w, i % w);
        let texture = 0.35 * ((fx * x as f32 + fy * y as f32 + phase).sin() + 1.0);
        let e: f32 = StandardNormal.sample(rng);
        *p = p.max(-1.0 + texture + 0.15 * e).clamp(-1.0, 1.0);
    }
}

/// The bottom half of every channel blanked to the background (`half-mask`).
fn half_mask(v: &mut [f32], (_, h, w): (usize, usize, usize)) {
    let plane = h * w;
    for (i, p) in v.iter_mut().enumerate() {
        if (i % plane) / w >= h / 2 {
            *p = -1.0;
        }
    }
}

/// An edge-map sketch (`edges`): the Sobel magnitude of the first channel thresholded to
/// strokes, in every channel.
fn edges(img: &[f32], (c, h, w): (usize, usize, usize)) -> Vec<f32> {
    let px = |x: isize, y: isize| -> f32 {
        let (x, y) = (
            x.clamp(0, w as isize - 1) as usize,
            y.clamp(0, h as isize - 1) as usize,
        );
        (img[y * w + x] + 1.0) / 2.0
    };
    let mut edge = vec![-1f32; h * w];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = px(x + 1, y - 1) + 2.0 * px(x + 1, y) + px(x + 1, y + 1)
                - px(x - 1, y - 1)
                - 2.0 * px(x - 1, y)
                - px(x - 1, y + 1);
            let gy = px(x - 1, y + 1) + 2.0 * px(x, y + 1) + px(x + 1, y + 1)
                - px(x - 1, y - 1)
                - 2.0 * px(x, y - 1)
                - px(x + 1, y - 1);
            if (gx * gx + gy * gy).sqrt() > 1.0 {
                edge[y as usize * w + x as usize] = 1.0;
            }
        }
    }
    edge.repeat(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A 9×9 gray image: a bright vertical bar in columns 3..6 on the dark background.
    fn bar() -> Vec<f32> {
        (0..81)
            .map(|i| if (3..6).contains(&(i % 9)) { 1.0 } else { -1.0 })
            .collect()
    }

    /// A 9×9 gray image: a bright 5×5 square in the middle (every kind changes it).
    fn square() -> Vec<f32> {
        (0..81)
            .map(|i| {
                if (2..7).contains(&(i % 9)) && (2..7).contains(&(i / 9)) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect()
    }

    #[test]
    fn every_kind_is_deterministic_for_a_seed_and_keeps_shape_and_range() {
        for k in Corruption::ALL {
            let run = |seed| {
                let mut img = square();
                k.apply(
                    &mut img,
                    (1, 9, 9),
                    &mut rand::rngs::StdRng::seed_from_u64(seed),
                );
                img
            };
            let (a, b) = (run(3), run(3));
            assert_eq!(a, b, "{k:?}");
            assert_eq!(a.len(), 81);
            assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)), "{k:?}: {a:?}");
            assert_ne!(a, square(), "{k:?} changed nothing");
        }
    }

    #[test]
    fn known_pixels() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // dilation widens the bar by at least one column each side
        let mut d = bar();
        Corruption::Dilate.apply(&mut d, (1, 9, 9), &mut rng);
        assert!((0..9).all(|y| d[y * 9 + 2] == 1.0 && d[y * 9 + 6] == 1.0));
        // erosion keeps only its middle column
        let mut e = bar();
        Corruption::Erode.apply(&mut e, (1, 9, 9), &mut rng);
        assert!((0..9).all(|y| e[y * 9 + 4] == 1.0 && e[y * 9 + 3] == -1.0));
        // occlusion blanks exactly a third: 3 of the 9 rows or columns
        let mut o = vec![1.0f32; 81];
        Corruption::Occlude.apply(&mut o, (1, 9, 9), &mut rng);
        assert_eq!(o.iter().filter(|&&v| v == -1.0).count(), 27);
        // a blur of a uniform image is the same image
        let mut u = vec![0.25f32; 81];
        Corruption::Blur.apply(&mut u, (1, 9, 9), &mut rng);
        assert!(u.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        // an identity affine map is the identity
        let mut a = bar();
        affine(&mut a, (1, 9, 9), 0.0, 1.0, 0.0, 0.0);
        assert_eq!(a, bar());
        // a one-pixel shift moves the bar one column right
        let mut s = bar();
        affine(&mut s, (1, 9, 9), 0.0, 1.0, 1.0, 0.0);
        assert!((0..9).all(|y| s[y * 9 + 6] == 1.0 && s[y * 9 + 3] == -1.0));
    }

    #[test]
    fn every_kind_is_deterministic_shaped_and_in_range() {
        // a bright square, rows and columns 6..22, on the dark background
        let inside = |i: usize| (6..22).contains(&(i % 28)) && (6..22).contains(&(i / 28));
        let img: Vec<f32> = (0..28 * 28)
            .map(|i| if inside(i) { 1.0 } else { -1.0 })
            .collect();
        let made = OOD_KINDS.iter().chain(&GRID_KINDS);
        for kind in made.filter(|&&k| k != "printed" && k != "pad-sketch") {
            let a = make(kind, &img, (1, 28, 28), 9).unwrap();
            assert_eq!(a, make(kind, &img, (1, 28, 28), 9).unwrap(), "{kind}");
            assert_eq!(a.len(), img.len());
            assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)), "{kind}");
            assert_eq!(*kind == "clean", a == img, "{kind}");
        }
        assert!(make("fonts", &img, (1, 28, 28), 0).is_err());
        // known pixels: the top third blanked, the square grown by one pixel each side
        let top = make("occlude-top", &img, (1, 28, 28), 0).unwrap();
        assert!(top[..9 * 28].iter().all(|&v| v == -1.0) && top[9 * 28 + 10] == 1.0);
        let thick = make("thick", &img, (1, 28, 28), 0).unwrap();
        let row = 10 * 28;
        assert!(thick[row + 5] == 1.0 && thick[row + 22] == 1.0 && thick[row + 4] == -1.0);
        // the grid's: the bottom half blanked; the square's outline, not its inside
        let half = make("half-mask", &img, (1, 28, 28), 0).unwrap();
        assert!(half[14 * 28..].iter().all(|&v| v == -1.0) && half[row + 10] == 1.0);
        let edges = make("edges", &img, (1, 28, 28), 0).unwrap();
        assert!(edges[row + 6] == 1.0 && edges[14 * 28 + 14] == -1.0 && edges[row] == -1.0);
        // noise: σ 0.5 of Gaussian noise added, clipped
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let want: Vec<f32> = img
            .iter()
            .map(|&v| {
                let e: f32 = StandardNormal.sample(&mut rng);
                (v + 0.5 * e).clamp(-1.0, 1.0)
            })
            .collect();
        assert_eq!(make("gaussian-noise", &img, (1, 28, 28), 1).unwrap(), want);
    }
}
