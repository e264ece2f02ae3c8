//! Photos of ink on paper: a digit drawn dark on white, lit unevenly, with sensor noise and
//! JPEG, as a phone sees it; and ign-edge's paper-mode preprocessing that brings it back.

use anyhow::Result;
use image::{GrayImage, Luma, RgbImage};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A test digit (1×`size`×`size` in [-1, 1], white on black) as a phone photo of it drawn in
/// ink on paper: dark on white, 4× larger, lit unevenly, a little sensor noise, saved as JPEG
/// (quality 60) and decoded again.
pub fn ink_on_paper(img: &[f32], size: usize, rng: &mut impl Rng) -> Result<RgbImage> {
    let s = 4 * size as u32;
    let ink = image::imageops::resize(
        &GrayImage::from_fn(size as u32, size as u32, |x, y| {
            Luma([((img[y as usize * size + x as usize] + 1.0) * 127.5).clamp(0.0, 255.0) as u8])
        }),
        s,
        s,
        image::imageops::FilterType::Triangle,
    );
    // light falls off across the sheet from a random side; paper is slightly warm
    let (gx, gy) = (
        rng.random_range(-0.35f32..0.35),
        rng.random_range(-0.35f32..0.35),
    );
    let mut photo = RgbImage::new(s, s);
    for (x, y, p) in photo.enumerate_pixels_mut() {
        let (u, v) = (x as f32 / s as f32 - 0.5, y as f32 / s as f32 - 0.5);
        let light = (0.85 + gx * u + gy * v).clamp(0.4, 1.0);
        let covered = ink.get_pixel(x, y).0[0] as f32 / 255.0;
        let n: f32 = StandardNormal.sample(rng);
        let level = (light * (1.0 - 0.85 * covered) + 0.02 * n).clamp(0.0, 1.0) * 255.0;
        *p = image::Rgb([level as u8, (level * 0.98) as u8, (level * 0.93) as u8]);
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 60).encode_image(&photo)?;
    Ok(image::load_from_memory(&jpeg)?.to_rgb8())
}

/// The photo through ign-edge's paper-mode preprocessing (what `--paper` feeds the model).
pub fn paper_mode(photo: &RgbImage, size: usize) -> Vec<f32> {
    let pre = ign_core::preprocess::Preprocess {
        channels: 1,
        height: size,
        width: size,
        roi: None,
        paper: true,
    };
    let mut out = vec![0f32; size * size];
    pre.run(photo, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ink_on_paper_through_paper_mode_gives_back_the_digit() {
        // a bright bar on black, photographed dark on paper, comes back bright on black
        let img: Vec<f32> = (0..28 * 28)
            .map(|i| {
                if (12..16).contains(&(i % 28)) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let photo = ink_on_paper(&img, 28, &mut rng).unwrap();
        assert_eq!(photo.dimensions(), (112, 112));
        assert!(photo.get_pixel(8, 8).0[0] > 150, "paper is light");
        assert!(photo.get_pixel(56, 56).0[0] < 100, "ink is dark");
        let back = paper_mode(&photo, 28);
        let on: f32 = (0..28).map(|y| back[y * 28 + 14]).sum::<f32>() / 28.0;
        let off: f32 = (0..28).map(|y| back[y * 28 + 4]).sum::<f32>() / 28.0;
        assert!(on > 0.3 && off < -0.5, "bar {on}, background {off}");
    }
}
