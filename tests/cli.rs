//! The `ign-edge` binary end to end: outputs, and one clear line with exit code 2 for each
//! kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ign(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run ign-edge")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Assert a failure with exit code 2, one line on stderr, mentioning every `needles`.
fn assert_clean_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

#[test]
fn info_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = ign(&["info", s(&fixture("tiny28.onnx"))], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("input.1 [N, 1, 28, 28]"), "{text}");
    assert!(text.contains("ign.dataset = fixture"), "{text}");
    let out = ign(
        &["info", s(&fixture("tiny64rgb.onnx")), "--json"],
        dir.path(),
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["channels"], 3);
    assert_eq!(v["fixed_batch"], 1);
    assert_eq!(v["precision"], "fp32");
    assert!(v["flops"].as_u64().unwrap() > 0);
}

#[test]
fn project_npy_matches_onnxruntime_and_png_grid_has_one_column_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    let m = s(&fixture("tiny28.onnx")).to_string();
    let x = s(&fixture("x28.npy")).to_string();
    let out = ign(
        &["project", "--model", &m, "--steps", "2", &x, "--out", s(&y)],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = ign_edge::model::Model::load(&fixture("tiny28.onnx")).unwrap();
    let got = ign_edge::inputs::read_npy(&y, &model.info).unwrap();
    let want = ign_edge::inputs::read_npy(&fixture("y28_k2.npy"), &model.info).unwrap();
    assert!(got.max_abs_diff(&want) < 1e-4);

    let png = dir.path().join("grid.png");
    let out = ign(
        &[
            "project",
            "-m",
            &m,
            "-k",
            "3",
            "noise:2:5",
            &x,
            "--out",
            s(&png),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&png).unwrap();
    // 4 rows (2 noise + 2 from the npy), 4 columns (input, f, f², f³); tiles 28*4 px + 2 px pad
    assert_eq!((img.width(), img.height()), (4 * 114 + 2, 4 * 114 + 2));
}

#[test]
fn demo_needs_no_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = ign(&["demo"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("[4/4] wrote ign-demo.png"), "{err}");
    let img = image::open(dir.path().join("ign-demo.png")).unwrap();
    assert!(img.width() > 100 && img.height() > 100);
}

#[test]
fn bad_models_give_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("nope.onnx");
    assert_clean_error(
        &ign(&["info", s(&missing)], d),
        &["nope.onnx", "no such model file"],
    );

    let text = d.join("text.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    assert_clean_error(
        &ign(&["info", s(&text)], d),
        &["text.onnx", "not an ONNX model"],
    );

    let bytes = std::fs::read(fixture("tiny28.onnx")).unwrap();
    let trunc = d.join("truncated.onnx");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &ign(&["info", s(&trunc)], d),
        &["truncated.onnx", "truncated"],
    );

    let cases = [
        ("two_inputs.onnx", "2 inputs"),
        ("shape_mismatch.onnx", "same shape"),
        (
            "unsupported_op.onnx",
            "unsupported operator IgnTotallyUnknownOp",
        ),
        ("four_channels.onnx", "4 channels"),
    ];
    for (f, msg) in cases {
        let out = ign(
            &["project", "-m", s(&fixture(f)), "noise:1", "--out", "o.png"],
            d,
        );
        assert_clean_error(&out, &[f, msg]);
        assert!(!d.join("o.png").exists());
    }
}

#[test]
fn bad_inputs_give_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = s(&fixture("tiny28.onnx")).to_string();
    let junk = d.join("junk.png");
    std::fs::write(&junk, b"\x89PNG but not really").unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (s(&junk).into(), vec!["junk.png", "not a readable PNG/JPEG"]),
        (
            s(&fixture("bad_dtype.npy")).into(),
            vec!["bad_dtype.npy", "float32"],
        ),
        (
            s(&fixture("bad_shape.npy")).into(),
            vec!["bad_shape.npy", "[1, 1, 27, 27]"],
        ),
        ("missing.png".into(), vec!["missing.png", "no such file"]),
        ("noise:abc".into(), vec!["noise:abc"]),
    ];
    for (input, needles) in cases {
        let out = ign(&["project", "-m", &m, &input, "--out", "o.png"], d);
        assert_clean_error(&out, &needles);
    }
    let out = ign(&["project", "-m", &m, "noise:1", "--out", "o.txt"], d);
    assert_clean_error(&out, &["o.txt", ".png"]);
}

#[test]
fn bench_writes_json_csv_and_flags_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = s(&fixture("tiny28.onnx")).to_string();
    let args = [
        "bench",
        "-m",
        &m,
        "--threads",
        "1",
        "--steps",
        "1",
        "--steps",
        "2",
        "--iterations",
        "20",
        "--no-peak",
        "--json",
        "b.json",
        "--csv",
        "b.csv",
        "--plot",
        "b.png",
        "--profile",
    ];
    let out = ign(&args, d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tiny28.onnx") && text.contains("p50 us"),
        "{text}"
    );
    assert!(text.contains("profile of tiny28.onnx"), "{text}");
    assert!(text.contains("GFLOP/s"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("b.json")).unwrap()).unwrap();
    // the profile's operations add up to the model's (its FLOPs per application, once at
    // --steps 1): the work of every multiply-add is placed on an operator
    let profile = v["results"][0]["profile"].as_array().unwrap();
    let ops: f64 = profile.iter().filter_map(|o| o["flops"].as_f64()).sum();
    let info = ign(&["info", &m, "--json"], d);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let model_flops = info["flops"].as_f64().unwrap();
    assert!(
        (ops / model_flops - 1.0).abs() < 0.05,
        "profile {ops} FLOP against the model's {model_flops}: {profile:?}"
    );
    // and node by node: every node once, slowest first, adding up to the operators' times
    let nodes = v["results"][0]["profile_nodes"].as_array().unwrap();
    let us = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap();
    assert!(nodes.windows(2).all(|w| us(&w[0], "us") >= us(&w[1], "us")));
    let by_node: f64 = nodes.iter().map(|n| us(n, "us")).sum();
    let by_op: f64 = profile.iter().map(|o| us(o, "total_us")).sum();
    assert!(
        (by_node - by_op).abs() < 1e-6 * by_op.max(1.0),
        "{by_node} {by_op}"
    );
    assert!(text.contains("slowest nodes"), "{text}");
    assert_eq!(v["schema"], 1);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["steps"], 2);
    assert_eq!(results[0]["latency"]["n"], 20);
    assert!(results[0]["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    assert_eq!(
        std::fs::read_to_string(d.join("b.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    assert!(image::open(d.join("b.png")).is_ok());

    // a baseline 1000x faster than reality is a regression: exit non-zero, say which
    let mut fast = v.clone();
    for r in fast["results"].as_array_mut().unwrap() {
        let p = r["latency"]["p50_us"].as_f64().unwrap();
        r["latency"]["p50_us"] = serde_json::json!(p / 1000.0);
    }
    std::fs::write(d.join("fast.json"), fast.to_string()).unwrap();
    let out = ign(
        &[
            "bench",
            "-m",
            &m,
            "--threads",
            "1",
            "--iterations",
            "20",
            "--no-peak",
            "--baseline",
            "fast.json",
        ],
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("regression: tiny28.onnx fp32 threads=1"),
        "{err}"
    );
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("slower than fast.json"),
        "{err}"
    );
    // and against itself with a generous tolerance it passes
    let out = ign(
        &[
            "bench",
            "-m",
            &m,
            "--threads",
            "1",
            "--iterations",
            "20",
            "--no-peak",
            "--baseline",
            "b.json",
            "--tolerance",
            "100",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn quantize_writes_the_variant_that_project_then_picks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("tiny28.onnx"), d.join("m.onnx")).unwrap();
    let out = ign(
        &[
            "quantize",
            "-m",
            "m.onnx",
            "--precision",
            "int8",
            "--calib",
            "noise:32",
            "--report",
            "r.json",
            "--latency-runs",
            "25",
        ],
        d,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("PSNR f") && text.contains("m.int8.onnx"),
        "{text}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(r["precision"], "int8");
    assert!(r["noise"]["psnr_f_db"].as_f64().unwrap() > 20.0, "{r}");
    // project --precision int8 uses m.int8.onnx (no "quantizing now" notice)
    let out = ign(
        &[
            "project",
            "-m",
            "m.onnx",
            "--precision",
            "int8",
            "noise:2",
            "--out",
            "p.png",
        ],
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("quantizing") && err.contains("cpu-int8"),
        "{err}"
    );
    // bad input: an int8 file cannot be quantized again, nor overwrite its source
    let out = ign(&["quantize", "-m", "m.int8.onnx", "--precision", "fp16"], d);
    assert_clean_error(&out, &["m.int8.onnx", "fp32"]);
    let out = ign(
        &[
            "quantize",
            "-m",
            "m.onnx",
            "--precision",
            "fp16",
            "--out",
            "m.onnx",
        ],
        d,
    );
    assert_clean_error(&out, &["m.onnx", "overwrite"]);
}

#[test]
fn bench_pipeline_suite_runs_the_live_loop_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = s(&fixture("tiny28.onnx")).to_string();
    let out = ign(
        &[
            "bench",
            "--pipeline",
            "-m",
            &m,
            "--threads",
            "1",
            "--frames",
            "30",
            "--cores",
            "all",
            "--json",
            "p.json",
        ],
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("pinned to cores"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("e2e p50") && text.contains("tiny28.onnx"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("p.json")).unwrap()).unwrap();
    let p = &v["pipeline"][0]["summary"];
    let shown = p["frames"].as_u64().unwrap();
    assert!(shown > 0 && shown <= 30, "{p}");
    assert!(p["inference_ms"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["e2e"]["p50_us"].as_f64().unwrap() > 0.0, "{p}");
    // the null sink is not composed for; the model-only figure of the same run sets the cost
    assert_eq!(p["compose_ms"].as_f64(), Some(0.0), "{p}");
    let r = &v["pipeline"][0];
    let (model_fps, cost) = (
        r["model_fps"].as_f64().unwrap(),
        r["cost"].as_f64().unwrap(),
    );
    let fps = p["fps"].as_f64().unwrap();
    assert!(
        model_fps > 0.0 && (cost - (1.0 - fps / model_fps)).abs() < 1e-9,
        "{r}"
    );
    assert!(text.contains("model fps") && text.contains('%'), "{text}");
    // a core list that does not parse is one clear line
    let out = ign(&["bench", "-m", &m, "--cores", "4-x"], d);
    assert_clean_error(&out, &["4-x", "--cores"]);
}

#[test]
fn latent_and_refine_commands_write_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ign(
        &[
            "latent",
            "interpolate",
            "noise:1:1",
            "noise:1:2",
            "--frames",
            "4",
            "--out",
            "m.gif",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(d.join("m.gif")).is_ok());
    let out = ign(
        &[
            "latent",
            "arith",
            "noise:1:1",
            "noise:1:2",
            "noise:1:3",
            "--out",
            "a.png",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ign(
        &[
            "refine", "noise:2", "--steps", "3", "--out", "s.png", "--plot", "p.png", "--csv",
            "d.csv",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(d.join("d.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(image::open(d.join("p.png")).is_ok() && image::open(d.join("s.png")).is_ok());
    let out = ign(
        &[
            "latent",
            "arith",
            "-m",
            s(&fixture("tiny28.onnx")),
            "noise:1",
            "noise:1",
            "noise:1",
            "--out",
            "a.png",
        ],
        d,
    );
    assert_clean_error(&out, &["tiny28.onnx", "ign.latent"]);
}

#[test]
fn service_config_runs_the_loop_and_boards_apply_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ign-mnist.onnx");
    std::fs::write(
        d.join("c.toml"),
        format!(
            "board = \"rk3588\"\nmodel = \"{}\"\nsource = \"test\"\nsinks = [\"null\"]\nsteps = 2\nframes = 4\n",
            model.display()
        ),
    )
    .unwrap();
    let out = ign(&["service", "--config", "c.toml", "--print"], d);
    let cmd = String::from_utf8_lossy(&out.stdout);
    assert!(
        cmd.contains("run --board rk3588") && cmd.contains("--frames 4"),
        "{cmd}"
    );
    let out = ign(&["service", "--config", "c.toml"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // the board's precision (fp16) and core choice were applied
    assert!(
        err.contains("ign-mnist.fp16") && err.contains("pinned to cores"),
        "{err}"
    );
    assert!(err.contains("4 frames"), "{err}");
    std::fs::write(d.join("bad.toml"), "bord = \"x\"\n").unwrap();
    assert_clean_error(
        &ign(&["service", "--config", "bad.toml"], d),
        &["bad.toml", "bord"],
    );
    assert_clean_error(
        &ign(&["run", "--board", "toaster"], d),
        &["toaster", "rpi5"],
    );
}

#[test]
fn rknn_prep_writes_the_calibration_set_and_the_toolkit_script() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rk");
    let calib = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("trainer/tests/fixtures/mnist-300-images-idx3-ubyte.gz");
    let o = ign(
        &[
            "rknn-prep",
            "--model",
            s(&fixture("tiny28.onnx")),
            "--calib",
            s(&calib),
            "--count",
            "20",
            "--out",
            s(&out),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = std::fs::read_to_string(out.join("dataset.txt")).unwrap();
    assert_eq!(list.lines().count(), 20);
    // each entry: a uint8 NCHW array (rknn-toolkit2 2.x wants NCHW .npy) of one 28x28 gray image, a real digit (ink and paper)
    let first = out.join(list.lines().next().unwrap());
    let bytes = std::fs::read(&first).unwrap();
    let header = String::from_utf8_lossy(&bytes[..128]);
    assert!(
        header.contains("'descr': '|u1'") && header.contains("(1, 1, 28, 28)"),
        "{header}"
    );
    let pixels = &bytes[bytes.len() - 784..];
    assert!(pixels.contains(&0) && pixels.iter().any(|&p| p > 200));
    let script = std::fs::read_to_string(out.join("convert_rknn.py")).unwrap();
    for needle in [
        "target_platform=\"rk3588\"",
        "mean_values=[[127.5]], std_values=[[127.5]]",
        "input_size_list=[[1, 1, 28, 28]]",
        "do_quantization=True, dataset=\"dataset.txt\"",
        "export_rknn(\"tiny28.rknn\")",
    ] {
        assert!(script.contains(needle), "{needle} in {script}");
    }
    assert!(out.join("tiny28.onnx").exists());
    // int8 without calibration data: a clear error
    let o = ign(
        &[
            "rknn-prep",
            "--model",
            s(&fixture("tiny28.onnx")),
            "--out",
            s(&out),
        ],
        dir.path(),
    );
    assert_clean_error(&o, &["--calib", "--precision fp16"]);
}

#[test]
fn rknn_backend_errors_name_the_model_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // an ONNX model on the NPU backend
    let o = ign(
        &[
            "project",
            "--backend",
            "rknn",
            "-m",
            s(&fixture("tiny28.onnx")),
            "noise:1",
            "-o",
            "x.png",
        ],
        dir.path(),
    );
    assert_clean_error(&o, &["tiny28.onnx", "rknn-prep"]);
    // a .rknn model where the NPU runtime is absent (this machine), no ONNX beside it
    let m = dir.path().join("m.rknn");
    std::fs::write(&m, b"not compiled").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ign-edge"))
        .args(["project", "-m", s(&m), "noise:1", "-o", "x.png"])
        .current_dir(dir.path())
        .env("IGN_EDGE_RKNN_LIB", "/nonexistent/librknnrt.so")
        .output()
        .unwrap();
    let want: &[&str] = if cfg!(feature = "rknn") {
        &["m.rknn", "librknnrt.so", "m.onnx beside it"]
    } else {
        &["m.rknn", "--features rknn"]
    };
    assert_clean_error(&o, want);
    // the CPU backend refuses a .rknn file
    let o = ign(
        &[
            "project",
            "--backend",
            "cpu",
            "-m",
            s(&m),
            "noise:1",
            "-o",
            "x.png",
        ],
        dir.path(),
    );
    assert_clean_error(&o, &["m.rknn", "--backend rknn"]);
}
