//! `ign-train` end to end through the binary: train, export, eval, and clean errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ign-train"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run ign-train")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn train_export_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = fixture("mnist-300-images-idx3-ubyte.gz");
    let data = data.to_str().unwrap();
    ok(&run(
        &[
            "train",
            "--data",
            data,
            "--width",
            "4",
            "--batch",
            "8",
            "--steps",
            "3",
            "--out",
            "run",
            "--sample-every",
            "3",
        ],
        d,
    ));
    for f in [
        "checkpoint.safetensors",
        "log.csv",
        "loss.png",
        "samples/latest.png",
        "samples/step-0000003.png",
    ] {
        assert!(d.join("run").join(f).exists(), "{f} missing");
    }
    let grid = image::open(d.join("run/samples/latest.png")).unwrap();
    // 5 rows (x, f(x), z, f(z), f(f(z))) and 8 columns of 112 px tiles + 2 px padding
    assert_eq!((grid.width(), grid.height()), (8 * 114 + 2, 5 * 114 + 2));
    // continuing needs --resume; with it, the run goes on from step 3
    let again = run(
        &[
            "train", "--data", data, "--width", "4", "--steps", "5", "--out", "run",
        ],
        d,
    );
    assert_eq!(again.status.code(), Some(2));
    ok(&run(
        &[
            "train",
            "--data",
            data,
            "--steps",
            "5",
            "--out",
            "run",
            "--resume",
            "--sample-every",
            "0",
        ],
        d,
    ));
    let log = std::fs::read_to_string(d.join("run/log.csv")).unwrap();
    assert_eq!(log.lines().last().unwrap().split(',').next().unwrap(), "5");

    ok(&run(
        &["export", "--checkpoint", "run", "--out", "m.onnx"],
        d,
    ));
    let m = ign_core::model::Model::load(&d.join("m.onnx")).unwrap();
    assert_eq!(m.info.metadata["ign.dataset"], "fixtures");
    assert_eq!(m.info.metadata["ign.weights"], "last");
    assert!(m.info.metadata["ign.trainer"].contains("steps=5"));

    // The fp16 copy serves as the reference model whose top-1 classes eval compares.
    let fp16 = ign_core::quantize::quantize(
        &d.join("m.onnx"),
        &ign_core::quantize::QuantizeOptions {
            precision: ign_core::model::Precision::Fp16,
            measure: false,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(d.join("m.fp16.onnx"), &fp16.bytes).unwrap();
    let out = run(
        &[
            "eval",
            "--reference",
            "m.fp16.onnx",
            "--model",
            "m.onnx",
            "--data",
            data,
            "--samples",
            "50",
            "--classifier-epochs",
            "15",
            "--classifier",
            "clf.safetensors",
            "--out-dir",
            "ev",
            "--json",
            "ev.json",
            "--ood",
            "30",
        ],
        d,
    );
    ok(&out);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("ev.json")).unwrap()).unwrap();
    let hist = v["class_histogram_fz"].as_array().unwrap();
    assert_eq!(hist.iter().map(|h| h.as_u64().unwrap()).sum::<u64>(), 50);
    assert!(v["rec_l1"].as_f64().unwrap() > 0.0);
    assert!(v["classifier_accuracy"].as_f64().unwrap() > 0.3);
    assert!(v["top1_agreement_fz"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(v["top1_agreement_fx"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(d.join("ev/samples.png").exists() && d.join("ev/projections.png").exists());
    // --ood: a row per kind made from the test images (printed digits need the held-out
    // faces), each on 30 images, and their pictures
    let rows = v["ood"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    let made: Vec<&str> = ign_train::z::corrupt::OOD_KINDS
        .into_iter()
        .filter(|k| *k != "printed")
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k != "printed")
            .copied()
            .collect::<Vec<_>>(),
        made
    );
    for r in rows {
        assert_eq!(r["images"], 30, "{r}");
        let acc = r["accuracy_input"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&acc) && r["fd_f"].as_f64().unwrap() >= 0.0,
            "{r}"
        );
    }
    let clean = &rows[0];
    assert!(clean["accuracy_input"].as_f64().unwrap() > 0.3, "{clean}");
    // clean test images are nearer the real ones than noisy ones
    let fd = |r: &serde_json::Value| r["fd_input"].as_f64().unwrap();
    assert!(fd(clean) < fd(&rows[1]), "{clean} {}", rows[1]);
    assert!(d.join("ev/ood.png").exists());
}

#[test]
fn bad_data_is_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["train", "--data", "missing-dir", "--out", "r"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("missing-dir") && err.contains("no such file"),
        "{err}"
    );
}

/// Ctrl-C (SIGINT) saves a checkpoint of the step reached and exits 130 with one line saying
/// how to continue; the library itself never exits the process.
#[test]
fn sigint_saves_the_checkpoint_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = fixture("mnist-300-images-idx3-ubyte.gz");
    let child = Command::new(env!("CARGO_BIN_EXE_ign-train"))
        .args([
            "train",
            "--data",
            data.to_str().unwrap(),
            "--width",
            "4",
            "--batch",
            "4",
        ])
        .args([
            "--steps",
            "1000000",
            "--sample-every",
            "0",
            "--checkpoint-every",
            "0",
        ])
        .arg("--out")
        .arg(&out)
        .args(["--threads", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait for a few logged steps (bounded), then interrupt
    let log = out.join("log.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 4
    {
        assert!(t0.elapsed().as_secs() < 60, "no training step within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let res = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(130), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("interrupted: checkpoint saved at step"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("--resume"), "{line}");
    // the checkpoint holds the step the log reached
    let ck = ign_train::train::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap().lines().count() as u64 - 1;
    assert_eq!(ck.step, logged);
    assert!(line.contains(&format!("step {}", ck.step)), "{line}");
}
