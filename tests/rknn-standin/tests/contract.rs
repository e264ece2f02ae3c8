//! Contract tests of ign-edge's NPU backend against the stand-in librknnrt.so of this crate
//! (Rockchip's C API computed with the CPU backend; see src/lib.rs): init, query, inputs_set,
//! run, outputs_get/release, destroy, core masks, error codes, and in-order results from
//! several contexts.

use ign_edge::backend::cpu::CpuBackend;
use ign_edge::backend::rknn::{cores::NpuCores, InputMode, RknnBackend, RknnOptions};
use ign_edge::backend::Backend;
use ign_edge::model::{Model, Precision};
use ign_edge::tensor::ImageBatch;
use rknnrt_standin::{fake_model, FLOAT16, FLOAT32, INT8, UINT8};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tests share the library's global counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stand-in library cargo built beside this test.
fn standin_lib() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut found: Vec<PathBuf> = [deps.clone(), deps.parent().unwrap().to_path_buf()]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("librknnrt_standin") && n.ends_with(".so")
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found
        .pop()
        .expect("cargo builds librknnrt_standin.so (crate-type cdylib) for this test")
}

fn onnx_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/ign-mnist.onnx")
}

/// A fake .rknn of the shipped model in a fresh folder.
fn rknn_file(dir: &str, input: i32, output: i32) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ign-rknn-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("ign-mnist.rknn");
    std::fs::write(
        &p,
        fake_model(&std::fs::read(onnx_path()).unwrap(), input, output),
    )
    .unwrap();
    p
}

fn opts(cores: &str) -> RknnOptions {
    RknnOptions {
        lib: Some(standin_lib()),
        cores: cores.parse::<NpuCores>().unwrap(),
        pass_through: false,
    }
}

/// Test images: noise clipped to [-1, 1], the range a uint8 camera frame covers.
fn images(n: usize) -> ImageBatch {
    let m = Model::load(&onnx_path()).unwrap();
    let mut x = ign_edge::inputs::noise_batch(&m.info, n, 7);
    x.data.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
    x
}

fn cpu(x: &ImageBatch, steps: usize) -> Vec<ImageBatch> {
    let m = Model::load(&onnx_path()).unwrap();
    CpuBackend::new(&m, None)
        .unwrap()
        .project(x, steps)
        .unwrap()
}

/// Mean and max absolute difference per image.
fn diffs(a: &ImageBatch, b: &ImageBatch) -> Vec<(f32, f32)> {
    (0..a.len())
        .map(|i| {
            let (x, y) = (a.image(i), b.image(i));
            let d: Vec<f32> = x.iter().zip(y).map(|(p, q)| (p - q).abs()).collect();
            (
                d.iter().sum::<f32>() / d.len() as f32,
                d.iter().cloned().fold(0.0, f32::max),
            )
        })
        .collect()
}

struct Hooks {
    lib: libloading::Library,
}

impl Hooks {
    fn new() -> Hooks {
        // the same library the backend loads: dlopen returns the loaded instance
        Hooks {
            lib: unsafe { libloading::Library::new(standin_lib()) }.unwrap(),
        }
    }
    fn runs(&self, mask: i32) -> u64 {
        let f = unsafe {
            self.lib
                .get::<extern "C" fn(i32) -> u64>(b"rknn_standin_runs")
        }
        .unwrap();
        f(mask)
    }
    fn delay(&self, mask: i32, us: u64) {
        let f = unsafe {
            self.lib
                .get::<extern "C" fn(i32, u64)>(b"rknn_standin_set_delay_us")
        }
        .unwrap();
        f(mask, us)
    }
    fn count(&self, name: &[u8]) -> u64 {
        let f = unsafe { self.lib.get::<extern "C" fn() -> u64>(name) }.unwrap();
        f()
    }
}

/// Every step's images of an int8 model within quantization error of the CPU's: input step
/// 2/255, output step 1/127, so small differences, never a wrong image.
fn assert_int8_matches_cpu(got: &[ImageBatch], want: &[ImageBatch]) {
    assert_eq!(got.len(), want.len(), "steps");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, (mean, max)) in diffs(g, w).into_iter().enumerate() {
            assert!(
                mean < 0.01 && max < 0.15,
                "step {k} image {i}: mean {mean} max {max}"
            );
        }
    }
}

#[test]
fn int8_model_gets_uint8_nhwc_pixels_by_default_and_matches_the_cpu() {
    // as in every upstream RK3588 example: uint8 NHWC, pass_through 0, the runtime normalizes
    let _g = serial();
    let path = rknn_file("int8-u8", INT8, INT8);
    let mut npu = RknnBackend::open(&path, &opts("auto")).unwrap();
    assert_eq!(npu.io().input, InputMode::U8);
    assert_eq!(npu.info().precision, Precision::Int8);
    let x = images(4);
    assert_int8_matches_cpu(&npu.project(&x, 2).unwrap(), &cpu(&x, 2));
}

#[test]
fn int8_model_folds_mean_std_and_quantization_and_matches_the_cpu() {
    let _g = serial();
    let path = rknn_file("int8", INT8, INT8);
    let mut o = opts("auto");
    o.pass_through = true;
    let mut npu = RknnBackend::open(&path, &o).unwrap();
    // the runtime's attributes: NHWC int8 input passed through (opt-in), NCHW int8 output
    assert_eq!(
        npu.io().input,
        InputMode::I8 {
            scale: 2.0 / 255.0,
            zp: -1
        }
    );
    let info = npu.info();
    assert_eq!((info.channels, info.height, info.width), (1, 28, 28));
    assert_eq!(info.precision, Precision::Int8);
    let x = images(4);
    assert_int8_matches_cpu(&npu.project(&x, 2).unwrap(), &cpu(&x, 2));
    let s = npu.stats();
    assert_eq!(s.runs, 8, "4 images x 2 steps");
    assert!(s.perf_runs == 8 && s.perf_run_us >= 0);
    let hooks = Hooks::new();
    assert_eq!(hooks.count(b"rknn_standin_unreleased_outputs"), 0);
    let live = hooks.count(b"rknn_standin_live_contexts");
    drop(npu);
    assert_eq!(
        hooks.count(b"rknn_standin_live_contexts"),
        live - 1,
        "rknn_destroy on drop"
    );
}

#[test]
fn uint8_input_and_fp16_or_float_outputs() {
    let _g = serial();
    let x = images(3);
    let want = cpu(&x, 1);
    for (out, precision) in [
        (FLOAT16, Precision::Fp16),
        (FLOAT32, Precision::Fp32),
        (UINT8, Precision::Fp16),
    ] {
        let path = rknn_file(
            &format!("u8-{out}"),
            if out == UINT8 { FLOAT16 } else { out },
            out,
        );
        let mut npu = RknnBackend::open(&path, &opts("auto")).unwrap();
        assert_eq!(npu.io().input, InputMode::U8, "output type {out}");
        if out != UINT8 {
            assert_eq!(npu.info().precision, precision);
        }
        let got = npu.run(&x).unwrap();
        for (mean, max) in diffs(&got, &want[0]) {
            assert!(
                mean < 0.01 && max < 0.15,
                "output type {out}: mean {mean} max {max}"
            );
        }
    }
}

#[test]
fn one_context_per_core_round_robin_results_in_order() {
    let _g = serial();
    let hooks = Hooks::new();
    let path = rknn_file("cores", INT8, INT8);
    let mut npu = RknnBackend::open(&path, &opts("0-2")).unwrap();
    assert_eq!(npu.depth(), 3);
    let before: Vec<u64> = [1, 2, 4].iter().map(|&m| hooks.runs(m)).collect();
    // core 0 is slow: images sent later finish first, yet come back in order
    hooks.delay(1, 40_000);
    let x = images(7);
    let got = npu.run(&x).unwrap();
    let want = cpu(&x, 1);
    for (i, (mean, _)) in diffs(&got, &want[0]).into_iter().enumerate() {
        assert!(
            mean < 0.01,
            "image {i} out of order or wrong: mean diff {mean}"
        );
    }
    let after: Vec<u64> = [1, 2, 4].iter().map(|&m| hooks.runs(m)).collect();
    let per_core: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        per_core,
        vec![3, 2, 2],
        "7 images over cores 0, 1, 2 in turn"
    );
    assert_eq!(npu.stats().per_context, vec![3, 2, 2]);

    // the live loop's way: frames submitted one by one, received in order
    let mut got = Vec::new();
    for i in 0..5 {
        npu.submit(&x.slice(i, i + 1), 2).unwrap();
        if i >= 2 {
            got.push(npu.receive().unwrap());
        }
    }
    while got.len() < 5 {
        got.push(npu.receive().unwrap());
    }
    let want2 = cpu(&x.slice(0, 5), 2);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), 2, "f and f(f)");
        let d = diffs(&g[1], &want2[1].slice(i, i + 1));
        assert!(d[0].0 < 0.01, "frame {i}: {d:?}");
    }
    assert!(npu.receive().is_err(), "nothing left in flight");
    hooks.delay(1, 0);
}

#[test]
fn errors_name_the_file_and_the_fix() {
    let _g = serial();
    // no library
    let mut o = opts("auto");
    o.lib = Some(PathBuf::from("/nonexistent/librknnrt.so"));
    let e = RknnBackend::open(&rknn_file("nolib", INT8, INT8), &o)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/nonexistent/librknnrt.so") && e.contains("IGN_EDGE_RKNN_LIB"),
        "{e}"
    );
    // a library that is not the runtime
    let mut o = opts("auto");
    o.lib = Some(PathBuf::from("libm.so.6"));
    let e = RknnBackend::open(&rknn_file("notrt", INT8, INT8), &o)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("not a Rockchip NPU runtime") && e.contains("rknn_init"),
        "{e}"
    );
    // not a model for this runtime
    let bad = std::env::temp_dir().join(format!("ign-rknn-bad-{}.rknn", std::process::id()));
    std::fs::write(&bad, b"this is not a model").unwrap();
    let e = RknnBackend::open(&bad, &opts("auto"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&bad.display().to_string()) && e.contains("RKNN_ERR_MODEL_INVALID"),
        "{e}"
    );
    // ... names the runtime's version (read from the library) and the fix
    assert!(
        e.contains("0.0.0 (ign stand-in)") && e.contains("same release as the toolkit"),
        "{e}"
    );
    // a missing file
    let e = RknnBackend::open(Path::new("/nonexistent/m.rknn"), &opts("auto"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/nonexistent/m.rknn") && e.contains("rknn-prep"),
        "{e}"
    );
    // wrong image size
    let mut npu = RknnBackend::open(&rknn_file("shape", INT8, INT8), &opts("0")).unwrap();
    let x = ImageBatch::new(vec![0.0; 3 * 8 * 8], [1, 3, 8, 8]).unwrap();
    let e = npu.run(&x).unwrap_err().to_string();
    assert!(e.contains("takes 1x28x28 images, got 3x8x8"), "{e}");
}

/// Runs in a child process with RKNN_STANDIN_NO_NPU set (see the next test).
#[test]
#[ignore = "run by no_npu_is_a_clear_error in a child process"]
fn no_npu_child() {
    let e = RknnBackend::open(&rknn_file("nonpu", INT8, INT8), &opts("auto"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("RKNN_ERR_DEVICE_UNAVAILABLE") && e.contains("rknpu driver"),
        "{e}"
    );
}

#[test]
fn no_npu_is_a_clear_error() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_npu_child", "--ignored", "--nocapture"])
        .env("RKNN_STANDIN_NO_NPU", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
fn auto_backend_falls_back_to_the_onnx_beside_a_rknn_model() {
    use ign_edge::app::model_spec::ModelSpec;
    use ign_edge::backend::select::{BackendKind, BackendOptions};
    let _g = serial();
    let path = rknn_file("fallback", INT8, INT8);
    let mut margs = ModelSpec {
        model: Some(path.clone()),
        threads: None,
        precision: None,
    };
    let mut bargs = BackendOptions {
        kind: BackendKind::Auto,
        npu_cores: NpuCores::Auto,
        rknn_lib: Some(standin_lib()),
        npu_pass_through: false,
    };
    // with the runtime: the NPU
    let o = margs.open(&bargs).unwrap();
    assert!(
        o.backend.name().starts_with("rknn-int8"),
        "{}",
        o.backend.name()
    );
    assert!(o.model.is_none());
    // without it: an error naming the missing ONNX, then the CPU once the ONNX is there
    bargs.rknn_lib = Some(PathBuf::from("/nonexistent/librknnrt.so"));
    let e = margs.open(&bargs).err().unwrap().to_string();
    assert!(e.contains("ign-mnist.onnx beside it"), "{e}");
    std::fs::copy(onnx_path(), path.with_extension("onnx")).unwrap();
    let o = margs.open(&bargs).unwrap();
    assert_eq!(o.backend.name(), "cpu-fp32");
    // --backend rknn does not fall back; --backend cpu refuses a .rknn file
    bargs.kind = BackendKind::Rknn;
    assert!(margs.open(&bargs).is_err());
    bargs.kind = BackendKind::Cpu;
    let e = margs.open(&bargs).err().unwrap().to_string();
    assert!(e.contains("--backend rknn"), "{e}");
    margs.model = Some(onnx_path());
    bargs.kind = BackendKind::Rknn;
    let e = margs.open(&bargs).err().unwrap().to_string();
    assert!(e.contains("rknn-prep"), "{e}");
}

#[test]
fn live_loop_keeps_frames_in_order_across_npu_cores() {
    use ign_edge::pipeline::preprocess::Preprocess;
    use ign_edge::pipeline::{run_loop, sink, source, LoopOptions};
    let _g = serial();
    let hooks = Hooks::new();
    let mut npu = RknnBackend::open(&rknn_file("loop", INT8, INT8), &opts("0-2")).unwrap();
    // core 0 is slow: frames 0, 3, 6, ... finish after the frames sent after them
    hooks.delay(1, 20_000);
    let src = source::open(
        "test",
        &source::SourceOptions {
            looping: false,
            fps: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let snk = sink::open("null", &sink::SinkOptions::default()).unwrap();
    let pre = Preprocess {
        channels: 1,
        height: 28,
        width: 28,
        roi: None,
        paper: false,
    };
    let opts = LoopOptions {
        frames: Some(30),
        steps: 1,
        stop: Default::default(),
        model_name: "ign-mnist".into(),
        precision: "int8".into(),
        controls: None,
        watchers: Vec::new(),
        anomaly: None,
    };
    let s = run_loop(src, &mut npu, &pre, snk, &opts).unwrap();
    hooks.delay(1, 0);
    // a recorded source (the test pattern at fps 0) drops nothing under any schedule: the 30
    // frames sent round-robin to the three cores are the 30 pictures shown, in order
    assert_eq!(
        (s.frames, s.dropped_capture, s.dropped_display),
        (30, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        s.last_seq,
        Some(29),
        "the last frame shown is the last frame sent"
    );
    assert_eq!(npu.stats().per_context, vec![10, 10, 10]);
}
