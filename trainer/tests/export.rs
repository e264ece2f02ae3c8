//! The exported ONNX file, run by ign-edge (tract), equals candle's eval-mode forward.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ign_core::backend::{cpu::CpuBackend, Backend};
use ign_core::tensor::ImageBatch;
use ign_train::model::{Ign, ModelConfig, Norm};
use ign_train::train::loss::LossConfig;
use ign_train::train::optim::AdamConfig;
use ign_train::train::{init_weights, TrainConfig};
use ign_train::z::noise::NoiseKind;

fn config(model: ModelConfig) -> TrainConfig {
    TrainConfig {
        model,
        loss: LossConfig::default(),
        adam: AdamConfig::default(),
        noise: NoiseKind::Gaussian,
        z_mix: 0.0,
        z_printed: 0.0,
        z_tight: Default::default(),
        z_fonts: Default::default(),
        z_bn: Default::default(),
        augment: Default::default(),
        ema: 0.0,
        batch: 8,
        seed: 3,
        test_fraction: 0.1,
        data: "test".into(),
        dataset_name: "test".into(),
        recipe: None,
    }
}

fn check(model: ModelConfig) {
    let varmap = VarMap::new();
    let ign = Ign::new(
        &model,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_weights(&varmap, 9).unwrap();
    // non-trivial BatchNorm statistics and affine parameters, so the folding is exercised
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let t = ((i * 7919 + name.len() * 31) % 97) as f32 / 97.0;
                if name.ends_with("running_var") {
                    0.5 + t
                } else if name.ends_with("running_mean")
                    || name.ends_with("bn.bias")
                    || name.ends_with("ln.bias")
                {
                    t - 0.5
                } else if name.ends_with("bn.weight") || name.ends_with("ln.weight") {
                    0.8 + 0.4 * t
                } else {
                    f32::NAN
                }
            })
            .collect();
        if v[0].is_nan() && model.norm == Norm::None && name.ends_with("conv.weight") {
            // without a normalization the DCGAN init gives a near-constant output
            var.set(&(var.as_tensor() * 12.0).unwrap()).unwrap();
        } else if !v[0].is_nan() {
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let bytes = ign_train::export::onnx_bytes(&config(model.clone()), &varmap, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let loaded = ign_core::model::Model::load(&path).unwrap();
    assert_eq!(loaded.info.metadata["ign.latent"], "latent");
    assert_eq!(loaded.info.metadata["ign.precision"], "fp32");
    assert_eq!(loaded.info.fixed_batch, None);
    let s = model.image_size;
    let n = 8 * model.channels * s * s;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let xt = Tensor::from_vec(x.clone(), (8, model.channels, s, s), &Device::Cpu).unwrap();
    let want = ign
        .forward_t(&xt, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut cpu = CpuBackend::new(&loaded, None).unwrap();
    let got = cpu
        .run(&ImageBatch::new(x, [8, model.channels, s, s]).unwrap())
        .unwrap();
    let d = got
        .data
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-4, "{model:?}: tract vs candle max diff {d}");
    // and the output is not trivially constant
    let spread = want.iter().cloned().fold(f32::MIN, f32::max)
        - want.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.1, "{spread}");
}

#[test]
fn mnist_shape_export_matches_candle() {
    for norm in [Norm::Layer, Norm::Instance, Norm::Batch, Norm::None] {
        check(ModelConfig {
            channels: 1,
            image_size: 28,
            width: 8,
            norm,
        });
    }
}

#[test]
fn rgb_64_export_matches_candle() {
    check(ModelConfig {
        channels: 3,
        image_size: 64,
        width: 8,
        norm: Norm::Layer,
    });
}

/// A run with `--ema` exports its moving average of the weights (`ign.weights` = ema), and
/// `--raw-weights` the last step's: each file computes what candle computes with those weights.
#[test]
fn a_run_with_a_weight_average_exports_the_average() {
    use ign_train::train::{run, RunOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mnist-300-images-idx3-ubyte.gz");
    let model = ModelConfig {
        channels: 1,
        image_size: 28,
        width: 4,
        norm: Norm::Layer,
    };
    let mut c = config(model);
    c.ema = 0.5;
    c.adam.lr = 1e-2; // big steps, so that the average is far from the last weights
    let out = dir.path().join("run");
    let opts = RunOptions {
        out: out.clone(),
        steps: 3,
        resume: false,
        from: None,
        from_batch: None,
        minutes: None,
        from_weights: Default::default(),
        sample_every: 0,
        checkpoint_every: 0,
        quiet: true,
    };
    run(c, &data, &Default::default(), &opts).unwrap();
    let ck = ign_train::train::checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let x: Vec<f32> = (0..4 * 784)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let xt = Tensor::from_vec(x.clone(), (4, 1, 28, 28), &Device::Cpu).unwrap();
    let candle = |average: bool| {
        let (ign, vm) = ck.model().unwrap();
        if average {
            ck.restore_ema_weights(&vm).unwrap();
        }
        let y = ign.forward_t(&xt, false).unwrap();
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let exported = |raw: bool| {
        let path = dir.path().join(if raw { "raw.onnx" } else { "avg.onnx" });
        let bn = ign_train::train::bnstats::BnStats::Data;
        ign_train::export::export(&out, &path, bn, None, raw).unwrap();
        let loaded = ign_core::model::Model::load(&path).unwrap();
        let mut cpu = CpuBackend::new(&loaded, None).unwrap();
        let batch = ImageBatch::new(x.clone(), [4, 1, 28, 28]).unwrap();
        let y = cpu.run(&batch).unwrap().data;
        (loaded.info.metadata["ign.weights"].clone(), y)
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    let (avg, last) = (candle(true), candle(false));
    assert!(
        max_diff(&avg, &last) > 1e-3,
        "the average is the last weights"
    );
    let (kind, y) = exported(false);
    assert_eq!(kind, "ema");
    assert!(max_diff(&y, &avg) < 1e-4, "{}", max_diff(&y, &avg));
    let (kind, y) = exported(true);
    assert_eq!(kind, "last");
    assert!(max_diff(&y, &last) < 1e-4, "{}", max_diff(&y, &last));
}
