//! Digits drawn by hand, as on the pad: each digit's strokes, moved a little, traced with a
//! round pen.

use rand::Rng;

/// Each digit as strokes (polylines in a unit box, y down), the way a hand draws it on the
/// pad: one or two strokes, no fill.
const STROKES: [&[&[(f32, f32)]]; 10] = [
    &[&[
        (0.5, 0.03),
        (0.24, 0.14),
        (0.15, 0.4),
        (0.18, 0.7),
        (0.32, 0.93),
        (0.55, 0.97),
        (0.76, 0.84),
        (0.85, 0.55),
        (0.8, 0.25),
        (0.66, 0.07),
        (0.5, 0.03),
    ]],
    &[&[(0.35, 0.2), (0.55, 0.03), (0.55, 0.97)]],
    &[&[
        (0.2, 0.25),
        (0.4, 0.05),
        (0.7, 0.07),
        (0.8, 0.28),
        (0.7, 0.5),
        (0.2, 0.95),
        (0.85, 0.95),
    ]],
    &[&[
        (0.2, 0.1),
        (0.75, 0.1),
        (0.45, 0.43),
        (0.75, 0.58),
        (0.78, 0.82),
        (0.55, 0.96),
        (0.2, 0.88),
    ]],
    &[
        &[(0.6, 0.05), (0.15, 0.65), (0.85, 0.65)],
        &[(0.65, 0.35), (0.65, 0.97)],
    ],
    &[&[
        (0.8, 0.05),
        (0.28, 0.05),
        (0.22, 0.45),
        (0.62, 0.4),
        (0.8, 0.62),
        (0.65, 0.92),
        (0.2, 0.9),
    ]],
    &[&[
        (0.7, 0.04),
        (0.35, 0.35),
        (0.2, 0.7),
        (0.38, 0.95),
        (0.68, 0.9),
        (0.75, 0.65),
        (0.55, 0.5),
        (0.3, 0.6),
    ]],
    &[&[(0.15, 0.08), (0.85, 0.08), (0.4, 0.97)]],
    &[&[
        (0.5, 0.5),
        (0.27, 0.3),
        (0.5, 0.04),
        (0.73, 0.28),
        (0.5, 0.5),
        (0.22, 0.72),
        (0.5, 0.96),
        (0.78, 0.72),
        (0.5, 0.5),
    ]],
    &[&[
        (0.75, 0.3),
        (0.5, 0.06),
        (0.25, 0.28),
        (0.45, 0.5),
        (0.75, 0.3),
        (0.72, 0.97),
    ]],
];

/// `digit` drawn by hand, as on the pad: its strokes with every point moved a little, the whole
/// rotated (±12°) and scaled, traced with a round pen 2 to 3.6 pixels wide, white on black.
pub fn sketch_digit(digit: u8, size: usize, rng: &mut impl Rng) -> Vec<f32> {
    let box_side = size as f32 * 20.0 / 28.0 * rng.random_range(0.85f32..1.05);
    let (sin, cos) = rng.random_range(-12f32..12.0).to_radians().sin_cos();
    let c = size as f32 / 2.0;
    let radius = rng.random_range(1.0f32..1.8);
    let strokes: Vec<Vec<(f32, f32)>> = STROKES[(digit % 10) as usize]
        .iter()
        .map(|stroke| {
            stroke
                .iter()
                .map(|&(u, v)| {
                    let u = u - 0.5 + rng.random_range(-0.04f32..0.04);
                    let v = v - 0.5 + rng.random_range(-0.04f32..0.04);
                    let (x, y) = (u * box_side, v * box_side);
                    (c + cos * x - sin * y, c + sin * x + cos * y)
                })
                .collect()
        })
        .collect();
    let mut img = vec![-1f32; size * size];
    for (i, p) in img.iter_mut().enumerate() {
        let (px, py) = ((i % size) as f32 + 0.5, (i / size) as f32 + 0.5);
        let d = strokes
            .iter()
            .flat_map(|s| s.windows(2))
            .map(|seg| segment_distance((px, py), seg[0], seg[1]))
            .fold(f32::INFINITY, f32::min);
        // a soft-edged pen, like the canvas's antialiased line
        *p = (radius + 0.5 - d).clamp(0.0, 1.0) * 2.0 - 1.0;
    }
    img
}

/// Distance from `p` to the segment `a`-`b`.
fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (qx * qx + qy * qy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_sketched_digit_is_strokes_through_its_template() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let one = sketch_digit(1, 28, &mut rng);
        assert_eq!(
            one,
            sketch_digit(1, 28, &mut rand::rngs::StdRng::seed_from_u64(3))
        );
        assert!(one.iter().all(|v| (-1.0..=1.0).contains(v)));
        // a "1" is a vertical stroke near the middle: bright there, dark at the sides
        let row = 14 * 28;
        assert!(
            (12..17).any(|x| one[row + x] > 0.9),
            "{:?}",
            &one[row..row + 28]
        );
        assert!(one[row + 2] == -1.0 && one[row + 25] == -1.0);
        // a "0" is a ring: dark in its middle, bright on its left side
        let zero = sketch_digit(0, 28, &mut rng);
        assert_eq!(zero[row + 14], -1.0);
        assert!((5..11).any(|x| zero[row + x] > 0.9));
        // strokes, not fills: most of the image stays background
        let lit = zero.iter().filter(|&&v| v > 0.0).count();
        assert!((40..300).contains(&lit), "{lit}");
    }
}
