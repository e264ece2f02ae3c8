//! `ign-train eval --ood`: does f make *other* inputs real, not only noise?
//!
//! Each kind of input is made deterministically from the held-out test images (so their true
//! labels are known): Gaussian noise added, a third occluded (top, bottom, side), thick and
//! thin strokes, blur, a noisy textured background, a shift-rotate-scale. For each kind the
//! evaluation classifier's accuracy on the input, on f(input) and on f(f(input)), and the
//! Fréchet distance of each to the real test images: f makes a kind real when accuracy rises
//! (or stays) and the distance falls.
//!
//! Two more kinds are what a camera sees: photos of the test digits drawn in ink on paper
//! (dark on white, uneven light, JPEG) through the paper-mode preprocessing, and, for digit
//! datasets, printed digits rendered from the system's held-out faces ([`crate::fonts`]).
//!
//! And digits sketched with a round pen as on the pad (strokes of each digit, moved a little).

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::classifier::{argmax, frechet_distance, Classifier};
use crate::corrupt::{affine, box_blur, filter3, occlude};
use crate::data::{mix, Dataset};
use crate::eval::apply;
use ign_core::backend::Projector;

/// The kinds of input, by name, in report order.
pub const KINDS: [&str; 13] = [
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
/// let a = ign_train::ood::make("noisy-background", &img, (1, 28, 28), 5).unwrap();
/// assert_eq!(a, ign_train::ood::make("noisy-background", &img, (1, 28, 28), 5).unwrap());
/// assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)) && a != img);
/// ```
pub fn make(kind: &str, img: &[f32], shape: (usize, usize, usize), seed: u64) -> Result<Vec<f32>> {
    let (_, h, w) = shape;
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
        "noisy-background" => {
            // a wavy texture of random phase and a little noise, under the strokes
            let (fx, fy) = (rng.random_range(0.2f32..0.6), rng.random_range(0.2f32..0.6));
            let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
            let plane = h * w;
            for (i, p) in v.iter_mut().enumerate() {
                let (y, x) = ((i % plane) / w, i % w);
                let texture = 0.35 * ((fx * x as f32 + fy * y as f32 + phase).sin() + 1.0);
                let e: f32 = StandardNormal.sample(&mut rng);
                *p = p.max(-1.0 + texture + 0.15 * e).clamp(-1.0, 1.0);
            }
        }
        "ink-on-paper" => {
            if shape.0 != 1 {
                anyhow::bail!("ink-on-paper is for gray models");
            }
            let photo = crate::printed::ink_on_paper(img, h, &mut rng)?;
            v = crate::printed::paper_mode(&photo, h);
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
        other => anyhow::bail!("unknown OOD kind {other:?}; the kinds are {KINDS:?}"),
    }
    Ok(v)
}

/// The figures of one kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OodRow {
    pub kind: String,
    pub images: usize,
    /// Classifier accuracy (true label of the test image) of the input, f and f∘f.
    pub accuracy_input: f64,
    pub accuracy_f: f64,
    pub accuracy_ff: f64,
    /// Fréchet distance (classifier features) to the real test images.
    pub fd_input: f64,
    pub fd_f: f64,
    pub fd_ff: f64,
    /// Printed digits: the accuracies of each held-out face (which faces f fails on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_face: Vec<FaceRow>,
}

/// The accuracies of one face's printed digits (the same draws as its kind's row).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaceRow {
    pub face: String,
    pub images: usize,
    pub accuracy_input: f64,
    pub accuracy_f: f64,
}

impl OodRow {
    /// f keeps or raises accuracy and lowers the distance to real images.
    pub fn made_real(&self) -> bool {
        self.accuracy_f >= self.accuracy_input && self.fd_f < self.fd_input
    }
}

/// Inputs, f and f∘f of every kind, for the grid picture.
pub struct OodImages {
    pub kind: String,
    pub input: Vec<f32>,
    pub f: Vec<f32>,
    pub ff: Vec<f32>,
}

/// Evaluate `projector` on `n` test images of every kind (labels needed); `digits`: the
/// data are digits, so printed digits are a kind too.
pub fn evaluate(
    projector: &mut Projector,
    clf: &Classifier,
    test: &Dataset,
    n: usize,
    seed: u64,
    digits: bool,
) -> Result<(Vec<OodRow>, Vec<OodImages>)> {
    let labels = test
        .labels
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--ood needs labelled test data"))?;
    let shape = (test.channels, test.height, test.width);
    let per = test.image_len();
    let n = n.min(test.len());
    let (f_real, _) = clf.features_probs(&test.images, shape)?;
    let held_out = crate::fonts::FontSet::HeldOut;
    let fonts = if digits && shape.0 == 1 {
        crate::fonts::Catalogue::system(held_out).installed()
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    let mut pictures = Vec::new();
    for (k, kind) in KINDS.iter().enumerate() {
        let mut input = Vec::with_capacity(n * per);
        let mut truth = Vec::with_capacity(n);
        // printed digits: the face of each image
        let mut face_of = Vec::new();
        match *kind {
            "printed" if fonts.is_empty() => {
                if digits && shape.0 == 1 {
                    log::warn!(
                        "printed digits skipped: no font installed (apt install {})",
                        held_out.packages()
                    );
                }
                continue;
            }
            "printed" => {
                // digit i % 10 in font (i / 10) % fonts: every font draws every digit
                let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, k as u64));
                for i in 0..n {
                    face_of.push((i / 10) % fonts.len());
                    let font = &fonts[(i / 10) % fonts.len()].font;
                    let digit = (i % 10) as u8;
                    input.extend(crate::printed::render_digit(
                        font,
                        digit,
                        test.height,
                        &mut rng,
                    )?);
                    truth.push(digit);
                }
            }
            "pad-sketch" if !(digits && shape.0 == 1) => continue,
            "pad-sketch" => {
                // digit i % 10, drawn as on the pad
                let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, k as u64));
                for i in 0..n {
                    let digit = (i % 10) as u8;
                    input.extend(crate::printed::sketch_digit(digit, test.height, &mut rng));
                    truth.push(digit);
                }
            }
            "ink-on-paper" if shape.0 != 1 => continue,
            _ => {
                for (i, &label) in labels.iter().enumerate().take(n) {
                    input.extend(make(
                        kind,
                        test.image(i),
                        shape,
                        mix(seed, i as u64, k as u64),
                    )?);
                    truth.push(label);
                }
            }
        }
        let f = apply(projector, &input, shape, false)?;
        let ff = apply(projector, &f, shape, false)?;
        let (feat_in, p_in) = clf.features_probs(&input, shape)?;
        let (feat_f, p_f) = clf.features_probs(&f, shape)?;
        let (feat_ff, p_ff) = clf.features_probs(&ff, shape)?;
        let names: Vec<&str> = fonts.iter().map(|f| f.name.as_str()).collect();
        let by_face = face_rows(&face_of, &names, &truth, &p_in, &p_f);
        rows.push(OodRow {
            by_face,
            kind: kind.to_string(),
            images: n,
            accuracy_input: accuracy(&p_in, &truth),
            accuracy_f: accuracy(&p_f, &truth),
            accuracy_ff: accuracy(&p_ff, &truth),
            fd_input: frechet_distance(&feat_in, &f_real).max(0.0),
            fd_f: frechet_distance(&feat_f, &f_real).max(0.0),
            fd_ff: frechet_distance(&feat_ff, &f_real).max(0.0),
        });
        let shown = 8.min(n) * per;
        pictures.push(OodImages {
            kind: kind.to_string(),
            input: input[..shown].to_vec(),
            f: f[..shown].to_vec(),
            ff: ff[..shown].to_vec(),
        });
    }
    Ok((rows, pictures))
}

/// The share of `probs` whose top class is the label.
fn accuracy(probs: &[Vec<f32>], labels: &[u8]) -> f64 {
    let right = probs
        .iter()
        .zip(labels)
        .filter(|(p, &l)| argmax(p) == l as usize)
        .count();
    right as f64 / probs.len().max(1) as f64
}

/// The accuracies of input and f per face, image `i` drawn in face `face_of[i]` (none when
/// `face_of` is empty: the kind is not printed digits).
fn face_rows(
    face_of: &[usize],
    names: &[&str],
    truth: &[u8],
    p_in: &[Vec<f32>],
    p_f: &[Vec<f32>],
) -> Vec<FaceRow> {
    let faces = if face_of.is_empty() { 0 } else { names.len() };
    (0..faces)
        .map(|g| {
            let mine = || (0..face_of.len()).filter(move |&i| face_of[i] == g);
            let right = |p: &[Vec<f32>]| {
                let n = mine()
                    .filter(|&i| argmax(&p[i]) == truth[i] as usize)
                    .count();
                n as f64 / mine().count().max(1) as f64
            };
            FaceRow {
                face: names[g].to_string(),
                images: mine().count(),
                accuracy_input: right(p_in),
                accuracy_f: right(p_f),
            }
        })
        .collect()
}

/// The table, one line per kind.
pub fn table(rows: &[OodRow]) -> String {
    let mut s = format!(
        "{:<18} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}  made real\n",
        "OOD kind", "acc in", "acc f", "acc f2", "FD in", "FD f", "FD f2"
    );
    for r in rows {
        s += &format!(
            "{:<18} {:>8.3} {:>8.3} {:>8.3}   {:>8.1} {:>8.1} {:>8.1}  {}\n",
            r.kind,
            r.accuracy_input,
            r.accuracy_f,
            r.accuracy_ff,
            r.fd_input,
            r.fd_f,
            r.fd_ff,
            if r.made_real() { "yes" } else { "no" }
        );
        for g in &r.by_face {
            s += &format!(
                "  {:<16} {:>8.3} {:>8.3}\n",
                g.face, g.accuracy_input, g.accuracy_f
            );
        }
    }
    s
}

/// A grid: per kind three rows (input, f, f∘f) of up to 8 images.
pub fn grid(pictures: &[OodImages], shape: (usize, usize, usize)) -> Result<image::RgbImage> {
    let (c, h, w) = shape;
    let per = c * h * w;
    let tiles = |buf: &[f32]| -> Vec<image::RgbImage> {
        buf.chunks(per)
            .map(|b| ign_core::imaging::chw_to_image(b, c, h, w))
            .collect()
    };
    let mut rows = Vec::new();
    for p in pictures {
        rows.push(tiles(&p.input));
        rows.push(tiles(&p.f));
        rows.push(tiles(&p.ff));
    }
    ign_core::imaging::grid(&rows, ign_core::imaging::default_scale(h).min(2), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_face_gets_the_accuracy_of_its_own_images() {
        let hot =
            |c: usize| -> Vec<f32> { (0..3).map(|k| if k == c { 1.0 } else { 0.0 }).collect() };
        // faces a, b, a, b; labels 1, 2, 0, 1
        let (face_of, truth) = ([0, 1, 0, 1], [1u8, 2, 0, 1]);
        let p_in = vec![hot(1), hot(0), hot(0), hot(0)]; // a: 2 of 2, b: 0 of 2
        let p_f = vec![hot(2), hot(2), hot(0), hot(1)]; // a: 1 of 2, b: 2 of 2
        let rows = face_rows(&face_of, &["a", "b"], &truth, &p_in, &p_f);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.face.as_str(), r.images, r.accuracy_input, r.accuracy_f))
            .collect();
        assert_eq!(got, vec![("a", 2, 1.0, 0.5), ("b", 2, 0.0, 1.0)]);
        assert!(face_rows(&[], &["a"], &[], &[], &[]).is_empty());
    }

    #[test]
    fn every_kind_is_deterministic_shaped_and_in_range() {
        // a bright square, rows and columns 6..22, on the dark background
        let inside = |i: usize| (6..22).contains(&(i % 28)) && (6..22).contains(&(i / 28));
        let img: Vec<f32> = (0..28 * 28)
            .map(|i| if inside(i) { 1.0 } else { -1.0 })
            .collect();
        for kind in KINDS
            .iter()
            .filter(|&&k| k != "printed" && k != "pad-sketch")
        {
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
    }
}
