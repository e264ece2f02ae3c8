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
//! datasets, printed digits rendered from the system's held-out faces ([`crate::z::fonts`]).
//!
//! And digits sketched with a round pen as on the pad (strokes of each digit, moved a little).

use anyhow::Result;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{mix, Dataset};
use crate::eval::apply;
use crate::eval::classifier::{argmax, frechet_distance, Classifier};
use crate::z::corrupt::{make, OOD_KINDS};
use crate::z::fonts::{Catalogue, Face, FontSet};
use crate::z::glyphs::render_digit;
use crate::z::sketch::sketch_digit;
use ign_core::backend::Projector;

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
    if test.labels.is_none() {
        anyhow::bail!("--ood needs labelled test data");
    }
    let shape = (test.channels, test.height, test.width);
    let per = test.image_len();
    let n = n.min(test.len());
    let (f_real, _) = clf.features_probs(&test.images, shape)?;
    let held_out = FontSet::HeldOut;
    let digits = digits && shape.0 == 1;
    let fonts = if digits {
        Catalogue::system(held_out).installed()
    } else {
        Vec::new()
    };
    if digits && fonts.is_empty() {
        log::warn!(
            "printed digits skipped: no font installed (apt install {})",
            held_out.packages()
        );
    }
    let names: Vec<&str> = fonts.iter().map(|f| f.name.as_str()).collect();
    let mut rows = Vec::new();
    let mut pictures = Vec::new();
    for (k, kind) in OOD_KINDS.iter().enumerate() {
        let Some(Inputs {
            input,
            truth,
            face_of,
        }) = inputs(kind, k as u64, seed, test, n, &fonts, digits)?
        else {
            continue;
        };
        let f = apply(projector, &input, shape, false)?;
        let ff = apply(projector, &f, shape, false)?;
        let (feat_in, p_in) = clf.features_probs(&input, shape)?;
        let (feat_f, p_f) = clf.features_probs(&f, shape)?;
        let (feat_ff, p_ff) = clf.features_probs(&ff, shape)?;
        rows.push(OodRow {
            by_face: face_rows(&face_of, &names, &truth, &p_in, &p_f),
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

/// The inputs of one kind, their true classes, and for printed digits each one's face.
struct Inputs {
    input: Vec<f32>,
    truth: Vec<u8>,
    face_of: Vec<usize>,
}

/// The `n` inputs of `kind` (the `k`-th, from `seed`), or none when the kind does not apply:
/// printed digits without faces, drawn digits and photos of ink for data that are not gray
/// digits.
fn inputs(
    kind: &str,
    k: u64,
    seed: u64,
    test: &Dataset,
    n: usize,
    fonts: &[Face],
    digits: bool,
) -> Result<Option<Inputs>> {
    let (mut input, mut truth, mut face_of) = (Vec::new(), Vec::new(), Vec::new());
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, 0, k));
    match kind {
        "printed" if fonts.is_empty() => return Ok(None),
        "pad-sketch" if !digits => return Ok(None),
        "ink-on-paper" if test.channels != 1 => return Ok(None),
        "printed" => {
            // digit i % 10 in face (i / 10) % faces: every face draws every digit
            for i in 0..n {
                face_of.push((i / 10) % fonts.len());
                let font = &fonts[(i / 10) % fonts.len()].font;
                let digit = (i % 10) as u8;
                input.extend(render_digit(font, digit, test.height, &mut rng)?);
                truth.push(digit);
            }
        }
        "pad-sketch" => {
            // digit i % 10, drawn as on the pad
            for i in 0..n {
                let digit = (i % 10) as u8;
                input.extend(sketch_digit(digit, test.height, &mut rng));
                truth.push(digit);
            }
        }
        _ => {
            let labels = test.labels.as_deref().unwrap_or_default();
            let shape = (test.channels, test.height, test.width);
            for (i, &label) in labels.iter().enumerate().take(n) {
                input.extend(make(kind, test.image(i), shape, mix(seed, i as u64, k))?);
                truth.push(label);
            }
        }
    }
    Ok(Some(Inputs {
        input,
        truth,
        face_of,
    }))
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
}
