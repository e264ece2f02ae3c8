//! The kernels of `ops` against their references, called directly (no global switch): the fast
//! convolutions equal candle's own, forward and gradients, on the shapes of every layer of the
//! shipped architectures (and a few odd ones); the fused norm ops equal the same blocks written
//! with candle's ops; a model on candle's kernels computes what it computes on the fast ones.

use candle_core::{DType, Device, Tensor, Var};
use ign_train::ops::fastconv;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = ign_train::data::mix(s, 7, 1);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let m = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_scalar::<f32>().unwrap() / m.to_scalar::<f32>().unwrap().max(1e-6)
}

/// The gradients of `[x, w, b]` through `fused` and through `reference` agree (relative 1e-4)
/// for a loss that weighs every output differently (`weights`).
fn same_gradients(
    fused: &Tensor,
    reference: &Tensor,
    vars: [&Var; 3],
    weights: &Tensor,
    what: &str,
) {
    let grads = |y: &Tensor| {
        (y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    };
    let (gf, gr) = (grads(fused), grads(reference));
    for (name, v) in ["x", "w", "b"].iter().zip(vars) {
        let (a, e) = (
            gf.get(v.as_tensor()).unwrap(),
            gr.get(v.as_tensor()).unwrap(),
        );
        assert!(max_rel(a, e) < 1e-4, "{what} d{name}: {}", max_rel(a, e));
    }
}

/// (transpose, batch, cin, cout, size, k, stride, pad)
type Case = (bool, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    // 28x28 encoder (width 8) and decoder
    (false, 3, 1, 8, 28, 4, 2, 1),
    (false, 3, 8, 16, 14, 4, 2, 1),
    (false, 3, 16, 32, 7, 3, 2, 1),
    (false, 3, 32, 32, 4, 4, 1, 0),
    (true, 3, 32, 32, 1, 4, 1, 0),
    (true, 3, 32, 16, 4, 3, 2, 1),
    (true, 3, 16, 8, 7, 4, 2, 1),
    (true, 3, 8, 1, 14, 4, 2, 1),
    // 64x64 RGB first and last layers, 32x32 middle
    (false, 2, 3, 8, 64, 4, 2, 1),
    (true, 2, 8, 3, 32, 4, 2, 1),
    (false, 2, 8, 16, 32, 4, 2, 1),
    (true, 2, 16, 8, 8, 4, 2, 1),
    // more than 64 output channels of the underlying convolution: the weight gradient's
    // product keeps its plain layout there (conv_kernels::WeightGradLayout)
    (false, 3, 8, 72, 8, 4, 2, 1),
    (true, 3, 72, 8, 4, 4, 2, 1),
    // odd sizes
    (false, 1, 2, 3, 9, 3, 1, 1),
    (true, 1, 3, 2, 5, 3, 1, 1),
];

#[test]
fn forward_and_gradients_match_candle() {
    for (i, &(t, b, ci, co, n, k, s, p)) in CASES.iter().enumerate() {
        let x = Var::from_tensor(&rand(&[b, ci, n, n], i as u64)).unwrap();
        let wshape = if t { [ci, co, k, k] } else { [co, ci, k, k] };
        let w = Var::from_tensor(&rand(&wshape, 100 + i as u64)).unwrap();
        let run = |fast: bool| {
            let (x, w) = (x.as_tensor(), w.as_tensor());
            let y = match (t, fast) {
                (true, true) => fastconv::conv_transpose2d(x, w, s, p),
                (true, false) => fastconv::reference::conv_transpose2d(x, w, s, p),
                (false, true) => fastconv::conv2d(x, w, s, p),
                (false, false) => fastconv::reference::conv2d(x, w, s, p),
            }
            .unwrap();
            // a loss that weights every output differently
            let r = rand(y.dims(), 999);
            let loss = (&y * &r).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (y, g.get(x).unwrap().clone(), g.get(w).unwrap().clone())
        };
        let (yc, gxc, gwc) = run(false);
        let (yf, gxf, gwf) = run(true);
        assert_eq!(yc.dims(), yf.dims(), "case {i}");
        for (what, a, c) in [("y", &yf, &yc), ("dx", &gxf, &gxc), ("dw", &gwf, &gwc)] {
            let r = max_rel(a, c);
            assert!(r < 1e-4, "case {i} {what}: relative error {r}");
        }
    }
}

#[test]
fn f64_is_supported_for_gradient_checks() {
    let x = rand(&[2, 3, 8, 8], 1).to_dtype(DType::F64).unwrap();
    let w = rand(&[4, 3, 4, 4], 2).to_dtype(DType::F64).unwrap();
    let y = fastconv::conv2d(&x, &w, 2, 1).unwrap();
    assert_eq!(y.dims(), &[2, 4, 4, 4]);
    assert_eq!(y.dtype(), DType::F64);
}

/// The fused LayerNorm + activation equals the same block written with candle's ops, forward
/// and gradients (input, scale, shift), for each activation it serves.
#[test]
fn fused_norm_activation_matches_candle_ops() {
    use ign_train::ops::fused::{group_norm_act, NormActivation, EPS};
    for (i, (act, groups)) in [
        (NormActivation::Leaky(0.2), 1),
        (NormActivation::Leaky(0.0), 1),
        (NormActivation::Identity, 1),
        (NormActivation::Leaky(0.2), 5),
        (NormActivation::Leaky(0.0), 5),
    ]
    .into_iter()
    .enumerate()
    {
        let x = Var::from_tensor(&(rand(&[3, 5, 7, 6], 40 + i as u64) * 3.0).unwrap()).unwrap();
        let w = Var::from_tensor(&rand(&[5], 50 + i as u64)).unwrap();
        let b = Var::from_tensor(&rand(&[5], 60 + i as u64)).unwrap();
        let reference = {
            let flat = x.as_tensor().reshape((3, groups, ())).unwrap();
            let mean = flat.mean_keepdim(2).unwrap();
            let c = flat.broadcast_sub(&mean).unwrap();
            let var = c.sqr().unwrap().mean_keepdim(2).unwrap();
            let n = c
                .broadcast_div(&(var + EPS).unwrap().sqrt().unwrap())
                .unwrap()
                .reshape((3, 5, 7, 6))
                .unwrap();
            let z = n
                .broadcast_mul(&w.as_tensor().reshape((1, 5, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, 5, 1, 1)).unwrap())
                .unwrap();
            match act {
                NormActivation::Leaky(s) => candle_nn::ops::leaky_relu(&z, s).unwrap(),
                NormActivation::Identity => z,
            }
        };
        let fused =
            group_norm_act(x.as_tensor(), w.as_tensor(), b.as_tensor(), groups, act).unwrap();
        assert!(
            max_rel(&fused, &reference) < 1e-5,
            "{act:?} {groups} forward"
        );
        let what = format!("{act:?} {groups}");
        same_gradients(
            &fused,
            &reference,
            [&x, &w, &b],
            &rand(&[3, 5, 7, 6], 70),
            &what,
        );
    }
}

/// The fused BatchNorm (training form) + activation equals candle's `BatchNorm::forward_train`
/// followed by the activation: output, gradients (input, scale, shift) and the running
/// statistics it leaves, for each activation it serves, at the shapes the models train with.
#[test]
fn fused_batch_norm_activation_matches_candle_batch_norm() {
    use candle_nn::{BatchNorm, ModuleT};
    use ign_train::ops::fused::NormActivation;
    use ign_train::ops::fused_bn::{batch_norm_act, update_running};
    for (i, (act, shape)) in [
        (NormActivation::Leaky(0.2), [4, 6, 7, 7]),
        (NormActivation::Leaky(0.0), [3, 5, 4, 4]),
        (NormActivation::Identity, [2, 3, 1, 1]),
        (NormActivation::Leaky(0.2), [64, 64, 7, 7]),
    ]
    .into_iter()
    .enumerate()
    {
        let c = shape[1];
        let seed = 100 + 10 * i as u64;
        // an offset and a scale per channel, so that the statistics matter
        let x = (rand(&shape, seed) * 2.0)
            .unwrap()
            .broadcast_add(&(rand(&[1, c, 1, 1], seed + 1) * 3.0).unwrap())
            .unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let w = Var::from_tensor(&rand(&[c], seed + 2)).unwrap();
        let b = Var::from_tensor(&rand(&[c], seed + 3)).unwrap();
        let rm0 = rand(&[c], seed + 4);
        let rv0 = (rand(&[c], seed + 5).abs().unwrap() + 0.5).unwrap();
        let bn = BatchNorm::new(
            c,
            rm0.clone(),
            rv0.clone(),
            w.as_tensor().clone(),
            b.as_tensor().clone(),
            1e-5,
        )
        .unwrap();
        let z = bn.forward_t(x.as_tensor(), true).unwrap();
        let reference = match act {
            NormActivation::Leaky(s) => candle_nn::ops::leaky_relu(&z, s).unwrap(),
            NormActivation::Identity => z,
        };
        let (fused, stats) =
            batch_norm_act(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5, act).unwrap();
        assert_eq!(stats.count, shape[0] * shape[2] * shape[3]);
        assert!(
            max_rel(&fused, &reference) < 1e-5,
            "{act:?} {shape:?} forward: {}",
            max_rel(&fused, &reference)
        );
        let (rm, rv) = (
            Var::from_tensor(&rm0).unwrap(),
            Var::from_tensor(&rv0).unwrap(),
        );
        update_running(rm.as_tensor(), rv.as_tensor(), &stats, bn.momentum()).unwrap();
        assert!(
            max_rel(rm.as_tensor(), bn.running_mean()) < 1e-5,
            "running mean"
        );
        assert!(
            max_rel(rv.as_tensor(), bn.running_var()) < 1e-5,
            "running var"
        );
        let what = format!("{act:?} {shape:?}");
        same_gradients(
            &fused,
            &reference,
            [&x, &w, &b],
            &rand(&shape, seed + 6),
            &what,
        );
    }
}

/// Running statistics that are not variables are refused rather than silently copied.
#[test]
fn fused_batch_norm_refuses_running_statistics_that_are_not_variables() {
    use ign_train::ops::fused::NormActivation;
    use ign_train::ops::fused_bn::{batch_norm_act, update_running};
    let x = rand(&[2, 3, 2, 2], 1);
    let (_, stats) = batch_norm_act(
        &x,
        &rand(&[3], 2),
        &rand(&[3], 3),
        1e-5,
        NormActivation::Identity,
    )
    .unwrap();
    let err = update_running(&rand(&[3], 4), &rand(&[3], 5), &stats, 0.1).unwrap_err();
    assert!(err.to_string().contains("variables"), "{err}");
}

/// A model runs the kernels it is given, each chosen on its own: on candle's convolutions, on
/// candle's norm ops, or both, it computes what it computes on the fast and fused ones, in
/// training and in eval mode.
#[test]
fn a_model_computes_the_same_on_each_choice_of_kernels() {
    use candle_nn::{VarBuilder, VarMap};
    use ign_train::model::{Ign, ModelConfig, Norm};
    use ign_train::ops::{ConvKernels, Kernels, NormKernels};
    for norm in [Norm::Batch, Norm::Layer, Norm::Instance, Norm::None] {
        let cfg = ModelConfig {
            channels: 1,
            image_size: 28,
            width: 4,
            norm,
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut ign = Ign::new(&cfg, vb).unwrap();
        ign_train::train::init_weights(&varmap, 3).unwrap();
        let x = rand(&[4, 1, 28, 28], 5);
        assert_eq!(ign.kernels(), Kernels::default());
        let choices: Vec<Kernels> = [ConvKernels::Fast, ConvKernels::Candle]
            .into_iter()
            .flat_map(|conv| {
                [NormKernels::Fused, NormKernels::Candle].map(|norm| Kernels { conv, norm })
            })
            .collect();
        assert_eq!(choices[0], Kernels::default());
        // eval mode first: training passes move BatchNorm's running statistics
        for train in [false, true] {
            let outputs: Vec<Tensor> = choices
                .iter()
                .map(|&k| {
                    ign.set_kernels(k);
                    ign.forward_t(&x, train).unwrap()
                })
                .collect();
            for (k, y) in choices.iter().zip(&outputs).skip(1) {
                let r = max_rel(y, &outputs[0]);
                assert!(r < 1e-4, "{norm:?} {k:?} train {train}: {r}");
            }
        }
    }
}
