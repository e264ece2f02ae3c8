//! Augmentations of the real images `x` that reconstruction sees (`ign-train train
//! --augment`): with `camera`, what a fixed camera does to a scene from frame to frame, so that
//! f learns to keep it rather than report it.
//!
//! Per image and step ([`CameraNuisance`], drawn from a pure function of seed, step and the
//! image's place in the batch, so that a resumed run sees the same images):
//! - a jitter of up to [`MAX_SHIFT`] pixels in each direction, the edge pixels repeated;
//! - an exposure gain in [`GAIN`];
//! - a white-balance drift, one factor per channel in [`BALANCE`];
//! - Gaussian sensor noise, σ in [`NOISE_SIGMA`] grey levels (of 255);
//! - JPEG at a quality in [`JPEG_QUALITY`] (the `image` crate's encoder), which also rounds to
//!   8 bits.
//!
//! Images are `C×H×W` in `[-1, 1]` and stay in it.

use anyhow::{Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::data::mix;

/// What the training images go through before reconstruction sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// The images as they are.
    #[default]
    None,
    /// A fixed camera's nuisances ([`CameraNuisance`]).
    Camera,
}

named_choices!(Augment { None = "none", Camera = "camera" });

/// The range of the exposure gain.
pub const GAIN: (f32, f32) = (0.85, 1.15);
/// The range of each channel's white-balance factor.
pub const BALANCE: (f32, f32) = (0.95, 1.05);
/// The range of the sensor noise's standard deviation, in grey levels of 255.
pub const NOISE_SIGMA: (f32, f32) = (1.0, 4.0);
/// The largest jitter, in pixels, in each direction.
pub const MAX_SHIFT: i32 = 2;
/// The range of the JPEG quality.
pub const JPEG_QUALITY: (u8, u8) = (70, 95);

/// One image's draw of the camera's nuisances.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraNuisance {
    /// Exposure gain, in [`GAIN`].
    pub gain: f32,
    /// White-balance factor of each channel (the first `C` are used), in [`BALANCE`].
    pub balance: [f32; 3],
    /// Sensor noise σ in grey levels, in [`NOISE_SIGMA`].
    pub noise_sigma: f32,
    /// Jitter `(dx, dy)` in pixels: the content moves right and down by it.
    pub shift: (i32, i32),
    /// JPEG quality, in [`JPEG_QUALITY`].
    pub jpeg_quality: u8,
    /// Seed of the noise's pixels.
    pub noise_seed: u64,
}

impl CameraNuisance {
    /// A draw from `rng`, uniform in each range.
    pub fn draw(rng: &mut impl Rng) -> CameraNuisance {
        let mut balance = [1.0f32; 3];
        for b in &mut balance {
            *b = rng.random_range(BALANCE.0..=BALANCE.1);
        }
        CameraNuisance {
            gain: rng.random_range(GAIN.0..=GAIN.1),
            balance,
            noise_sigma: rng.random_range(NOISE_SIGMA.0..=NOISE_SIGMA.1),
            shift: (
                rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
                rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
            ),
            jpeg_quality: rng.random_range(JPEG_QUALITY.0..=JPEG_QUALITY.1),
            noise_seed: rng.random(),
        }
    }

    /// The draw of image `index` of the batch of `step` in a run of `seed`.
    pub fn for_image(seed: u64, step: u64, index: usize) -> CameraNuisance {
        let stream = mix(seed, step, 0x00ca_3e0a);
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(stream, index as u64, 0x00ca_3e0b));
        CameraNuisance::draw(&mut rng)
    }

    /// Apply to `img` (`c×h×w` in `[-1, 1]`, 1 or 3 channels) in place: jitter, exposure and
    /// white balance, noise, JPEG.
    pub fn apply(&self, img: &mut [f32], shape: (usize, usize, usize)) -> Result<()> {
        let (c, h, w) = shape;
        assert_eq!(img.len(), c * h * w, "image of shape {shape:?}");
        shift_replicate(img, shape, self.shift.0, self.shift.1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.noise_seed);
        let sigma = self.noise_sigma / 127.5;
        for (ch, plane) in img.chunks_mut(h * w).enumerate() {
            let k = self.gain * self.balance[ch.min(2)];
            for v in plane {
                // exposure scales the light: 0 stays black
                let lit = (*v + 1.0) * k - 1.0;
                let n: f32 = StandardNormal.sample(&mut rng);
                *v = (lit + sigma * n).clamp(-1.0, 1.0);
            }
        }
        jpeg_roundtrip(img, shape, self.jpeg_quality)
    }
}

/// Move the content of `img` by `(dx, dy)` pixels (right and down when positive), repeating
/// the edge pixels into what the move uncovers.
pub fn shift_replicate(img: &mut [f32], (c, h, w): (usize, usize, usize), dx: i32, dy: i32) {
    if dx == 0 && dy == 0 {
        return;
    }
    let src = img.to_vec();
    let clamp = |v: i32, n: usize| v.clamp(0, n as i32 - 1) as usize;
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        let out = &mut img[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = clamp(y as i32 - dy, h);
            for x in 0..w {
                out[y * w + x] = plane[sy * w + clamp(x as i32 - dx, w)];
            }
        }
    }
}

/// `img` (`c×h×w` in `[-1, 1]`, 1 or 3 channels) through the JPEG encoder at `quality` and
/// back, in place.
pub fn jpeg_roundtrip(
    img: &mut [f32],
    (c, h, w): (usize, usize, usize),
    quality: u8,
) -> Result<()> {
    let color = match c {
        1 => ExtendedColorType::L8,
        3 => ExtendedColorType::Rgb8,
        _ => anyhow::bail!("JPEG takes 1 or 3 channels, not {c}"),
    };
    let plane = h * w;
    let mut bytes = vec![0u8; c * plane];
    for i in 0..plane {
        for ch in 0..c {
            let v = img[ch * plane + i];
            bytes[i * c + ch] = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        }
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(&bytes, w as u32, h as u32, color)
        .context("JPEG augmentation: cannot encode")?;
    let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .context("JPEG augmentation: cannot decode")?;
    let back: Vec<u8> = if c == 1 {
        decoded.to_luma8().into_raw()
    } else {
        decoded.to_rgb8().into_raw()
    };
    for i in 0..plane {
        for ch in 0..c {
            img[ch * plane + i] = back[i * c + ch] as f32 / 127.5 - 1.0;
        }
    }
    Ok(())
}

/// Augment a batch (`images`: `n` images of `shape`, in place) as `kind` says, for `step` of a
/// run of `seed`; image `j` of the batch gets [`CameraNuisance::for_image`]`(seed, step, j)`.
pub fn augment_batch(
    kind: Augment,
    images: &mut [f32],
    shape: (usize, usize, usize),
    seed: u64,
    step: u64,
) -> Result<()> {
    if kind == Augment::None {
        return Ok(());
    }
    let len = shape.0 * shape.1 * shape.2;
    for (j, img) in images.chunks_mut(len).enumerate() {
        CameraNuisance::for_image(seed, step, j).apply(img, shape)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: (usize, usize, usize) = (3, 64, 64);

    /// A smooth RGB scene: gradients and a soft blob, in `[-0.6, 0.6]`.
    fn scene() -> Vec<f32> {
        let (c, h, w) = SHAPE;
        let mut v = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                    let blob = (-((fx - 0.4).powi(2) + (fy - 0.6).powi(2)) * 12.0).exp();
                    v.push(0.6 * (0.5 * fx + 0.3 * fy + 0.4 * blob - 0.5 + 0.1 * ch as f32));
                }
            }
        }
        v
    }

    fn mean(v: &[f32]) -> f64 {
        v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
    }

    fn identity() -> CameraNuisance {
        CameraNuisance {
            gain: 1.0,
            balance: [1.0; 3],
            noise_sigma: 0.0,
            shift: (0, 0),
            jpeg_quality: 100,
            noise_seed: 0,
        }
    }

    #[test]
    fn deterministic_in_seed_step_and_index_and_bounded() {
        let mut a: Vec<f32> = [scene(), scene()].concat();
        let mut b = a.clone();
        augment_batch(Augment::Camera, &mut a, SHAPE, 7, 11).unwrap();
        augment_batch(Augment::Camera, &mut b, SHAPE, 7, 11).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
        let n = a.len() / 2;
        assert_ne!(a[..n], a[n..], "two places in the batch get two draws");
        for (seed, step) in [(8, 11), (7, 12)] {
            let mut c: Vec<f32> = [scene(), scene()].concat();
            augment_batch(Augment::Camera, &mut c, SHAPE, seed, step).unwrap();
            assert_ne!(a, c, "seed {seed} step {step}");
        }
        let mut none = scene();
        augment_batch(Augment::None, &mut none, SHAPE, 7, 11).unwrap();
        assert_eq!(none, scene());
        // bright and dark extremes stay in range
        let mut sat: Vec<f32> = (0..SHAPE.0 * SHAPE.1 * SHAPE.2)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        augment_batch(Augment::Camera, &mut sat, SHAPE, 1, 2).unwrap();
        assert!(sat.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn draws_cover_their_ranges() {
        let draws: Vec<CameraNuisance> = (0..400)
            .map(|i| CameraNuisance::for_image(3, i / 8, (i % 8) as usize))
            .collect();
        let span = |f: &dyn Fn(&CameraNuisance) -> f32| {
            let v: Vec<f32> = draws.iter().map(f).collect();
            (
                v.iter().copied().fold(f32::MAX, f32::min),
                v.iter().copied().fold(f32::MIN, f32::max),
            )
        };
        let (lo, hi) = span(&|d| d.gain);
        assert!(
            lo >= GAIN.0 && lo < 0.88 && hi <= GAIN.1 && hi > 1.12,
            "{lo} {hi}"
        );
        let (lo, hi) = span(&|d| d.balance[1]);
        assert!(lo >= BALANCE.0 && lo < 0.96 && hi <= BALANCE.1 && hi > 1.04);
        let (lo, hi) = span(&|d| d.noise_sigma);
        assert!(
            (1.0..1.3).contains(&lo) && hi <= 4.0 && hi > 3.7,
            "{lo} {hi}"
        );
        let (lo, hi) = span(&|d| d.shift.0 as f32);
        assert_eq!((lo, hi), (-2.0, 2.0));
        let (lo, hi) = span(&|d| d.jpeg_quality as f32);
        assert_eq!((lo, hi), (70.0, 95.0));
    }

    #[test]
    fn exposure_and_white_balance_scale_the_light() {
        let x = scene();
        let light = |v: &[f32]| mean(&v.iter().map(|&p| p + 1.0).collect::<Vec<_>>());
        let mut bright = x.clone();
        let d = CameraNuisance {
            gain: 1.15,
            ..identity()
        };
        d.apply(&mut bright, SHAPE).unwrap();
        let ratio = light(&bright) / light(&x);
        assert!((ratio - 1.15).abs() < 0.01, "{ratio}");
        let mut tinted = x.clone();
        let d = CameraNuisance {
            balance: [1.05, 1.0, 0.95],
            ..identity()
        };
        d.apply(&mut tinted, SHAPE).unwrap();
        let p = SHAPE.1 * SHAPE.2;
        let r = |ch: usize| light(&tinted[ch * p..][..p]) / light(&x[ch * p..][..p]);
        assert!(
            (r(0) - 1.05).abs() < 0.01 && (r(1) - 1.0).abs() < 0.01,
            "{}",
            r(0)
        );
        assert!((r(2) - 0.95).abs() < 0.01, "{}", r(2));
    }

    #[test]
    fn noise_has_its_sigma() {
        let flat = vec![0.0f32; SHAPE.0 * SHAPE.1 * SHAPE.2];
        for sigma in [1.0f32, 4.0] {
            let mut v = flat.clone();
            let d = CameraNuisance {
                noise_sigma: sigma,
                ..identity()
            };
            d.apply(&mut v, SHAPE).unwrap();
            let m = mean(&v);
            let sd = (v.iter().map(|&p| (p as f64 - m).powi(2)).sum::<f64>() / v.len() as f64)
                .sqrt()
                * 127.5;
            // JPEG at 100 and the 8-bit rounding add a little
            assert!((sd - sigma as f64).abs() < 0.35, "σ {sigma}: {sd}");
        }
    }

    #[test]
    fn jitter_moves_the_content_and_repeats_the_edges() {
        let (c, h, w) = (1, 5, 6);
        let mut img: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        shift_replicate(&mut img, (c, h, w), 2, -1);
        // out(y, x) = in(y + 1, x - 2), clamped to the frame
        assert_eq!(img[0], 6.0);
        assert_eq!(img[3], 7.0);
        assert_eq!(img[4 * w + 5], (4 * w + 3) as f32);
        let x = scene();
        let mut moved = x.clone();
        let d = CameraNuisance {
            shift: (2, 1),
            ..identity()
        };
        d.apply(&mut moved, SHAPE).unwrap();
        let w = SHAPE.2;
        // inside, the moved image is the scene one row down and two columns right
        let err = (10..50)
            .map(|y| (moved[y * w + 20] - x[(y - 1) * w + 18]).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.03, "{err}");
        assert!((moved[20] - x[18]).abs() < 0.03, "the top row repeats");
    }

    #[test]
    fn jpeg_leaves_its_artifacts() {
        // an 8x8 checker pattern is what JPEG's quantisation loses
        let (c, h, w) = SHAPE;
        let checker: Vec<f32> = (0..c * h * w)
            .map(|i| if (i % w + i / w) % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        let err = |q: u8| {
            let mut v = checker.clone();
            jpeg_roundtrip(&mut v, SHAPE, q).unwrap();
            v.iter()
                .zip(&checker)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>()
                / v.len() as f64
        };
        let (q70, q95, q100) = (err(70), err(95), err(100));
        assert!(q70 > q95 && q95 > q100 && q70 > 0.02, "{q70} {q95} {q100}");
        let mut gray = vec![0.25f32; h * w];
        jpeg_roundtrip(&mut gray, (1, h, w), 80).unwrap();
        assert!(gray.iter().all(|&v| (v - 0.25).abs() < 0.02));
        assert!(jpeg_roundtrip(&mut [0.0; 2 * 4], (2, 2, 2), 80).is_err());
    }
}
