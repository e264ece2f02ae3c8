//! Where a batch of `z` comes from: noise, corruptions of training images (`--z-mix`) and
//! printed digits from the training faces (`--z-printed`), each a pure function of (seed, step).

use ign_train::data::{load, DataOptions};
use ign_train::model::{ModelConfig, Norm};
use ign_train::train::loss::{LossConfig, RestoreMatch};
use ign_train::train::optim::AdamConfig;
use ign_train::train::{TrainConfig, Trainer, ZFonts};
use ign_train::z::noise::NoiseKind;
use std::path::{Path, PathBuf};

fn trainer(z_mix: f64, z_printed: f64) -> anyhow::Result<Trainer> {
    trainer_with(z_mix, z_printed, LossConfig::default())
}

fn trainer_with(z_mix: f64, z_printed: f64, loss: LossConfig) -> anyhow::Result<Trainer> {
    trainer_fonts(z_mix, z_printed, loss, ZFonts::Dir(fixture_fonts()))
}

/// The committed faces (the Go fonts, trainer/tests/fixtures/fonts/LICENSE).
fn fixture_fonts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fonts")
}

fn trainer_fonts(
    z_mix: f64,
    z_printed: f64,
    loss: LossConfig,
    z_fonts: ZFonts,
) -> anyhow::Result<Trainer> {
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-300-images-idx3-ubyte.gz");
    let split = load(&data, &DataOptions::default())?;
    let config = TrainConfig {
        model: ModelConfig {
            channels: 1,
            image_size: 28,
            width: 4,
            norm: Norm::Batch,
        },
        loss,
        adam: AdamConfig::default(),
        noise: NoiseKind::Gaussian,
        z_mix,
        z_printed,
        z_fonts,
        z_tight: Default::default(),
        z_bn: Default::default(),
        augment: Default::default(),
        ema: 0.0,
        batch: 8,
        seed: 3,
        test_fraction: 0.1,
        data: "fixture".into(),
        dataset_name: "mnist".into(),
        recipe: None,
    };
    Trainer::new(config, split.train, split.test)
}

/// Share of a 28×28 image at the background value (-1).
fn background(img: &[f32]) -> f64 {
    img.iter().filter(|&&v| v == -1.0).count() as f64 / img.len() as f64
}

#[test]
fn printed_digits_fill_their_share_of_z_deterministically() {
    let t = trainer(0.25, 0.25).unwrap();
    let z = t.noise_batch(17, 8).unwrap();
    assert_eq!(z.dims(), &[8, 1, 28, 28]);
    let v = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let img = |i: usize| &v[i * 784..(i + 1) * 784];
    // 4 noise images (no pixel exactly at the background), 2 corrupted digits and 2 printed
    // digits (mostly background, white strokes)
    for i in 0..4 {
        assert!(background(img(i)) < 0.05, "image {i} is not noise");
    }
    for i in 6..8 {
        let b = background(img(i));
        assert!((0.5..0.97).contains(&b), "image {i}: {b} of it background");
        assert!(img(i).iter().any(|&p| p > 0.9), "image {i} has no stroke");
        assert!(img(i).iter().all(|p| (-1.0..=1.0).contains(p)));
    }
    // a pure function of (seed, step)
    let again = t.noise_batch(17, 8).unwrap().flatten_all().unwrap();
    assert_eq!(again.to_vec1::<f32>().unwrap(), v);
    let other = t.noise_batch(18, 8).unwrap().flatten_all().unwrap();
    assert_ne!(other.to_vec1::<f32>().unwrap()[6 * 784..], v[6 * 784..]);
}

#[test]
fn z_fractions_over_one_are_refused() {
    let err = trainer(0.7, 0.5).err().unwrap().to_string();
    assert!(
        err.contains("--z-printed") && err.contains("at most 1"),
        "{err}"
    );
    assert!(trainer(-0.1, 0.0).is_err());
}

/// The restoration targets (`--lambda-restore`) are the training images behind the corrupted
/// part of z, in its order: each target is a training image, and differs from its z.
#[test]
fn restoration_targets_are_the_sources_of_the_corrupted_z() {
    let t = trainer(0.5, 0.0).unwrap();
    let (z, sources) = t.z_batch(5, 8).unwrap();
    let sources = sources.expect("z-mix 0.5 has corrupted z");
    assert_eq!(sources.dims(), &[4, 1, 28, 28]);
    assert_eq!(t.noise_count(8), 4);
    // the same z as noise_batch gives
    let nb = t.noise_batch(5, 8).unwrap().flatten_all().unwrap();
    let zv = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(nb.to_vec1::<f32>().unwrap(), zv);
    let sv = sources.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for k in 0..4 {
        let src = &sv[k * 784..(k + 1) * 784];
        let found = (0..t.train.len()).any(|i| t.train.image(i) == src);
        assert!(found, "target {k} is not a training image");
    }
    assert_ne!(
        &zv[4 * 784..],
        &sv[..],
        "the z are their sources uncorrupted"
    );
    assert!(trainer(0.0, 0.0)
        .unwrap()
        .z_batch(5, 8)
        .unwrap()
        .1
        .is_none());
}

#[test]
fn restoration_without_corrupted_z_is_refused() {
    let loss = LossConfig {
        lambda_restore: 20.0,
        ..LossConfig::default()
    };
    let err = trainer_with(0.0, 0.0, loss.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--z-mix"), "{err}");
    let bad = LossConfig {
        lambda_restore: -1.0,
        ..loss
    };
    let err = trainer_with(0.3, 0.0, bad).err().unwrap().to_string();
    assert!(err.contains("at least 0"), "{err}");
}

/// Other faces (`--z-fonts wide`, or here a folder of more faces) render z's printed digits
/// with the same draws: the noise and the corrupted digits stay as they were, the printed
/// digits change (and stay digits).
#[test]
fn other_faces_change_only_the_printed_digits() {
    // two of the four fixture faces against all four
    let few = tempfile::tempdir().unwrap();
    for face in ["Go-Mono.ttf", "Go-Regular.ttf"] {
        std::fs::copy(fixture_fonts().join(face), few.path().join(face)).unwrap();
    }
    let fonts = |dir: &Path| ZFonts::Dir(dir.to_path_buf());
    let base = trainer_fonts(0.25, 0.25, LossConfig::default(), fonts(few.path())).unwrap();
    let wide = trainer_fonts(0.25, 0.25, LossConfig::default(), fonts(&fixture_fonts())).unwrap();
    let pixels = |t: &Trainer, step| {
        let z = t.noise_batch(step, 16).unwrap();
        z.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let mut changed = 0;
    for step in 0..4 {
        let (b, w) = (pixels(&base, step), pixels(&wide, step));
        // 8 noise images and 4 corrupted digits first, 4 printed digits last
        assert_eq!(b[..12 * 784], w[..12 * 784], "step {step}");
        for i in 12..16 {
            let img = &w[i * 784..(i + 1) * 784];
            assert!(
                (0.5..0.97).contains(&background(img)),
                "step {step} image {i}"
            );
            changed += usize::from(img != &b[i * 784..(i + 1) * 784]);
        }
    }
    // a draw keeps its face only in the last quarter (Go-Regular in both): most change
    assert!(changed >= 8, "only {changed} of 16 printed digits changed");
}

/// A run's z must not depend on which faces happen to be there: a face that is missing or a
/// folder without faces is an error naming it, never fewer faces.
#[test]
fn printed_digits_without_their_faces_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    let fonts = ZFonts::Dir(empty.path().to_path_buf());
    let err = trainer_fonts(0.0, 0.25, LossConfig::default(), fonts.clone()).err();
    let err = format!("{:#}", err.expect("no faces"));
    assert!(
        err.contains("--z-fonts")
            && err.contains(&empty.path().display().to_string())
            && err.contains("no .ttf or .otf"),
        "{err}"
    );
    // without printed digits the faces are not needed
    assert!(trainer_fonts(0.25, 0.0, LossConfig::default(), fonts).is_ok());
}

/// `--restore-printed`: each printed digit of z gets, as its restoration target, a training
/// digit of its class nearest to it in L1 (after the corrupted images' sources).
#[test]
fn printed_digits_are_restored_to_their_nearest_handwritten_digit() {
    let loss = LossConfig {
        lambda_restore: 20.0,
        restore_printed: true,
        ..LossConfig::default()
    };
    let t = trainer_with(0.25, 0.25, loss).unwrap();
    let (z, targets) = t.z_batch(9, 8).unwrap();
    let targets = targets.expect("corrupted and printed digits have targets");
    assert_eq!(targets.dims(), &[4, 1, 28, 28]);
    let zv = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let tv = targets.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let labels = t.train.labels.as_ref().expect("the fixture has labels");
    let l1 = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum() };
    for k in 2..4 {
        let (printed, target) = (
            &zv[(4 + k) * 784..(5 + k) * 784],
            &tv[k * 784..(k + 1) * 784],
        );
        let i = (0..t.train.len())
            .find(|&i| t.train.image(i) == target)
            .expect("the target is a training image");
        let best = (0..t.train.len())
            .filter(|&j| labels[j] == labels[i])
            .map(|j| l1(t.train.image(j), printed))
            .fold(f32::INFINITY, f32::min);
        assert_eq!(
            l1(target, printed),
            best,
            "target {k} is not the nearest of its class"
        );
    }
    // the printed digits themselves are the ones noise_batch gives
    let nb = t.noise_batch(9, 8).unwrap().flatten_all().unwrap();
    assert_eq!(nb.to_vec1::<f32>().unwrap(), zv);
    // without labels it is refused
    let mut unlabelled = t.train.clone();
    unlabelled.labels = None;
    let cfg = t.config.clone();
    let err = Trainer::new(cfg, unlabelled, t.test.clone()).err().unwrap();
    assert!(format!("{err:#}").contains("no labels"), "{err:#}");
}

/// `--restore-match typical`: the printed digits' targets are the nearest training digits of
/// their class among those with the middle half of its ink, never the boldest or the faintest.
#[test]
fn typical_restoration_targets_have_their_class_s_middle_ink() {
    let with = |restore_match| {
        let loss = LossConfig {
            lambda_restore: 20.0,
            restore_printed: true,
            restore_match,
            ..LossConfig::default()
        };
        trainer_with(0.0, 0.5, loss).unwrap()
    };
    let (typical, nearest) = (with(RestoreMatch::Typical), with(RestoreMatch::Nearest));
    let train = &typical.train;
    let labels = train.labels.as_ref().expect("the fixture has labels");
    let ink = |i: usize| -> f32 { train.image(i).iter().sum() };
    // the middle half of each class, by ink
    let mut classes = vec![Vec::new(); 10];
    for (i, &l) in labels.iter().enumerate() {
        classes[l as usize].push(i);
    }
    let kept = ign_train::z::batch::typical_ink(train, classes.clone());
    for (all, mid) in classes.iter().zip(&kept) {
        assert_eq!(mid.len(), all.len() - 2 * (all.len() / 4));
        let (lo, hi) = mid.iter().fold((f32::INFINITY, f32::MIN), |(lo, hi), &i| {
            (lo.min(ink(i)), hi.max(ink(i)))
        });
        let outside = all.iter().filter(|&&i| ink(i) < lo || ink(i) > hi).count();
        assert_eq!(
            outside,
            2 * (all.len() / 4),
            "the dropped images are the extremes"
        );
    }
    let l1 = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum() };
    let mut differ = 0;
    for step in 0..6 {
        let (z, t) = typical.z_batch(step, 8).unwrap();
        let (_, tn) = nearest.z_batch(step, 8).unwrap();
        let zv = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let tv = t.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let tn = tn.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in 0..4 {
            let (printed, target) = (
                &zv[(4 + k) * 784..(5 + k) * 784],
                &tv[k * 784..(k + 1) * 784],
            );
            let i = (0..train.len())
                .find(|&i| train.image(i) == target)
                .expect("the target is a training image");
            let mid = &kept[labels[i] as usize];
            assert!(
                mid.contains(&i),
                "step {step} target {k} is not of typical ink"
            );
            let best = mid
                .iter()
                .map(|&j| l1(train.image(j), printed))
                .fold(f32::INFINITY, f32::min);
            assert_eq!(l1(target, printed), best, "step {step} target {k}");
            differ += usize::from(target != &tn[k * 784..(k + 1) * 784]);
        }
    }
    // the same printed digits, and on this fixture most of their targets change
    assert!(
        differ >= 6,
        "only {differ} of 24 targets differ from the nearest ones"
    );
    // without --restore-printed there is nothing for it to pick: refused, not ignored
    let loss = LossConfig {
        lambda_restore: 20.0,
        restore_match: RestoreMatch::Typical,
        ..LossConfig::default()
    };
    let err = trainer_with(0.25, 0.25, loss).err().expect("refused");
    assert!(format!("{err:#}").contains("--restore-printed"), "{err:#}");
}
