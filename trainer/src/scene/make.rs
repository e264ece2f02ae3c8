//! `ign-train scene make`: a benchmark folder from photos, seen through a simulated fixed
//! camera (the layout in [`super`]).
//!
//! The scene's view is the largest centred square of the first photo, resized to `size×size`
//! (Lanczos). Every frame is that view through its own draw of the camera's nuisances
//! ([`CameraNuisance`]: jitter, exposure, white balance, sensor noise, JPEG), drawn from the
//! seed, the set and the frame's number. An anomalous frame has an object
//! ([`objects::place`]) drawn into the view first; its clean twin is the view without it
//! through the *same* nuisances, and outside the (jittered) mask the anomalous frame is its
//! clean twin pixel for pixel (JPEG's 8×8 blocks would otherwise carry the object a few
//! pixels past its mask).

use anyhow::{bail, Context, Result};
use ign_core::imaging::{self, chw_to_image};
use image::GrayImage;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::objects::{self, Kind, Placed};
use super::{frame_name, Layout, SCHEMA};
use crate::data::augment::{self, shift_replicate, CameraNuisance};
use crate::data::mix;

/// What `scene make` builds.
#[derive(Clone, Debug, PartialEq)]
pub struct MakeOptions {
    /// Photos (files; folders are listed by the caller): the first is the scene, the others
    /// give the foreign patches.
    pub photos: Vec<PathBuf>,
    /// Side of the frames, in pixels.
    pub size: usize,
    /// Normal training frames.
    pub train: usize,
    /// Normal test frames: the false-alarm rate is measured on them (1,000 resolve 1% to about
    /// ±0.3%).
    pub normal: usize,
    /// Anomalous test frames of each kind.
    pub test: usize,
    pub seed: u64,
    /// The kinds of anomalies (all by default).
    pub kinds: Vec<Kind>,
}

impl Default for MakeOptions {
    fn default() -> Self {
        MakeOptions {
            photos: Vec::new(),
            size: 64,
            train: 400,
            normal: 1000,
            test: 100,
            seed: 0,
            kinds: Kind::ALL.to_vec(),
        }
    }
}

/// `manifest.json` of a benchmark folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    /// The scene's photo.
    pub photo: String,
    /// The photos of the foreign patches.
    pub foreign_photos: Vec<String>,
    pub seed: u64,
    pub size: usize,
    pub train: usize,
    /// Normal test frames (absent from benchmarks made before it had its own count: `test`).
    #[serde(default)]
    pub normal: usize,
    /// Anomalous test frames of each kind.
    pub test: usize,
    pub kinds: Vec<KindEntry>,
    /// The camera's nuisances (the ranges of `--augment camera`).
    pub camera: CameraRanges,
    /// Every anomalous frame's object.
    pub objects: Vec<ObjectEntry>,
}

/// A kind of anomaly in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindEntry {
    pub kind: Kind,
    pub description: String,
    /// The share of the frame its objects cover, `[min, max]`.
    pub area: [f64; 2],
}

/// The ranges of the camera's nuisances, as [`crate::data::augment`] states them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraRanges {
    pub gain: [f32; 2],
    pub white_balance: [f32; 2],
    pub noise_sigma: [f32; 2],
    pub max_shift: i32,
    pub jpeg_quality: [u8; 2],
}

/// One anomalous frame's object, in frame coordinates (after the jitter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// The frame's file, relative to the benchmark folder.
    pub file: String,
    pub kind: Kind,
    /// The mask's share of the frame.
    pub area: f64,
    /// `[x, y, w, h]`.
    pub bbox: [usize; 4],
    /// The mean change inside the mask before the nuisances (`[-1, 1]` scale).
    pub contrast: f32,
}

/// Streams of the seed: one per set of frames, so that adding a kind or frames to one set
/// leaves the others as they were.
const TRAIN: u64 = 0x5ce7_0001;
const NORMAL: u64 = 0x5ce7_0002;
const ANOMAL: u64 = 0x5ce7_0100;
const PLACE: u64 = 0x5ce7_0200;

/// The scene's view: the largest centred square of `photo`, `3×size×size` in `[-1, 1]`.
pub fn view_of(photo: &Path, size: usize) -> Result<Vec<f32>> {
    let img = imaging::open_image(photo)?;
    Ok(imaging::image_to_chw(&img, 3, size, size))
}

/// Build the benchmark in `out` (which must be empty or absent); returns its manifest.
pub fn make(out: &Path, opts: &MakeOptions) -> Result<Manifest> {
    let Some(photo) = opts.photos.first() else {
        bail!("no photo: pass --photos with a photo of the scene (and others for the foreign patches)");
    };
    if opts.kinds.is_empty() || opts.train == 0 || opts.normal == 0 || opts.test == 0 {
        bail!("the benchmark needs training frames, test frames and at least one kind");
    }
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{}: the folder is not empty; give a new --out",
            out.display()
        );
    }
    let s = opts.size;
    let view = view_of(photo, s)?;
    // the foreign photos at twice the frame's scale: a patch is a piece of them
    let foreign: Vec<(Vec<f32>, usize)> = opts.photos[1..]
        .iter()
        .map(|p| view_of(p, 2 * s).map(|v| (v, 2 * s)))
        .collect::<Result<_>>()?;
    let layout = Layout::new(out);
    layout.create(&opts.kinds)?;
    ign_core::fsio::save_png(&out.join("view.png"), &chw_to_image(&view, 3, s, s))?;
    for (dir, count, stream) in [
        (&layout.train, opts.train, TRAIN),
        (&layout.normal, opts.normal, NORMAL),
    ] {
        for i in 0..count {
            let mut frame = view.clone();
            nuisance(opts.seed, stream, i).apply(&mut frame, (3, s, s))?;
            save_frame(&dir.join(frame_name(i)), &frame, s)?;
        }
    }
    let mut entries = Vec::new();
    for (k, &kind) in opts.kinds.iter().enumerate() {
        let stream = ANOMAL + kind as u64;
        for i in 0..opts.test {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(mix(opts.seed, i as u64, PLACE + k as u64));
            let placed = objects::place(kind, &view, s, &foreign, &mut rng)?;
            let n = nuisance(opts.seed, stream, i);
            let e = write_anomalous(&layout, kind, i, &view, placed, &n, s)?;
            entries.push(e);
        }
        log::info!("{}: {} frames", kind, opts.test);
    }
    let manifest = manifest(opts, entries);
    ign_core::fsio::atomic_write(
        &layout.manifest(),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(manifest)
}

/// The camera's nuisances of frame `i` of a set.
fn nuisance(seed: u64, stream: u64, i: usize) -> CameraNuisance {
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, i as u64, stream));
    CameraNuisance::draw(&mut rng)
}

/// The anomalous frame `i` of `kind`, its clean twin and its mask, written; its manifest entry.
fn write_anomalous(
    layout: &Layout,
    kind: Kind,
    i: usize,
    view: &[f32],
    placed: Placed,
    n: &CameraNuisance,
    s: usize,
) -> Result<ObjectEntry> {
    let shape = (3, s, s);
    let mut clean = view.to_vec();
    n.apply(&mut clean, shape)?;
    let mut anomal = placed.image;
    n.apply(&mut anomal, shape)?;
    // the mask moves with the camera's jitter
    let mut m: Vec<f32> = placed.mask.iter().map(|&b| b as u8 as f32).collect();
    shift_replicate(&mut m, (1, s, s), n.shift.0, n.shift.1);
    let mask: Vec<bool> = m.iter().map(|&v| v > 0.5).collect();
    for (c, plane) in anomal.chunks_mut(s * s).enumerate() {
        for (j, v) in plane.iter_mut().enumerate() {
            if !mask[j] {
                *v = clean[c * s * s + j];
            }
        }
    }
    let name = frame_name(i);
    save_frame(&layout.anomalous(kind).join(&name), &anomal, s)?;
    save_frame(&layout.clean(kind).join(&name), &clean, s)?;
    let gray = GrayImage::from_fn(s as u32, s as u32, |x, y| {
        image::Luma([if mask[y as usize * s + x as usize] {
            255
        } else {
            0
        }])
    });
    let mask_path = layout.masks(kind).join(&name);
    gray.save(&mask_path)
        .with_context(|| format!("{}: cannot write the mask", mask_path.display()))?;
    let (x, y, w, h) = placed.bbox;
    Ok(ObjectEntry {
        file: format!("test/anomalous/{kind}/{name}"),
        kind,
        area: mask.iter().filter(|&&b| b).count() as f64 / (s * s) as f64,
        bbox: [
            (x as i32 + n.shift.0) as usize,
            (y as i32 + n.shift.1) as usize,
            w,
            h,
        ],
        contrast: placed.contrast,
    })
}

fn save_frame(path: &Path, frame: &[f32], s: usize) -> Result<()> {
    ign_core::fsio::save_png(path, &chw_to_image(frame, 3, s, s))
}

fn manifest(opts: &MakeOptions, objects: Vec<ObjectEntry>) -> Manifest {
    let name = |p: &PathBuf| p.display().to_string();
    Manifest {
        schema: SCHEMA,
        photo: name(&opts.photos[0]),
        foreign_photos: opts.photos[1..].iter().map(name).collect(),
        seed: opts.seed,
        size: opts.size,
        train: opts.train,
        normal: opts.normal,
        test: opts.test,
        kinds: opts
            .kinds
            .iter()
            .map(|&kind| KindEntry {
                kind,
                description: kind.description().to_string(),
                area: [
                    objects::MIN_AREA,
                    if kind == Kind::Object {
                        objects::SMALL_MAX_AREA
                    } else {
                        objects::MAX_AREA
                    },
                ],
            })
            .collect(),
        camera: CameraRanges {
            gain: [augment::GAIN.0, augment::GAIN.1],
            white_balance: [augment::BALANCE.0, augment::BALANCE.1],
            noise_sigma: [augment::NOISE_SIGMA.0, augment::NOISE_SIGMA.1],
            max_shift: augment::MAX_SHIFT,
            jpeg_quality: [augment::JPEG_QUALITY.0, augment::JPEG_QUALITY.1],
        },
        objects,
    }
}

/// Read `manifest.json` of the benchmark in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = Layout::new(dir).manifest();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: cannot read the benchmark's manifest; make the benchmark with ign-train scene make",
            path.display()
        )
    })?;
    let m: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a scene benchmark manifest", path.display()))?;
    if m.schema != SCHEMA {
        bail!(
            "{}: schema {} (this ign-train reads {SCHEMA}); make the benchmark again",
            path.display(),
            m.schema
        );
    }
    Ok(m)
}
