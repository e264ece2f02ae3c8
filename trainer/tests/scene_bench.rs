//! The scene benchmark (`ign-train scene make` and `scene eval`): the generator is
//! deterministic, writes the stated frames, masks of 1-6% of the frame and clean twins equal
//! to the anomalous frames outside the masks; the evaluation's figures on a tiny model, and its
//! metric code on maps whose answers are known.

use ign_train::scene::eval::{self, pixel_auroc, psnr_where, SceneEvalOptions, PSNR_CAP};
use ign_train::scene::make::{make, read_manifest, MakeOptions};
use ign_train::scene::{objects, Kind, Layout};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Two synthetic photos (a textured scene and another with other colours), as a camera's
/// JPEG-free pictures of different sizes.
fn photos(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let scene = image::RgbImage::from_fn(120, 90, |x, y| {
        let stripes = if (x / 7 + y / 5) % 2 == 0 { 40 } else { 0 };
        image::Rgb([
            (60 + x + stripes) as u8,
            (80 + y * 2) as u8,
            (150 - y + stripes / 2) as u8,
        ])
    });
    let other = image::RgbImage::from_fn(100, 100, |x, y| {
        image::Rgb([(200 - x) as u8, ((x * y) % 255) as u8, (y * 2) as u8])
    });
    let (a, b) = (dir.join("scene.png"), dir.join("other.png"));
    scene.save(&a).unwrap();
    other.save(&b).unwrap();
    vec![a, b]
}

fn options(photos: Vec<PathBuf>, seed: u64) -> MakeOptions {
    MakeOptions {
        photos,
        size: 32,
        train: 6,
        normal: 7,
        test: 5,
        seed,
        kinds: Kind::ALL.to_vec(),
    }
}

/// Every file under `dir` with its bytes, by path relative to it, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn rgb(path: &Path) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn the_generator_is_deterministic_and_writes_the_stated_frames() {
    let dir = tempfile::tempdir().unwrap();
    let p = photos(&dir.path().join("photos"));
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let m = make(&a, &options(p.clone(), 3)).unwrap();
    make(&b, &options(p.clone(), 3)).unwrap();
    make(&c, &options(p.clone(), 4)).unwrap();
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa, fb, "the same seed makes the same benchmark");
    assert_eq!(fa.len(), fc.len());
    assert_ne!(fa, fc, "another seed another");
    let layout = Layout::new(&a);
    let count = |d: &Path| std::fs::read_dir(d).unwrap().count();
    assert_eq!(count(&layout.train), 6);
    assert_eq!(count(&layout.normal), 7);
    for kind in Kind::ALL {
        for d in [
            layout.anomalous(kind),
            layout.masks(kind),
            layout.clean(kind),
        ] {
            assert_eq!(count(&d), 5, "{}", d.display());
        }
    }
    // the training frames differ from frame to frame (the camera's nuisances)
    let t0 = rgb(&layout.train.join("frame-000000.png"));
    assert_eq!(t0.dimensions(), (32, 32));
    assert_ne!(t0, rgb(&layout.train.join("frame-000001.png")));
    assert_eq!(read_manifest(&a).unwrap(), m);
    assert_eq!(
        (m.seed, m.size, m.train, m.normal, m.test),
        (3, 32, 6, 7, 5)
    );
    assert_eq!(m.objects.len(), 20);
    assert_eq!(m.foreign_photos.len(), 1);
    // a folder in use is refused; so is a foreign patch without a second photo
    assert!(make(&a, &options(p.clone(), 3)).is_err());
    let err = make(&dir.path().join("d"), &options(p[..1].to_vec(), 3)).unwrap_err();
    assert!(format!("{err:#}").contains("second photo"), "{err:#}");
}

#[test]
fn masks_cover_1_to_6_percent_and_the_clean_twin_differs_only_inside() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let mut opts = options(photos(&dir.path().join("photos")), 9);
    opts.size = 64;
    opts.train = 1;
    opts.test = 8;
    let m = make(&out, &opts).unwrap();
    let layout = Layout::new(&out);
    for o in &m.objects {
        let name = Path::new(&o.file).file_name().unwrap();
        let mask = image::open(layout.masks(o.kind).join(name))
            .unwrap()
            .to_luma8();
        let inside: Vec<bool> = mask.pixels().map(|p| p.0[0] > 127).collect();
        let area = inside.iter().filter(|&&b| b).count() as f64 / (64.0 * 64.0);
        let max = if o.kind == Kind::Object {
            objects::SMALL_MAX_AREA
        } else {
            objects::MAX_AREA
        };
        assert!(
            (objects::MIN_AREA..=max).contains(&area),
            "{}: {area}",
            o.file
        );
        assert!((area - o.area).abs() < 1e-9, "the manifest's area");
        let anomal = rgb(&out.join(&o.file));
        let clean = rgb(&layout.clean(o.kind).join(name));
        let mut differ = 0;
        for (i, (p, q)) in anomal.pixels().zip(clean.pixels()).enumerate() {
            if !inside[i] {
                assert_eq!(p, q, "{}: pixel {i} outside the mask", o.file);
            } else if p != q {
                differ += 1;
            }
        }
        assert!(differ > 0, "{}: the object shows", o.file);
    }
}

#[test]
fn the_metrics_give_known_answers_on_synthetic_maps() {
    let masks: Vec<Vec<bool>> = (0..3)
        .map(|k| (0..64).map(|i| (i + k) % 10 == 0).collect())
        .collect();
    let mask_refs: Vec<&[bool]> = masks.iter().map(|m| m.as_slice()).collect();
    // an oracle map: high inside, low outside
    let oracle: Vec<Vec<f32>> = masks
        .iter()
        .map(|m| m.iter().map(|&b| if b { 0.9 } else { 0.1 }).collect())
        .collect();
    let refs: Vec<&[f32]> = oracle.iter().map(|m| m.as_slice()).collect();
    assert_eq!(pixel_auroc(&refs, &mask_refs), 1.0);
    let flat = vec![0.5f32; 64];
    assert_eq!(pixel_auroc(&[&flat, &flat, &flat], &mask_refs), 0.5);
    let inverted: Vec<Vec<f32>> = oracle
        .iter()
        .map(|m| m.iter().map(|v| 1.0 - v).collect())
        .collect();
    let refs: Vec<&[f32]> = inverted.iter().map(|m| m.as_slice()).collect();
    assert_eq!(pixel_auroc(&refs, &mask_refs), 0.0);
    // PSNR over two channels of 2x2: the peak-to-peak is 2, an error of 0.2 everywhere inside
    let mask = [true, false, false, true];
    let clean = [0.0f32; 8];
    let mut x = clean;
    for i in [0, 3, 4, 7] {
        x[i] = 0.2;
    }
    let inside = psnr_where(&x, &clean, &mask, true);
    assert!((inside - 20.0).abs() < 1e-5, "{inside}");
    assert_eq!(psnr_where(&x, &clean, &mask, false), PSNR_CAP);
    assert!(psnr_where(&x, &clean, &[false; 4], true).is_nan());
    assert_eq!(eval::rate_above(&[0.1, 0.5, 0.9, 1.0], 0.5), 0.5);
}

/// A tiny model of the benchmark's training frames (a few steps, exported with its
/// threshold), evaluated by the command: figures in range, one row per kind, the JSON.
#[test]
fn scene_eval_reports_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench");
    let mut opts = options(photos(&dir.path().join("photos")), 1);
    opts.train = 20;
    make(&bench, &opts).unwrap();
    let bin = env!("CARGO_BIN_EXE_ign-train");
    let run = dir.path().join("run");
    let status = Command::new(bin)
        .args(["train", "--data"])
        .arg(bench.join("train"))
        .args(["--image-size", "32", "--channels", "3", "--width", "4"])
        .args(["--batch", "4", "--steps", "2", "--norm", "batch"])
        .args(["--test-fraction", "0.2", "--threads", "1", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let model = dir.path().join("m.onnx");
    let out = Command::new(bin)
        .args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json = dir.path().join("eval.json");
    let out = Command::new(bin)
        .args(["scene", "eval", "--threads", "1", "--bench"])
        .arg(&bench)
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    for kind in Kind::ALL {
        assert!(table.contains(&kind.to_string()), "{table}");
    }
    let r: eval::SceneReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (r.normal_frames, r.anomalous_frames, r.kinds.len()),
        (7, 20, 4)
    );
    assert!(r.threshold.is_some() && r.false_alarm_rate.is_some());
    let unit = |v: f64| (0.0..=1.0).contains(&v);
    assert!(unit(r.image_auroc) && unit(r.pixel_auroc), "{r:?}");
    for k in &r.kinds {
        assert!(unit(k.image_auroc) && unit(k.pixel_auroc), "{k:?}");
        assert!(k.restoration.psnr_input.is_finite() && k.restoration.psnr_f.is_finite());
    }
    // the library gives the same figures as the command
    let again = eval::evaluate(&SceneEvalOptions {
        bench: bench.clone(),
        model: model.clone(),
        threads: Some(1),
        score: None,
        threshold: None,
    })
    .unwrap();
    assert_eq!(again.image_auroc, r.image_auroc);
    let (a, b) = (&again.kinds[3].restoration, &r.kinds[3].restoration);
    assert!((a.psnr_f - b.psnr_f).abs() < 1e-9, "{a:?} {b:?}");
    // a model of another size is refused with both sizes named
    let err = eval::evaluate(&SceneEvalOptions {
        bench: bench.clone(),
        model: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ign-mnist.onnx"),
        threads: Some(1),
        score: None,
        threshold: None,
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("3x32x32"), "{err:#}");
}
