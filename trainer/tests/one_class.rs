//! `ign-train eval --one-class`: the class filter and the split, the report's shape, the
//! autoencoder as the same network without the IGN terms, a rerun that skips finished classes
//! (and scores again, without training, one that lacks a score kind),
//! and clear errors for a bad class list. Training is capped at a few steps per stage.

use ign_core::anomaly::ScoreKind;
use ign_train::data::{self, DataOptions};
use ign_train::eval::one_class::{self, class_dir, Method, OneClassConfig, RESULT_FILE};
use ign_train::train::checkpoint;
use ign_train::train::recipe::Recipe;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn mnist() -> PathBuf {
    fixture("mnist-300-images-idx3-ubyte.gz")
}

fn config(out: &Path, classes: &[u8]) -> OneClassConfig {
    OneClassConfig {
        data: mnist(),
        out: out.to_path_buf(),
        classes: Some(classes.to_vec()),
        minutes: 5.0,
        step_cap: Some(2),
        bn_passes: 2,
        quiet: true,
        ..Default::default()
    }
}

#[test]
fn the_class_filter_keeps_one_class_in_both_splits_of_the_recipes_split() {
    // the recipe holds out the last 20% of data without a split of its own
    let recipe = Recipe::load(one_class::RECIPE).unwrap();
    let (_, opts, _) = recipe
        .stage_cmd(0, &mnist(), Path::new("RUN"), &[])
        .unwrap()
        .settings()
        .unwrap();
    assert_eq!(opts.test_fraction, 0.2);
    let all = data::load(&mnist(), &opts).unwrap();
    assert_eq!((all.train.len(), all.test.len()), (240, 60));
    let three = data::load(
        &mnist(),
        &DataOptions {
            classes: Some(vec![3]),
            ..opts.clone()
        },
    )
    .unwrap();
    for (kept, whole) in [(&three.train, &all.train), (&three.test, &all.test)] {
        let labels = whole.labels.as_ref().unwrap();
        let idx: Vec<usize> = (0..whole.len()).filter(|&i| labels[i] == 3).collect();
        assert!(!idx.is_empty());
        assert_eq!(kept.len(), idx.len());
        assert!(kept.labels.as_ref().unwrap().iter().all(|&l| l == 3));
        // the same images, in order
        assert_eq!(kept.images, whole.gather(&idx));
    }
    assert!(
        three.description.contains("classes 3"),
        "{}",
        three.description
    );
}

#[test]
fn each_class_and_method_is_reported_and_a_rerun_skips_finished_classes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[0, 1]);
    let report = one_class::run(&cfg).unwrap();
    assert_eq!(report.results.len(), 4);
    assert_eq!(report.classes, vec![0, 1]);
    assert_eq!(
        (report.dataset.as_str(), report.target),
        ("MNIST", Some(0.95))
    );
    let anchors: Vec<&str> = report.anchors.iter().map(|a| a.method).collect();
    assert_eq!(anchors, ["Deep SVDD", "OCGAN"]);
    let labels = data::load(
        &mnist(),
        &DataOptions {
            test_fraction: 0.2,
            ..Default::default()
        },
    )
    .unwrap()
    .test
    .labels
    .unwrap();
    for r in &report.results {
        assert_eq!(r.normal + r.anomalous, 60, "the whole test split is scored");
        let normal = labels.iter().filter(|&&l| l == r.class).count();
        assert_eq!(r.normal, normal);
        assert_eq!(r.auroc.len(), ScoreKind::NAMES.len(), "{:?}", r.auroc);
        assert!(r.auroc.values().all(|a| (0.0..=1.0).contains(a)));
        assert_eq!((r.steps, r.warm_up_steps), (4, 2));
        assert!(class_dir(dir.path(), r.method, r.class)
            .join(RESULT_FILE)
            .exists());
    }
    for m in [Method::Ign, Method::Autoencoder] {
        let mean = report.mean(m).unwrap();
        let by_class: Vec<f64> = [0, 1]
            .iter()
            .map(|&c| report.result(m, c).unwrap().auroc["sum"])
            .collect();
        assert!((mean - (by_class[0] + by_class[1]) / 2.0).abs() < 1e-12);
    }
    let table = one_class::table(&report);
    for needle in ["ign", "autoencoder", "mean", "Deep SVDD 0.948", "target"] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["results"].as_array().unwrap().len(), 4);

    // the autoencoder is the same network on reconstruction alone
    let ign =
        checkpoint::load(&class_dir(dir.path(), Method::Ign, 0).join("ign/checkpoint.safetensors"))
            .unwrap();
    let ae = checkpoint::load(
        &class_dir(dir.path(), Method::Autoencoder, 0).join("ign/checkpoint.safetensors"),
    )
    .unwrap();
    assert_eq!(ign.config.model, ae.config.model);
    assert_eq!(
        (ign.config.loss.lambda_idem, ign.config.loss.lambda_tight),
        (20.0, 0.5)
    );
    assert_eq!(
        (ae.config.loss.lambda_idem, ae.config.loss.lambda_tight),
        (0.0, 0.0)
    );

    // a rerun takes finished classes from their result.json, without training
    let done = class_dir(dir.path(), Method::Ign, 1);
    let path = done.join(RESULT_FILE);
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    r["auroc"]["smooth-max"] = 0.125.into();
    std::fs::write(&path, r.to_string()).unwrap();
    // one class stopped before its score: scored from its checkpoints, not trained again
    let cut = class_dir(dir.path(), Method::Autoencoder, 1);
    let before = std::fs::read_to_string(cut.join(RESULT_FILE)).unwrap();
    std::fs::remove_file(cut.join(RESULT_FILE)).unwrap();
    // one written before the sum score existed: the kind it lacks is scored from its
    // checkpoint and added, the figures it has are kept, nothing is trained again
    let old = class_dir(dir.path(), Method::Ign, 0).join(RESULT_FILE);
    let first_ign: one_class::ClassResult =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    r["auroc"].as_object_mut().unwrap().remove("sum");
    r["auroc"]["smooth-max"] = 0.125.into();
    std::fs::write(&old, r.to_string()).unwrap();
    let again = one_class::run(&cfg).unwrap();
    let filled = again.result(Method::Ign, 0).unwrap();
    assert_eq!(filled.steps, first_ign.steps);
    assert_eq!(filled.auroc["sum"], first_ign.auroc["sum"]);
    assert_eq!(filled.auroc["smooth-max"], 0.125);
    assert_eq!(filled.auroc["mean"], first_ign.auroc["mean"]);
    let on_disk: one_class::ClassResult =
        serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    assert_eq!(&on_disk.auroc, &filled.auroc);
    assert_eq!(
        again.result(Method::Ign, 1).unwrap().auroc["smooth-max"],
        0.125
    );
    let rescored = again.result(Method::Autoencoder, 1).unwrap();
    let first: one_class::ClassResult = serde_json::from_str(&before).unwrap();
    assert_eq!(
        (rescored.steps, &rescored.auroc),
        (first.steps, &first.auroc)
    );
}

#[test]
fn a_bad_class_list_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (classes, needle) in [
        (&[12u8][..], "no image of class 12"),
        (&[1, 1][..], "class 1 is listed twice"),
        (&[][..], "at least one class"),
    ] {
        let e = format!(
            "{:#}",
            one_class::run(&config(dir.path(), classes)).unwrap_err()
        );
        assert!(e.contains(needle), "{classes:?}: {e}");
        assert!(e.contains("--classes"), "{e}");
    }
    // nothing was trained
    assert!(!dir.path().join("ign").exists());

    // through the binary: one line, exit 2
    let bin = env!("CARGO_BIN_EXE_ign-train");
    let data = mnist();
    for (classes, needle) in [
        ("3,x", "invalid value 'x'"),
        ("0,10", "no image of class 10"),
    ] {
        let out = Command::new(bin)
            .args(["eval", "--one-class", "--data"])
            .arg(&data)
            .args(["--classes", classes, "--out-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{classes}: {err}");
    }
    // unlabelled data: a copy of the images without their labels file
    let bare = dir.path().join("bare-images-idx3-ubyte.gz");
    std::fs::copy(&data, &bare).unwrap();
    let mut cfg = config(dir.path(), &[0]);
    cfg.data = bare;
    let e = format!("{:#}", one_class::run(&cfg).unwrap_err());
    assert!(e.contains("labelled data"), "{e}");
}
