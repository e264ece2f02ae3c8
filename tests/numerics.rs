//! ign-edge's outputs match onnxruntime's on committed fixtures (made by
//! tests/fixtures/make_fixtures.py), for k = 1 and k = 2, gray 28x28 and RGB 64x64.

use ign_edge::backend::{cpu::CpuBackend, Backend};
use ign_edge::model::Model;
use ign_edge::tensor::ImageBatch;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn npy(name: &str, model: &Model) -> ImageBatch {
    ign_edge::inputs::read_npy(&fixture(name), &model.info).unwrap()
}

fn check(model_file: &str, x: &str, y1: &str, y2: &str, threads: usize) {
    let model = Model::load(&fixture(model_file)).unwrap();
    // pinned: the thread count is not left to a measurement that may keep one thread
    let mut cpu = CpuBackend::pinned(&model, threads).unwrap();
    assert_eq!(cpu.threads(), threads);
    let x = npy(x, &model);
    let out = cpu.project(&x, 2).unwrap();
    for (k, (got, want)) in out
        .iter()
        .zip([npy(y1, &model), npy(y2, &model)])
        .enumerate()
    {
        assert_eq!(got.shape, want.shape);
        let d = got.max_abs_diff(&want);
        assert!(d < 1e-4, "{model_file} k={}: max diff {d}", k + 1);
    }
    // the reused plan gives the same numbers again
    let again = cpu.run(&x).unwrap();
    assert_eq!(again, out[0]);
}

#[test]
fn gray_28_dynamic_batch_matches_onnxruntime() {
    check("tiny28.onnx", "x28.npy", "y28_k1.npy", "y28_k2.npy", 1);
}

#[test]
fn gray_28_matches_with_two_threads() {
    check("tiny28.onnx", "x28.npy", "y28_k1.npy", "y28_k2.npy", 2);
}

#[test]
fn rgb_64_fixed_batch_matches_onnxruntime() {
    check("tiny64rgb.onnx", "x64.npy", "y64_k1.npy", "y64_k2.npy", 1);
}

/// Real `torch.onnx.export` files of the 64x64 DCGAN IGN (benches/torch_dcgan64.py at width 2):
/// the default exporter's, with its weights in `torch64-dynamo.onnx.data` and `batch`-named
/// shape hints on inner tensors, and the legacy exporter's, with a BatchNormalization left
/// after each normalised ConvTranspose. Both give PyTorch's own outputs (within 1e-4, as the
/// other fixtures; under 1e-5 on x86).
#[test]
fn pytorch_exports_give_pytorchs_outputs() {
    // the counts differ by how much BatchNorm each exporter folded itself (into the Convs alone,
    // or into every conv)
    for (file, external, params) in [
        ("torch64-dynamo.onnx", true, 13_839),
        ("torch64-torchscript.onnx", false, 13_929),
    ] {
        let model = Model::load(&fixture(file)).unwrap();
        let on_disk = std::fs::metadata(fixture(file)).unwrap().len();
        assert_eq!(model.info.file_bytes > on_disk, external, "{file}");
        assert_eq!(model.info.params, params, "{file}");
        for threads in [1, 2] {
            let mut cpu = CpuBackend::pinned(&model, threads).unwrap();
            let x = npy("torch64_x.npy", &model);
            let got = cpu.run(&x).unwrap();
            let want = npy("torch64_y.npy", &model);
            let d = got.max_abs_diff(&want);
            assert!(d < 1e-4, "{file}, {threads} threads: max diff {d}");
        }
    }
}

#[test]
fn batch_one_equals_the_rows_of_a_batch() {
    let model = Model::load(&fixture("tiny28.onnx")).unwrap();
    let mut cpu = CpuBackend::new(&model, None).unwrap();
    let x = npy("x28.npy", &model);
    let both = cpu.run(&x).unwrap();
    for i in 0..2 {
        let one = cpu.run(&x.slice(i, i + 1)).unwrap();
        assert!(one.max_abs_diff(&both.slice(i, i + 1)) < 1e-5);
    }
}

#[test]
fn info_reads_shapes_metadata_params_and_flops() {
    let m = Model::load(&fixture("tiny28.onnx")).unwrap();
    let i = &m.info;
    assert_eq!((i.channels, i.height, i.width), (1, 28, 28));
    assert_eq!(i.fixed_batch, None);
    assert_eq!(i.input_name, "input.1");
    assert_eq!(i.metadata["ign.dataset"], "fixture");
    assert_eq!(i.ops["BatchNormalization"], 2);
    // conv weights 1*4*16 + 4*8*16 + 8*4*16 + 4*1*16 = 832, biases, BN 4 tensors of 4 twice
    assert!(i.params >= 832, "{}", i.params);
    // FLOPs: 2 * sum of MACs; conv1: 4 out ch * 14*14 * 16 = 12544 MACs
    let macs = 4 * 14 * 14 * 16 + 8 * 7 * 7 * 4 * 16 + 8 * 7 * 7 * 4 * 16 + 4 * 14 * 14 * 16;
    assert!(
        i.flops >= 2 * macs as u64 && i.flops < 3 * macs as u64,
        "flops {} vs 2*MACs {}",
        i.flops,
        2 * macs
    );
    let m = Model::load(&fixture("tiny64rgb.onnx")).unwrap();
    assert_eq!(m.info.fixed_batch, Some(1));
    assert_eq!(m.info.channels, 3);
    assert_eq!(m.info.opset, 17);
    assert!(m.info.metadata.is_empty());
}

#[test]
fn fp16_runs_in_the_arithmetic_this_cpu_has_within_45_db_of_fp32() {
    use ign_edge::backend::cpu::cpu_has_fp16;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let m32 = Model::load(&root.join("ign-mnist.onnx")).unwrap();
    let m16 = Model::load(&root.join("ign-mnist.fp16.onnx")).unwrap();
    let mut b16 = CpuBackend::new(&m16, None).unwrap();
    // CI runs this under `qemu-aarch64 -cpu max` (FEAT_FP16) with IGN_EXPECT_FP16=1: the
    // detection must see it there.
    if std::env::var_os("IGN_EXPECT_FP16").is_some() {
        assert!(
            cpu_has_fp16(),
            "this CPU reports fp16 arithmetic, the detection missed it"
        );
    }
    let want = if cpu_has_fp16() { "fp16" } else { "fp32" };
    assert_eq!(b16.arithmetic(), want);
    let digits = ign_edge::inputs::read_idx_images(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("trainer/tests/fixtures/mnist-300-images-idx3-ubyte.gz"),
        &m32.info,
        0,
    )
    .unwrap()
    .slice(0, 8);
    let noise = ign_edge::inputs::noise_batch(&m32.info, 8, 5);
    let mut b32 = CpuBackend::new(&m32, None).unwrap();
    for (what, x) in [("digits", digits), ("noise", noise)] {
        let (a, b) = (b32.run(&x).unwrap(), b16.run(&x).unwrap());
        let p = ign_edge::quantize::fidelity::psnr(&a.data, &b.data);
        assert!(
            p >= 45.0,
            "{what}: fp16 ({want} arithmetic) {p:.1} dB from fp32"
        );
    }
}
