//! A resumed run continues exactly: 4 steps equal 2 steps, stop, resume, 2 steps.

use ign_train::data::DataOptions;
use ign_train::loss::LossConfig;
use ign_train::model::ModelConfig;
use ign_train::noise::NoiseKind;
use ign_train::optim::AdamConfig;
use ign_train::train::{run, RunOptions, TrainConfig};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-300-images-idx3-ubyte.gz")
}

fn config() -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            channels: 1,
            image_size: 28,
            width: 4,
            norm: ign_train::model::Norm::Layer,
        },
        loss: LossConfig::default(),
        adam: AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
        noise: NoiseKind::Gaussian,
        z_mix: 0.5,
        batch: 8,
        seed: 11,
        data: "fixture".into(),
        dataset_name: "mnist".into(),
    }
}

fn opts(out: &Path, steps: u64, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        steps,
        resume,
        sample_every: 0,
        checkpoint_every: 0,
        quiet: true,
    }
}

#[test]
fn four_steps_equal_two_plus_resume_plus_two() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let d = DataOptions::default();
    let full = run(config(), &fixture(), &d, &opts(&a, 4, false)).unwrap();
    let half = run(config(), &fixture(), &d, &opts(&b, 2, false)).unwrap();
    assert_eq!(half.step, 2);
    // without --resume an existing run is refused, not overwritten
    let err = run(config(), &fixture(), &d, &opts(&b, 4, false))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    drop(half);
    let resumed = run(config(), &fixture(), &d, &opts(&b, 4, true)).unwrap();
    assert_eq!(resumed.step, 4);

    let fa = full.varmap.data().lock().unwrap();
    let fb = resumed.varmap.data().lock().unwrap();
    let mut max = 0f32;
    let mut moved = 0f32;
    for (name, va) in fa.iter() {
        let vb = &fb[name];
        let diff = (va.as_tensor() - vb.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        max = max.max(diff);
        if name.ends_with("conv.weight") {
            moved += va
                .as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        }
    }
    assert!(max <= 1e-6, "resumed weights differ by {max}");
    assert!(moved > 0.0);
    // the log has one line per step, across both invocations
    let log = std::fs::read_to_string(b.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 4, "{log}");
}
