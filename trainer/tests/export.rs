//! The exported ONNX file, run by ign-edge (tract), equals candle's eval-mode forward.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ign_core::backend::{cpu::CpuBackend, Backend};
use ign_core::tensor::ImageBatch;
use ign_train::loss::LossConfig;
use ign_train::model::{Ign, ModelConfig, Norm};
use ign_train::noise::NoiseKind;
use ign_train::optim::AdamConfig;
use ign_train::train::{init_weights, TrainConfig};

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
        batch: 8,
        seed: 3,
        data: "test".into(),
        dataset_name: "test".into(),
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
