//! Latent tools on the shipped model: the split encoder/decoder reproduces f, interpolation
//! ends at f(A) and f(B), `A − A + C` is f(C), refine's first step is `project`'s.

use ign_edge::backend::{cpu::CpuBackend, Backend};
use ign_edge::inputs;
use ign_edge::latent::LatentSplit;
use ign_edge::latent::{arith, interpolate, Path2};
use ign_edge::model::Model;
use ign_edge::tensor::step_distances as distances;
use std::path::Path;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn digits(model: &Model, n: usize) -> ign_edge::tensor::ImageBatch {
    inputs::read_idx_images(
        Path::new("trainer/tests/fixtures/mnist-300-images-idx3-ubyte.gz"),
        &model.info,
        n,
    )
    .unwrap()
}

#[test]
fn decoder_of_encoder_is_f_on_the_shipped_models() {
    for file in [
        "models/ign-mnist.onnx",
        "models/ign-mnist.int8.onnx",
        "models/ign-mnist.fp16.onnx",
    ] {
        let model = Model::load(Path::new(file)).unwrap();
        let mut split = LatentSplit::new(&model).unwrap();
        let mut f = CpuBackend::with_arithmetic(&model, None, false).unwrap();
        let x = ign_edge::tensor::ImageBatch::concat(&[
            digits(&model, 4),
            inputs::noise_batch(&model.info, 4, 3),
        ])
        .unwrap();
        let z = split.encode(&x).unwrap();
        assert_eq!(z.shape[0], 8);
        let y = split.decode(&z).unwrap();
        let want = f.run(&x).unwrap();
        let d = max_diff(&y.data, &want.data);
        assert!(
            d < 1e-5,
            "{file}: decoder(encoder(x)) differs from f(x) by {d}"
        );
    }
}

#[test]
fn interpolation_ends_are_f_of_the_ends_and_arith_a_minus_a_is_identity() {
    let model = Model::load(Path::new("models/ign-mnist.onnx")).unwrap();
    let mut split = LatentSplit::new(&model).unwrap();
    let mut f = CpuBackend::new(&model, None).unwrap();
    let d = digits(&model, 3);
    let (a, b, c) = (d.slice(0, 1), d.slice(1, 2), d.slice(2, 3));
    for how in [Path2::Linear, Path2::Slerp] {
        let ys = interpolate(&mut split, &a, &b, 7, how).unwrap();
        assert_eq!(ys.len(), 7);
        assert!(
            max_diff(ys.image(0), &f.run(&a).unwrap().data) < 1e-5,
            "{how:?}"
        );
        assert!(
            max_diff(ys.image(6), &f.run(&b).unwrap().data) < 1e-5,
            "{how:?}"
        );
        // the middle is neither end
        assert!(max_diff(ys.image(3), ys.image(0)) > 0.1);
    }
    let (x, input_space, latent_space) = arith(&mut split, &mut f, &a, &a, &c).unwrap();
    assert!(max_diff(&x.data, &c.data) < 1e-6);
    let fc = f.run(&c).unwrap();
    assert!(max_diff(&input_space.data, &fc.data) < 1e-5);
    assert!(max_diff(&latent_space.data, &fc.data) < 1e-5);
}

#[test]
fn refine_distances_start_with_projects_step() {
    let model = Model::load(Path::new("models/ign-mnist.onnx")).unwrap();
    let mut f = CpuBackend::new(&model, None).unwrap();
    let x = inputs::noise_batch(&model.info, 3, 5);
    let seq = f.project(&x, 4).unwrap();
    let d = distances(&x, &seq);
    assert_eq!(d.len(), 4);
    let fx = f.run(&x).unwrap();
    let d1 = x
        .data
        .iter()
        .zip(&fx.data)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / x.data.len() as f64;
    assert!((d[0] - d1).abs() < 1e-9);
    // f moves noise a lot once, then little: the model is close to idempotent
    assert!(d[0] > 5.0 * d[1], "{d:?}");
}

#[test]
fn a_model_without_the_latent_key_is_refused_by_name() {
    let model = Model::load(Path::new("tests/fixtures/tiny28.onnx")).unwrap();
    let err = LatentSplit::new(&model).err().unwrap().to_string();
    assert!(
        err.contains("ign.latent") && err.contains("tiny28.onnx"),
        "{err}"
    );
}
