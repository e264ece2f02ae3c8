//! Training a scene: camera augmentation of the real images, the time budget (plain runs and
//! recipe shares), the built-in scene recipe, and the anomaly threshold export calibrates on
//! the held-out frames.

mod common;

use ign_core::anomaly::{self, ScoreKind};
use ign_core::backend::{cpu::CpuBackend, Backend};
use ign_core::tensor::ImageBatch;
use ign_train::calibrate::CalibrationOptions;
use ign_train::data::augment::Augment;
use ign_train::data::DataOptions;
use ign_train::export::{export_with, Calibrate, ExportOptions};
use ign_train::model::{ModelConfig, Norm};
use ign_train::train::checkpoint;
use ign_train::train::loss::LossConfig;
use ign_train::train::optim::AdamConfig;
use ign_train::train::recipe::{self, Recipe, RecipeOptions};
use ign_train::train::{run, RunOptions, TrainConfig};
use ign_train::z::noise::NoiseKind;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `n` frames of one synthetic 64x64 view (gradients, a window, a post) as a fixed camera
/// would take them: a little exposure drift, noise and a pixel of jitter.
fn scene_folder(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for i in 0..n {
        let gain = rng.random_range(0.95f32..1.05);
        let (dx, dy) = (rng.random_range(-1i32..=1), rng.random_range(-1i32..=1));
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            let (x, y) = (x as i32 + dx, y as i32 + dy);
            let mut p = [60.0 + 2.0 * y as f32, 90.0 + x as f32, 140.0 - y as f32];
            if (10..30).contains(&x) && (8..24).contains(&y) {
                p = [200.0, 210.0, 190.0]; // a window
            }
            if (44..50).contains(&x) && y > 20 {
                p = [70.0, 50.0, 30.0]; // a post
            }
            image::Rgb(
                p.map(|v| (v * gain + rng.random_range(-3.0f32..3.0)).clamp(0.0, 255.0) as u8),
            )
        });
        img.save(dir.join(format!("frame-{i:06}.png"))).unwrap();
    }
    dir.to_path_buf()
}

fn config(augment: Augment) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            channels: 3,
            image_size: 64,
            width: 4,
            norm: Norm::Batch,
        },
        loss: LossConfig::default(),
        adam: AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
        noise: NoiseKind::Gaussian,
        z_mix: 0.0,
        z_printed: 0.0,
        z_tight: Default::default(),
        z_fonts: Default::default(),
        z_bn: Default::default(),
        augment,
        ema: 0.0,
        batch: 4,
        seed: 2,
        test_fraction: 0.2,
        data: "scene".into(),
        dataset_name: "scene".into(),
        recipe: None,
    }
}

fn opts(out: &Path, steps: u64, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        steps,
        minutes: None,
        resume,
        from: None,
        from_batch: None,
        from_weights: Default::default(),
        sample_every: 0,
        checkpoint_every: 0,
        quiet: true,
    }
}

fn data_opts() -> DataOptions {
    DataOptions {
        test_fraction: 0.2,
        ..Default::default()
    }
}

/// The model weights of the run in `out`.
fn weights(out: &Path) -> Vec<(String, Vec<f32>)> {
    common::weights(&checkpoint::load(&out.join("checkpoint.safetensors")).unwrap())
}

/// The augmented images are what reconstruction trains on (the weights move otherwise than
/// without), and a resumed augmented run is the uninterrupted one.
#[test]
fn camera_augmentation_reaches_training_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 20);
    let d = data_opts();
    let straight = dir.path().join("straight");
    run(
        config(Augment::Camera),
        &data,
        &d,
        &opts(&straight, 4, false),
    )
    .unwrap();
    let parts = dir.path().join("parts");
    run(config(Augment::Camera), &data, &d, &opts(&parts, 2, false)).unwrap();
    run(config(Augment::Camera), &data, &d, &opts(&parts, 4, true)).unwrap();
    assert_eq!(weights(&parts), weights(&straight));
    let plain = dir.path().join("plain");
    run(config(Augment::None), &data, &d, &opts(&plain, 4, false)).unwrap();
    assert_ne!(weights(&plain), weights(&straight));
    let ck = checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.config.augment, Augment::Camera);
}

/// A reconstruction warm-up (both IGN weights 0) trains f on the real images alone, and a run
/// started from it with the IGN weights given takes them.
#[test]
fn a_warm_up_hands_over_to_the_ign_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 20);
    let mut warm = config(Augment::None);
    (warm.loss.lambda_idem, warm.loss.lambda_tight) = (0.0, 0.0);
    let out = dir.path().join("warm");
    run(warm.clone(), &data, &data_opts(), &opts(&out, 2, false)).unwrap();
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let header: Vec<&str> = log.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in log.lines().skip(1) {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!((v[col("idem")], v[col("tight")]), (0.0, 0.0), "{line}");
        assert!(v[col("rec")] > 0.0, "{line}");
    }
    let ign = dir.path().join("ign");
    let mut o = opts(&ign, 4, false);
    o.from = Some(out.clone());
    o.from_weights.lambda_idem = Some(20.0);
    o.from_weights.lambda_tight = Some(2.5);
    // the held-out split stays the source's (every 5th of 20), whatever this invocation says
    let t = run(warm.clone(), &data, &DataOptions::default(), &o).unwrap();
    assert_eq!((t.train.len(), t.test.len()), (16, 4));
    let ck = checkpoint::load(&ign.join("checkpoint.safetensors")).unwrap();
    assert_eq!((ck.step, ck.config.loss.lambda_idem), (4, 20.0));
    assert_eq!(ck.config.loss.lambda_tight, 2.5);
    let log = std::fs::read_to_string(ign.join("log.csv")).unwrap();
    let idem: f64 = log
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(col("idem"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(idem > 0.0, "{log}");
    // not given, the source's weights stay
    let kept = dir.path().join("kept");
    let mut o = opts(&kept, 3, false);
    o.from = Some(out);
    run(config(Augment::None), &data, &data_opts(), &o).unwrap();
    let ck = checkpoint::load(&kept.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.config.loss.lambda_idem, 0.0);
}

fn ign_train(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ign-train"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--minutes`: training stops at the budget with its checkpoint saved and exit 0; the same
/// budget again has nothing to do, a larger one with --resume trains on.
#[test]
fn a_time_budget_stops_training_and_a_larger_one_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 12);
    let data = data.to_str().unwrap();
    let train = |minutes: &str, resume: bool| {
        let mut args = vec!["train", "--data", data, "--width", "4", "--batch", "4"];
        args.extend(["--out", "run", "--threads", "1", "--sample-every", "0"]);
        args.extend(["--minutes", minutes]);
        if resume {
            args.push("--resume");
        }
        ign_train(&args, dir.path())
    };
    let ck = || checkpoint::load(&dir.path().join("run/checkpoint.safetensors")).unwrap();
    let first = train("0.02", false);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("time budget of 0.02 minutes reached"),
        "{}",
        stderr(&first)
    );
    let (step, secs) = (ck().step, ck().seconds);
    assert!(step >= 1 && (1.2..10.0).contains(&secs), "{step} {secs}");
    let log = std::fs::read_to_string(dir.path().join("run/log.csv")).unwrap();
    assert_eq!(log.lines().count() as u64, 1 + step);
    let same = train("0.02", true);
    assert!(same.status.success() && stderr(&same).contains("nothing to do"));
    assert_eq!(ck().step, step);
    let more = train("0.05", true);
    assert!(more.status.success(), "{}", stderr(&more));
    assert!(ck().step > step && ck().seconds >= 3.0, "{}", ck().seconds);
    let bad = train("0", true);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--minutes 0: give a budget above 0"));
}

const SHARED: &str = r#"name = "shared"
description = "A reconstruction warm-up, then the IGN terms."
minutes = 0.04

[[stage]]
name = "warm"
share = 0.5
[stage.flags]
width = 4
batch = 4
test-fraction = 0.2
augment = "camera"
lambda-idem = 0.0
lambda-tight = 0.0

[[stage]]
name = "ign"
from = "warm"
share = 0.5
[stage.flags]
augment = "camera"
lambda-idem = 20.0
lambda-tight = 2.5
"#;

/// A recipe's stages with shares split its budget; a rerun with a larger budget leaves the
/// stage that handed over and trains the last one on.
#[test]
fn recipe_shares_split_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 12);
    let r = Recipe::parse(SHARED, "shared.toml").unwrap();
    assert_eq!(r.budget(None).unwrap(), Some(0.04));
    let out = dir.path().join("run");
    let options = |minutes: Option<f64>| RecipeOptions {
        data: data.clone(),
        out: out.clone(),
        minutes,
        quiet: true,
        ..Default::default()
    };
    recipe::run(&r, &options(None)).unwrap();
    let ck = |s: &str| checkpoint::load(&out.join(s).join("checkpoint.safetensors")).unwrap();
    let (warm, ign) = (ck("warm"), ck("ign"));
    assert_eq!(warm.config.loss.lambda_idem, 0.0);
    assert_eq!(ign.config.loss.lambda_idem, 20.0);
    assert_eq!(ign.config.augment, Augment::Camera);
    for c in [&warm, &ign] {
        assert!((1.2..10.0).contains(&c.seconds), "{}", c.seconds);
    }
    assert!(ign.step > warm.step);
    recipe::run(&r, &options(Some(0.08))).unwrap();
    assert_eq!(ck("warm").step, warm.step, "the warm-up handed over");
    assert!(ck("ign").step > ign.step && ck("ign").seconds >= 2.4);
    // a budget needs shares, shares need a budget and fit in it
    let steps_only = Recipe::load("ign-mnist").unwrap();
    let err = steps_only.budget(Some(5.0)).unwrap_err().to_string();
    assert!(
        err.contains("no stage of built-in ign-mnist has a `share`"),
        "{err}"
    );
    let unbudgeted = Recipe::parse(&SHARED.replace("minutes = 0.04\n", ""), "x.toml").unwrap();
    let err = unbudgeted.budget(None).unwrap_err().to_string();
    assert!(
        err.contains("x.toml") && err.contains("give --minutes"),
        "{err}"
    );
    for (text, want) in [
        (
            SHARED.replace(
                "share = 0.5\n[stage.flags]\naug",
                "share = 0.7\n[stage.flags]\naug",
            ),
            "add up to 1.2",
        ),
        (
            SHARED.replace("share = 0.5\n[stage.flags]\nwidth", "[stage.flags]\nwidth"),
            "give steps = N",
        ),
        (
            SHARED.replace("minutes = 0.04", "minutes = -1"),
            "minutes = -1",
        ),
        (format!("{SHARED}minutes = 3\n"), "not a stage's flag"),
    ] {
        let err = format!("{:#}", Recipe::parse(&text, "bad.toml").unwrap_err());
        assert!(
            err.starts_with("bad.toml: ") && err.contains(want),
            "{want:?}: {err}"
        );
    }
}

/// The built-in scene recipe: 64x64 RGB with camera augmentation, a warm-up of reconstruction
/// before the IGN terms, a default budget of 15 minutes; its stages run on a few frames.
#[test]
fn the_scene_recipe_runs_its_stages_on_a_budget() {
    let r = Recipe::load("scene").unwrap();
    assert_eq!(r.budget(None).unwrap(), Some(15.0));
    assert_eq!(r.budget(Some(4.0)).unwrap(), Some(4.0));
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 12);
    let out = dir.path().join("run");
    let opts = RecipeOptions {
        data,
        out: out.clone(),
        minutes: Some(0.001),
        quiet: true,
        ..Default::default()
    };
    recipe::run(&r, &opts).unwrap();
    let cks: Vec<_> = r
        .stages
        .iter()
        .map(|s| checkpoint::load(&out.join(&s.name).join("checkpoint.safetensors")).unwrap())
        .collect();
    let (first, last) = (&cks[0], &cks[cks.len() - 1]);
    let m = &first.config.model;
    assert_eq!((m.channels, m.image_size), (3, 64));
    assert_eq!(first.config.augment, Augment::Camera);
    assert_eq!(
        (
            first.config.loss.lambda_idem,
            first.config.loss.lambda_tight
        ),
        (0.0, 0.0)
    );
    assert!(last.config.loss.lambda_idem > 0.0 && last.config.loss.lambda_tight > 0.0);
    assert_eq!(last.config.augment, Augment::Camera);
    assert_eq!(
        last.config.test_fraction, 0.5,
        "half of the frames for calibration: 99 held out promise 1% (the conformal rank)"
    );
    assert!(last.step > first.step);
}

/// Export calibrates the threshold on the run's held-out frames, as the runtime scores them:
/// on that split it gives at most the stated false-alarm rate, and the model's metadata
/// carries it; `--threshold` overrides it; a run on IDX digits gets none unless asked.
#[test]
fn export_calibrates_the_threshold_on_the_held_out_frames() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 60);
    let out = dir.path().join("run");
    let mut c = config(Augment::Camera);
    c.data = data.display().to_string();
    run(c, &data, &data_opts(), &opts(&out, 3, false)).unwrap();
    let model = dir.path().join("scene.onnx");
    let rate = 0.2;
    let export = |threshold: Option<f32>, calibrate: Calibrate| {
        let opts = ExportOptions {
            calibrate,
            calibration: CalibrationOptions {
                false_alarm_rate: rate,
                threshold,
                score: ScoreKind::SmoothMax,
            },
            ..Default::default()
        };
        export_with(&out, &model, &opts).unwrap()
    };
    let exported = export(None, Calibrate::Auto);
    let cal = exported.calibration.unwrap();
    assert_eq!(cal.frames, 12, "every 5th of 60 frames is held out");
    assert!(cal.observed_rate <= rate, "{cal:?}");
    // the conformal rank: the 2nd largest of 12 for 20% (⌊0.2 · 13⌋), 2 in 13 on new frames
    assert_eq!(cal.expected_rate, 2.0 / 13.0, "{cal:?}");
    let m = ign_core::model::Model::load(&model).unwrap();
    let meta = &m.info.metadata;
    let t: f32 = meta["ign.anomaly.threshold"].parse().unwrap();
    assert_eq!(t, cal.threshold);
    assert_eq!(meta["ign.anomaly.score"], "smooth-max");
    assert_eq!(meta["ign.anomaly.false_alarm_rate"], "0.2");
    assert!(
        !ign_core::model::Model::load(&dir.path().join("scene.noise.onnx"))
            .unwrap()
            .info
            .metadata
            .contains_key("ign.anomaly.threshold")
    );
    // the held-out frames, scored by the runtime's backend and scores: at most the rate above
    let split = ign_train::data::load(&data, &data_opts()).unwrap();
    let test = &split.test;
    let mut cpu = CpuBackend::new(&m, None).unwrap();
    let x = ImageBatch::new(test.images.clone(), [test.len(), 3, 64, 64]).unwrap();
    let fx = cpu.run(&x).unwrap();
    let scores: Vec<f32> = (0..x.len())
        .map(|i| {
            let s = anomaly::score(
                ScoreKind::SmoothMax,
                x.image(i),
                fx.image(i),
                None,
                (3, 64, 64),
            );
            s.unwrap().score
        })
        .collect();
    let above = scores.iter().filter(|&&s| s > t).count();
    assert!(
        above as f64 / scores.len() as f64 <= rate,
        "{above} of {}",
        scores.len()
    );
    assert_eq!(
        above, 1,
        "20% of 12 frames: the 2nd largest, one lies above, {scores:?} against {t}"
    );
    // a given threshold is written as given, with the rate it gives
    let given = export(Some(1e-6), Calibrate::Auto).calibration.unwrap();
    assert_eq!((given.threshold, given.observed_rate), (1e-6, 1.0));
    let meta = ign_core::model::Model::load(&model).unwrap().info.metadata;
    assert_eq!(meta["ign.anomaly.threshold"], "0.000001");
    assert_eq!(meta["ign.anomaly.false_alarm_rate"], "1");
    assert!(export(None, Calibrate::Never).calibration.is_none());
    let meta = ign_core::model::Model::load(&model).unwrap().info.metadata;
    assert!(!meta.contains_key("ign.anomaly.threshold"));
}

/// Through the binary: the threshold, the rate it gives and the frame count are printed, with
/// a warning when too few frames are held out to promise the rate; a run on IDX digits gets no threshold by default.
#[test]
fn the_export_command_reports_the_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 20);
    let d = dir.path();
    let train = ign_train(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--width",
            "4",
            "--batch",
            "4",
            "--steps",
            "2",
            "--out",
            "run",
            "--augment",
            "camera",
            "--sample-every",
            "0",
        ],
        d,
    );
    assert!(train.status.success(), "{}", stderr(&train));
    let out = ign_train(
        &[
            "export",
            "--checkpoint",
            "run",
            "--out",
            "m.onnx",
            "--false-alarm-rate",
            "0.05",
        ],
        d,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for want in [
        "anomaly threshold ",
        "on the smooth-max score (calibrated for a false-alarm rate of 5%)",
        "of the 2 held-out normal frames lie above it",
        ", 33.33% of new normal frames expected",
        "warning: 2 held-out frames can promise a false-alarm rate of 33.33% at best (1 in 3), not 5%: hold out at least 19",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let bad = ign_train(
        &[
            "export",
            "--checkpoint",
            "run",
            "--out",
            "m2.onnx",
            "--false-alarm-rate",
            "1.5",
        ],
        d,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--false-alarm-rate 1.5 must be at least 0 and below 1"));
    let mnist =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-300-images-idx3-ubyte.gz");
    let digits = ign_train(
        &[
            "train",
            "--data",
            mnist.to_str().unwrap(),
            "--width",
            "4",
            "--batch",
            "8",
            "--steps",
            "1",
            "--out",
            "digits",
            "--sample-every",
            "0",
            "--norm",
            "layer",
        ],
        d,
    );
    assert!(digits.status.success(), "{}", stderr(&digits));
    let out = ign_train(&["export", "--checkpoint", "digits", "--out", "d.onnx"], d);
    assert!(out.status.success() && !stderr(&out).contains("anomaly threshold"));
    let meta = ign_core::model::Model::load(&d.join("d.onnx"))
        .unwrap()
        .info
        .metadata;
    assert!(!meta.contains_key("ign.anomaly.threshold"));
}

/// The held-out frames are measured whenever samples are written: `heldout.csv` has a row per
/// sampling step, over the run's own held-out split, beside the training batches' distance.
#[test]
fn training_watches_the_held_out_frames() {
    let dir = tempfile::tempdir().unwrap();
    let data = scene_folder(&dir.path().join("frames"), 20);
    let out = dir.path().join("run");
    let o = RunOptions {
        sample_every: 2,
        ..opts(&out, 4, false)
    };
    run(config(Augment::None), &data, &data_opts(), &o).unwrap();
    let csv = std::fs::read_to_string(out.join("heldout.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        csv.lines().next(),
        Some("step,heldout_rec,train_rec,images")
    );
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), [2.0, 4.0]);
    for r in &rows {
        // 20 frames, every 5th held out
        assert_eq!(r[3], 4.0);
        assert!(r[1].is_finite() && r[1] > 0.0 && r[2] > 0.0, "{r:?}");
    }
}
