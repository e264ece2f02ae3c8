//! `ign-edge quantize`: the shipped model and PyTorch-style fixtures in int8 and fp16, checked
//! against fp32 on held-out real digits and noise.

use ign_edge::backend::{cpu::CpuBackend, Backend};
use ign_edge::inputs;
use ign_edge::model::{Model, Precision};
use ign_edge::quantize::{self, fidelity::psnr, int8::FloatReason, QuantizeOptions};
use prost::Message;
use std::path::Path;
use tract_onnx::pb;

const MODEL: &str = "models/ign-mnist.onnx";
const DIGITS: &str = "trainer/tests/fixtures/mnist-300-images-idx3-ubyte.gz";

fn ops(bytes: &[u8]) -> Vec<String> {
    let p = pb::ModelProto::decode(bytes).unwrap();
    p.graph
        .unwrap()
        .node
        .into_iter()
        .map(|n| n.op_type)
        .collect()
}

fn opts(precision: Precision, calib: Option<&str>) -> QuantizeOptions {
    QuantizeOptions {
        precision,
        calib: calib.map(str::to_string),
        latency_runs: 25,
        ..Default::default()
    }
}

/// f of the fp32 model and of `bytes` on the last 40 fixture digits and on 40 noise images.
fn fidelity(bytes: &[u8], half: bool) -> (f64, f64) {
    let reference = Model::load(Path::new(MODEL)).unwrap();
    let variant = Model::from_bytes(Path::new("variant.onnx"), bytes).unwrap();
    let mut a = CpuBackend::new(&reference, None).unwrap();
    let mut b = CpuBackend::with_arithmetic(&variant, None, half).unwrap();
    let digits = inputs::read_idx_images(Path::new(DIGITS), &reference.info, 0).unwrap();
    let held = digits.slice(digits.len() - 40, digits.len());
    let noise = inputs::noise_batch(&reference.info, 40, 77);
    let mut out = vec![];
    for x in [held, noise] {
        let (ya, yb) = (a.run(&x).unwrap(), b.run(&x).unwrap());
        out.push(psnr(&ya.data, &yb.data));
    }
    (out[0], out[1])
}

#[test]
fn int8_runs_every_conv_on_integer_kernels_and_stays_close() {
    // Without the fidelity floor, every conv that can be int8 is.
    let no_floor = QuantizeOptions {
        min_psnr_db: 0.0,
        ..opts(Precision::Int8, Some(DIGITS))
    };
    let q = quantize::quantize(Path::new(MODEL), &no_floor).unwrap();
    let ops = ops(&q.bytes);
    // The fused scheme: 4 convs + 4 transposed convs (rewritten) become 4 QLinearConv, the
    // last one ConvInteger (float out for the tanh), and 3 float Conv (the first, the two
    // dense layers) whose weights are int8, dequantized from constants.
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("ConvTranspose") + count("MatMul"), 0, "{ops:?}");
    assert_eq!(count("QLinearConv"), 4, "{ops:?}");
    assert_eq!(count("ConvInteger"), 1, "{ops:?}");
    assert_eq!(count("Conv"), 3, "{ops:?}");
    let g = pb::ModelProto::decode(&q.bytes[..]).unwrap().graph.unwrap();
    for conv in g.node.iter().filter(|n| n.op_type == "Conv") {
        let dq = g
            .node
            .iter()
            .find(|n| n.output[0] == conv.input[1])
            .unwrap_or_else(|| panic!("{}: weights not from a node", conv.name));
        assert_eq!(dq.op_type, "DequantizeLinear", "{}", conv.name);
        let w = g
            .initializer
            .iter()
            .find(|t| t.name == dq.input[0])
            .unwrap();
        assert_eq!(w.data_type, pb::tensor_proto::DataType::Int8 as i32);
    }
    // No float weights left anywhere.
    assert!(
        !g.initializer
            .iter()
            .any(|t| t.data_type == pb::tensor_proto::DataType::Float as i32
                && t.dims.iter().product::<i64>() > 4096),
        "a large float initializer is left"
    );
    let report = q.report.unwrap();
    // The float rewrites are exact up to float rounding: the sums run in another order and
    // equalization rescales channels (ign-mnist at step 31,250: 9.2e-6, at 37,250: 1.0e-5 on
    // outputs in [-1, 1]); the quantizer itself refuses anything past 1e-4 as a bug.
    let rewrite = report.rewrite_max_abs_error.unwrap();
    assert!(rewrite < 5e-5, "the float rewrites changed f by {rewrite}");
    assert!(report.candidates.len() >= 2);
    assert!(
        report.size_ratio < 0.3,
        "int8 file is {:.2} of fp32",
        report.size_ratio
    );
    let model = Model::from_bytes(Path::new("m.int8.onnx"), &q.bytes).unwrap();
    assert_eq!(model.info.precision, Precision::Int8);
    // Judged here on images the calibration held out, and on fresh noise.
    let (real, noise) = fidelity(&q.bytes, false);
    assert!(real > 28.0, "PSNR of f on real digits {real:.1} dB");
    assert!(noise > 28.0, "PSNR of f on noise {noise:.1} dB");
    // Deterministic: the same inputs give the same bytes.
    let again = quantize::quantize(Path::new(MODEL), &no_floor).unwrap();
    assert!(
        again.bytes == q.bytes,
        "int8 output differs between two runs"
    );
    // The default fidelity floor (40 dB on held-out real digits and noise): convs move to
    // float until the report's worst kind meets it, and the file stays int8 in size.
    let floored =
        quantize::quantize(Path::new(MODEL), &opts(Precision::Int8, Some(DIGITS))).unwrap();
    let r = floored.report.unwrap();
    let worst = |r: &quantize::Report| r.noise.psnr_f_db.min(r.real.as_ref().unwrap().psnr_f_db);
    let convs = |r: &quantize::Report| r.int8.as_ref().unwrap().integer_convs;
    let what = format!(
        "no floor: worst {:.2} dB, {} integer convs; floor: worst {:.2} dB, {} integer convs",
        worst(&report),
        convs(&report),
        worst(&r),
        convs(&r)
    );
    if worst(&report) < 40.0 {
        // (39.8 dB on this calibration: one conv moves, 41.3 dB.)
        assert!(convs(&r) < convs(&report) && worst(&r) >= 40.0, "{what}");
        // the report names the convs the floor moved, and says so
        let moved = r.int8.as_ref().unwrap().in_float.iter();
        let moved = moved
            .filter(|f| f.why == FloatReason::FidelityFloor)
            .count();
        assert_eq!(moved, convs(&report) - convs(&r), "{what}");
    } else {
        assert_eq!(floored.bytes, q.bytes, "{what}");
    }
    assert!(
        r.size_ratio < 0.3,
        "int8 file is {:.2} of fp32",
        r.size_ratio
    );
}

#[test]
fn fp16_halves_the_file_and_keeps_45_db() {
    let q = quantize::quantize(Path::new(MODEL), &opts(Precision::Fp16, None)).unwrap();
    let report = q.report.unwrap();
    assert!(
        report.size_ratio < 0.55,
        "fp16 file is {:.2} of fp32",
        report.size_ratio
    );
    assert_eq!(report.fidelity_arithmetic, "fp16");
    let model = Model::from_bytes(Path::new("m.fp16.onnx"), &q.bytes).unwrap();
    assert_eq!(model.info.precision, Precision::Fp16);
    let (real, noise) = fidelity(&q.bytes, true);
    assert!(
        real > 45.0 && noise > 45.0,
        "fp16 PSNR {real:.1} / {noise:.1} dB"
    );
    // Without fp16 hardware the runtime runs the same file in fp32: closer still.
    let (real32, _) = fidelity(&q.bytes, false);
    assert!(real32 >= real - 0.5, "{real32} vs {real}");
}

#[test]
fn pytorch_style_graphs_quantize_too() {
    // BatchNormalization after convs, Relu before a ConvTranspose, Identity, input.1.
    let q = quantize::quantize(
        Path::new("tests/fixtures/tiny28.onnx"),
        &opts(Precision::Int8, None),
    )
    .unwrap();
    // BatchNormalization is folded into the convs at load: none is left to run in float
    assert!(!ops(&q.bytes).iter().any(|o| o == "BatchNormalization"));
    let report = q.report.unwrap();
    let summary = report.int8.unwrap();
    // The first conv reads the input: float arithmetic on int8 weights.
    assert_eq!((summary.integer_convs, summary.float_convs), (3, 1));
    assert!(summary.folded_relus >= 1);
    assert!(
        report.noise.psnr_f_db > 25.0,
        "{:.1} dB",
        report.noise.psnr_f_db
    );
    // Fixed-batch RGB 64x64 with stride-2 deconvs.
    let q = quantize::quantize(
        Path::new("tests/fixtures/tiny64rgb.onnx"),
        &opts(Precision::Int8, Some("noise:32")),
    )
    .unwrap();
    assert!(!ops(&q.bytes).iter().any(|o| o == "BatchNormalization"));
    assert!(q.report.unwrap().noise.psnr_f_db > 25.0);
}

/// Real PyTorch exports of the 64x64 DCGAN IGN (tests/numerics.rs says what each is): once the
/// BatchNorm is folded, every conv but the first and the two dense layers (the 4x4 conv to the
/// latent and the transposed conv out of it, float on int8 weights) is an integer conv, on
/// noise alone; the default exporter's weights, kept in a file beside the model, end up inside
/// the int8 file, which loads on its own anywhere.
#[test]
fn pytorch_exports_quantize_to_int8_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["torch64-torchscript.onnx", "torch64-dynamo.onnx"] {
        let path = Path::new("tests/fixtures").join(file);
        let q = quantize::quantize(&path, &opts(Precision::Int8, Some("noise:32"))).unwrap();
        let ops = ops(&q.bytes);
        assert!(!ops.iter().any(|o| o == "BatchNormalization"), "{ops:?}");
        let report = q.report.unwrap();
        let summary = report.int8.unwrap();
        assert_eq!(
            (summary.integer_convs, summary.float_convs),
            (7, 3),
            "{file}"
        );
        // which, and why: the conv on the input and the two dense layers, nothing by the floor
        let why: Vec<FloatReason> = summary.in_float.iter().map(|f| f.why).collect();
        assert_eq!(
            why,
            [
                FloatReason::ReadsTheInput,
                FloatReason::Dense,
                FloatReason::Dense
            ],
            "{file}: {:?}",
            summary.in_float
        );
        assert!(
            report.noise.psnr_f_db > 40.0,
            "{file}: {:.1} dB",
            report.noise.psnr_f_db
        );
        let alone = dir.path().join(file.replace(".onnx", ".int8.onnx"));
        std::fs::write(&alone, &q.bytes).unwrap();
        let proto = pb::ModelProto::decode(q.bytes.as_slice()).unwrap();
        let g = proto.graph.unwrap();
        assert!(g.initializer.iter().all(|t| t.external_data.is_empty()));
        let m = Model::load(&alone).unwrap();
        assert_eq!(m.info.precision, Precision::Int8);
    }
}

#[test]
fn conv_integer_scheme_keeps_int32_accumulators_and_float_between_layers() {
    let mut o = opts(Precision::Int8, Some(DIGITS));
    o.scheme = quantize::int8::Scheme::ConvInteger;
    o.methods = vec![quantize::calib::RangeMethod::Percentile(99.99)];
    let q = quantize::quantize(Path::new(MODEL), &o).unwrap();
    let ops = ops(&q.bytes);
    // The two dense layers as MatMulInteger, the other six as ConvInteger.
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(
        (count("ConvInteger"), count("MatMulInteger")),
        (6, 2),
        "{ops:?}"
    );
    assert_eq!(
        count("Conv") + count("ConvTranspose") + count("MatMul"),
        0,
        "{ops:?}"
    );
    let (real, noise) = fidelity(&q.bytes, false);
    assert!(real > 28.0 && noise > 28.0, "{real:.1} / {noise:.1} dB");
}

#[test]
fn qlinearconv_scheme_requantizes_between_layers() {
    let mut o = opts(Precision::Int8, Some(DIGITS));
    o.scheme = quantize::int8::Scheme::QLinearConv;
    o.methods = vec![quantize::calib::RangeMethod::MinMax];
    let q = quantize::quantize(Path::new(MODEL), &o).unwrap();
    let ops = ops(&q.bytes);
    assert_eq!(
        ops.iter().filter(|o| *o == "QLinearConv").count(),
        6,
        "{ops:?}"
    );
    let (real, _) = fidelity(&q.bytes, false);
    assert!(real > 28.0, "{real:.1} dB");
}

#[test]
fn an_already_quantized_model_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantize::quantize(
        Path::new("tests/fixtures/tiny28.onnx"),
        &opts(Precision::Fp16, None),
    )
    .unwrap();
    let p = dir.path().join("t.fp16.onnx");
    std::fs::write(&p, &q.bytes).unwrap();
    let err = quantize::quantize(&p, &opts(Precision::Int8, None))
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("t.fp16.onnx") && msg.contains("fp32"), "{msg}");
}
