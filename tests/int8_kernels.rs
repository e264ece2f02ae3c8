//! The int8 plan's own tract ops (issue 18) against the tract ops they replace: the packed
//! im2col (`ign_core::backend::packed_im2col`) byte for byte on every convolution of the shipped int8
//! model and of a fused-scheme quantization of it, `QuantizeLinear`
//! (`ign_core::backend::quantize_linear`) on every rounding tie, and the whole plan bit for bit.

use ign_edge::backend::own_ops;
use ign_edge::backend::packed_im2col::replacement;
use ign_edge::inputs;
use ign_edge::model::{Model, Precision};
use ign_edge::quantize::{self, int8::Scheme, QuantizeOptions};
use std::path::Path;
use tract_linalg::mmm::{EagerPackedInput, PackedMatrixStorage};
use tract_linalg::pack::PackedFormat;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::conv::Im2Col;
use tract_onnx::tract_core::ops::EvalOp;

fn shipped_int8() -> Model {
    Model::load(Path::new("models/ign-mnist.int8.onnx")).unwrap()
}

/// How many convs of the shipped int8 file run on integers, as its quantize report says.
fn shipped_integer_convs() -> usize {
    let text = std::fs::read_to_string("models/ign-mnist/int8-report.json").unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = report["int8"]["integer_convs"]
        .as_u64()
        .expect("int8.integer_convs");
    assert!(n >= 1, "the shipped int8 file has no integer conv");
    n as usize
}

/// ign-mnist quantized here in `scheme` (one range method: quick), every conv that can be
/// int8 in int8 (no fidelity floor).
fn int8(scheme: Scheme) -> Model {
    let o = QuantizeOptions {
        precision: Precision::Int8,
        calib: Some("noise:64".into()),
        measure: false,
        methods: vec![quantize::calib::RangeMethod::Percentile(99.99)],
        scheme,
        min_psnr_db: 0.0,
        ..Default::default()
    };
    let q = quantize::quantize(Path::new("models/ign-mnist.onnx"), &o).unwrap();
    Model::from_bytes(Path::new("m.int8.onnx"), &q.bytes).unwrap()
}

fn models() -> [(&'static str, Model); 3] {
    [
        ("shipped", shipped_int8()),
        ("fused", int8(Scheme::Fused)),
        ("conv-integer", int8(Scheme::ConvInteger)),
    ]
}

/// The packed bytes of every matrix in a packed tensor that the kernel reads. In tract's
/// K-major `PackedFormat` each panel ends in padding rows that its `Im2col` leaves
/// uninitialized (ours zeroes them): only the first `k·r` bytes of each panel count there.
fn packed_bytes(t: &Tensor) -> Vec<Vec<u8>> {
    let s = t.try_storage_as::<PackedMatrixStorage>().unwrap();
    s.values()
        .iter()
        .map(|v| {
            let e = v
                .downcast_ref::<EagerPackedInput>()
                .expect("eager packed input");
            let bytes = e.packed.as_bytes();
            match e.fact.format.downcast_ref::<PackedFormat>() {
                Some(pf) => bytes
                    .chunks(e.panel_bytes)
                    .flat_map(|panel| panel[..e.fact.k * pf.r].to_vec())
                    .collect(),
                None => bytes.to_vec(),
            }
        })
        .collect()
}

/// For every int8 Im2col of the optimized plan: tract's output and ours on the same bytes.
/// Returns (int8 Im2col nodes, nodes checked).
fn every_im2col_matches(model: &Model, batch: usize) -> (usize, usize) {
    let plan = model.typed(batch).unwrap().into_optimized().unwrap();
    let (mut im2cols, mut checked) = (0, 0);
    for node in plan.nodes() {
        let Some(op) = node.op_as::<Im2Col>() else {
            continue;
        };
        if plan
            .outlet_fact(node.inputs[0])
            .unwrap()
            .datum_type
            .size_of()
            != 1
        {
            continue; // a float conv's (at batch > 1, the first conv in float)
        }
        im2cols += 1;
        let Some(ours) = replacement(&plan, node, op).unwrap() else {
            continue;
        };
        let fact = plan.outlet_fact(node.inputs[0]).unwrap();
        let shape = fact.shape.as_concrete().unwrap().to_vec();
        let n: usize = shape.iter().product();
        // Every byte value, in an order that differs per position.
        let bytes: Vec<u8> = (0..n).map(|i| (i * 73 + 11) as u8).collect();
        let mut x = Tensor::from_shape(&shape, &bytes).unwrap();
        unsafe { x.set_datum_type(fact.datum_type) };
        let mut inputs: TVec<TValue> = tvec![x.into_tvalue()];
        if let Some(pad) = node.inputs.get(1) {
            let k = plan
                .outlet_fact(*pad)
                .unwrap()
                .konst
                .clone()
                .expect("constant pad");
            inputs.push(k.into_tvalue());
        }
        let want = op.eval_out_of_plan(inputs.clone()).unwrap().unwrap();
        let got = ours.eval_out_of_plan(inputs).unwrap().unwrap();
        let (want, got) = (packed_bytes(&want[0]), packed_bytes(&got[0]));
        assert_eq!(want.len(), got.len(), "{}", node.name);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.len(), g.len(), "{} matrix {i}: length", node.name);
            if let Some(at) = w.iter().zip(g).position(|(a, b)| a != b) {
                panic!(
                    "{} matrix {i}: first difference at byte {at} of {}",
                    node.name,
                    w.len()
                );
            }
        }
        checked += 1;
    }
    (im2cols, checked)
}

#[test]
fn packed_im2col_writes_what_tracts_im2col_writes() {
    for (name, model) in models() {
        for batch in [1, 3] {
            let (im2cols, checked) = every_im2col_matches(&model, batch);
            // Every strided or padded integer conv of ign-mnist (5 or 6 by scheme; in the
            // shipped file, those its quantize report counts: the fidelity floor moves some to
            // float) is replaced, whichever packing the CPU's int8 kernel wants.
            let least = if name == "shipped" {
                shipped_integer_convs()
            } else {
                5
            };
            assert!(im2cols >= least, "{name}: {im2cols} Im2col");
            assert_eq!(checked, im2cols, "{name} batch {batch}: convs checked");
        }
    }
}

#[test]
fn the_plan_with_our_ops_is_bit_identical() {
    let x = inputs::noise_batch(&shipped_int8().info, 4, 7);
    for (_, model) in models() {
        let shape = x.shape;
        let run = |replace: bool| {
            let mut plan = model.typed(shape[0]).unwrap().into_optimized().unwrap();
            let n = if replace {
                own_ops(&mut plan).unwrap()
            } else {
                0
            };
            let out = plan
                .into_runnable()
                .unwrap()
                .run(tvec!(Tensor::from_shape(&shape, &x.data).unwrap().into()))
                .unwrap();
            (
                n,
                out[0]
                    .to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect::<Vec<f32>>(),
            )
        };
        let (_, want) = run(false);
        let (n, got) = run(true);
        assert!(n > 0);
        assert_eq!(want, got, "{n} replaced");
    }
}

#[test]
fn fast_quantize_rounds_and_saturates_like_tracts_quantize_linear() {
    use ign_edge::backend::quantize_linear::IgnQuantizeLinear;
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    use tract_onnx::tract_core::ops::quant::{QuantizeLinearI8, QuantizeLinearU8};
    // Every tie x·(1/scale) = k + 0.5 over the whole range and past it, values between, large
    // values and both signs of zero. (Past ±2³¹ tract's `round(x·s) as i32 + zp` overflows
    // and wraps, e.g. -1e9 to 127 at zero point -128; ours saturates: checked below.)
    let inv = 1.0 / 0.037f32;
    let mut xs: Vec<f32> = (-400..=400).map(|k| (k as f32 + 0.5) / inv).collect();
    xs.extend((-4000..=4000).map(|k| k as f32 * 0.0123));
    xs.extend([0.0, -0.0, 1e6, -1e6, 3e7, -3e7]);
    for (zp, signed) in [
        (0, true),
        (-128, true),
        (17, true),
        (0, false),
        (128, false),
        (3, false),
    ] {
        let tract: Box<dyn tract_onnx::tract_core::ops::element_wise::ElementWiseMiniOp> = if signed
        {
            Box::new(QuantizeLinearI8 {
                scale: inv,
                zero_point: zp as i8,
            })
        } else {
            Box::new(QuantizeLinearU8 {
                scale: inv,
                zero_point: zp as u8,
            })
        };
        let x = tensor1(&xs);
        let want = ElementWiseOp(tract, None)
            .eval_out_of_plan(tvec!(x.clone().into_tvalue()))
            .unwrap()
            .unwrap();
        let ours = IgnQuantizeLinear {
            inv_scale: inv,
            zero_point: zp,
            signed,
        };
        let got = ours
            .eval_out_of_plan(tvec!(x.into_tvalue()))
            .unwrap()
            .unwrap();
        assert_eq!(want[0].datum_type(), got[0].datum_type());
        let (w, g) = (want[0].as_bytes(), got[0].as_bytes());
        if let Some(i) = w.iter().zip(g).position(|(a, b)| a != b) {
            panic!(
                "zp {zp} signed {signed}: x = {} gives {} in tract, {} here",
                xs[i], w[i], g[i]
            );
        }
        // Far past the range: the ends of the type, whatever the zero point.
        let mut far = [0u8; 4];
        ours.run(&[1e9, -1e9, f32::MAX, f32::MIN], &mut far);
        let (lo, hi) = if signed { (0x80, 0x7f) } else { (0, 255) };
        assert_eq!(far, [hi, lo, hi, lo], "zp {zp} signed {signed}");
    }
}
