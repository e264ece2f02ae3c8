//! A resumed run continues exactly: 4 steps equal 2 steps, stop, resume, 2 steps.

use ign_train::data::DataOptions;
use ign_train::model::ModelConfig;
use ign_train::train::loss::LossConfig;
use ign_train::train::optim::AdamConfig;
use ign_train::train::{run, RunOptions, TrainConfig};
use ign_train::z::noise::NoiseKind;
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
        z_printed: 0.0,
        z_tight: Default::default(),
        z_fonts: Default::default(),
        z_bn: Default::default(),
        augment: Default::default(),
        ema: 0.0,
        batch: 8,
        seed: 11,
        test_fraction: 0.1,
        data: "fixture".into(),
        dataset_name: "mnist".into(),
        recipe: None,
    }
}

fn opts(out: &Path, steps: u64, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        steps,
        resume,
        from: None,
        from_batch: None,
        minutes: None,
        from_weights: Default::default(),
        sample_every: 0,
        checkpoint_every: 0,
        quiet: true,
    }
}

fn max_weight_diff(a: &ign_train::train::Trainer, b: &ign_train::train::Trainer) -> f32 {
    let fa = a.varmap.data().lock().unwrap();
    let fb = b.varmap.data().lock().unwrap();
    let mut max = 0f32;
    for (name, va) in fa.iter() {
        let d = (va.as_tensor() - fb[name].as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        max = max.max(d);
    }
    max
}

/// `--from` starts a new run at the source's step with its state: with the source's own z-mix
/// it is the uninterrupted run; with another z-mix it records the new one and trains on it.
#[test]
fn a_run_started_from_another_continues_it_with_the_new_z_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (src, same, other, full) = (
        dir.path().join("src"),
        dir.path().join("same"),
        dir.path().join("other"),
        dir.path().join("full"),
    );
    let d = DataOptions::default();
    let start = run(config(), &fixture(), &d, &opts(&src, 2, false)).unwrap();
    let uninterrupted = run(config(), &fixture(), &d, &opts(&full, 4, false)).unwrap();
    let from_with = |out: &Path, z_mix: f64, lr: f64| {
        let mut o = opts(out, 4, false);
        o.from = Some(src.clone());
        let mut c = config();
        c.z_mix = z_mix;
        c.adam.lr = lr;
        run(c, &fixture(), &d, &o).unwrap()
    };
    let lr = config().adam.lr;
    let from = |out: &Path, z_mix: f64| from_with(out, z_mix, lr);
    let same_mix = from(&same, 0.5);
    assert_eq!(same_mix.step, 4);
    let diff = max_weight_diff(&same_mix, &uninterrupted);
    assert!(diff <= 1e-6, "a run started from step 2 differs by {diff}");
    let new_mix = from(&other, 0.0);
    let saved = ign_train::train::checkpoint::load(&other.join("checkpoint.safetensors")).unwrap();
    assert_eq!((saved.step, saved.config.z_mix), (4, 0.0));
    assert!(
        max_weight_diff(&new_mix, &uninterrupted) > 1e-6,
        "z-mix 0 trained the same"
    );
    // the source run is untouched, and its log stays its own
    let src_ck = ign_train::train::checkpoint::load(&src.join("checkpoint.safetensors")).unwrap();
    assert_eq!((src_ck.step, src_ck.config.z_mix), (2, 0.5));
    let log = std::fs::read_to_string(other.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 2, "{log}");
    // --lr applies from the start step on too: a tenth of it moves the weights far less.
    let slow = from_with(&dir.path().join("slow"), 0.5, lr / 10.0);
    let saved = ign_train::train::checkpoint::load(&dir.path().join("slow/checkpoint.safetensors"))
        .unwrap();
    assert_eq!(saved.config.adam.lr, lr / 10.0);
    let (moved, moved_slow) = (
        max_weight_diff(&same_mix, &start),
        max_weight_diff(&slow, &start),
    );
    assert!(
        moved_slow < moved / 3.0,
        "lr/10 moved the weights by {moved_slow}, lr by {moved}"
    );
}

/// The moving average of the weights (`--ema`) is saved with the run and resumes exactly: 4
/// steps equal 2, stop, resume, 2, for the average as for the weights. `--from` a run without
/// one starts it at the source's weights.
#[test]
fn the_weight_average_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = DataOptions::default();
    let with_ema = || {
        let mut c = config();
        c.ema = 0.5;
        c
    };
    let ema_of = |run: &str| {
        let ck = ign_train::train::checkpoint::load(
            &dir.path().join(run).join("checkpoint.safetensors"),
        )
        .unwrap();
        let mut t: Vec<(String, Vec<f32>)> = ck
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("ema/"))
            .map(|(k, v)| (k.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        (t, ck)
    };
    let full = dir.path().join("full");
    let whole = run(with_ema(), &fixture(), &d, &opts(&full, 4, false)).unwrap();
    let parts = dir.path().join("parts");
    run(with_ema(), &fixture(), &d, &opts(&parts, 2, false)).unwrap();
    run(with_ema(), &fixture(), &d, &opts(&parts, 4, true)).unwrap();
    let ((a, ck), (b, _)) = (ema_of("full"), ema_of("parts"));
    assert!(!a.is_empty() && ck.has_ema());
    assert_eq!(a.len(), b.len());
    for ((k, x), (_, y)) in a.iter().zip(&b) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{k}: the resumed average differs by {diff}");
    }
    // the average lags the weights: it is not a copy of them
    let vm = whole.varmap.data().lock().unwrap();
    let lag = a
        .iter()
        .map(|(k, x)| {
            let w = vm[&k["ema/".len()..]]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            x.iter()
                .zip(&w)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max);
    assert!(lag > 1e-5, "the average equals the weights ({lag})");
    drop(vm);
    // from a run without an average: it starts at the source's weights, then lags them
    let plain = dir.path().join("plain");
    run(config(), &fixture(), &d, &opts(&plain, 2, false)).unwrap();
    let mut o = opts(&dir.path().join("from"), 3, false);
    o.from = Some(plain.clone());
    let t = run(with_ema(), &fixture(), &d, &o).unwrap();
    let (avg, ck) = ema_of("from");
    assert_eq!((ck.step, ck.config.ema), (3, 0.5));
    assert_eq!(avg.len(), a.len());
    let src = ign_train::train::checkpoint::load(&plain.join("checkpoint.safetensors")).unwrap();
    assert!(!src.has_ema());
    // one step at decay 0.5: the average is halfway between the source's and the new weights
    let vm = t.varmap.data().lock().unwrap();
    for (k, x) in &avg {
        let name = &k["ema/".len()..];
        let w0 = src.tensors[&format!("model/{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let w1 = vm[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for ((p, a0), a1) in x.iter().zip(&w0).zip(&w1) {
            assert!((p - 0.5 * (a0 + a1)).abs() <= 1e-6, "{name}");
        }
    }
}

/// `--from` keeps the source's batch size unless `--batch` is given (the paper's 256 from a
/// batch-64 state): then the new size is saved and trained with.
#[test]
fn a_run_started_from_another_keeps_its_batch_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let d = DataOptions::default();
    run(config(), &fixture(), &d, &opts(&src, 2, false)).unwrap();
    let from = |name: &str, batch: Option<usize>| {
        let mut o = opts(&dir.path().join(name), 3, false);
        o.from = Some(src.clone());
        o.from_batch = batch;
        let mut c = config();
        c.batch = 64; // what the command line's default would say
        let t = run(c, &fixture(), &d, &o).unwrap();
        let path = dir.path().join(name).join("checkpoint.safetensors");
        (
            t,
            ign_train::train::checkpoint::load(&path)
                .unwrap()
                .config
                .batch,
        )
    };
    let (kept, kept_batch) = from("kept", None);
    assert_eq!(kept_batch, 8);
    let (bigger, bigger_batch) = from("bigger", Some(32));
    assert_eq!(bigger_batch, 32);
    assert!(
        max_weight_diff(&kept, &bigger) > 1e-6,
        "a batch of 32 trained the same as 8"
    );
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

    let max = max_weight_diff(&full, &resumed);
    let moved: f32 = full
        .varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.ends_with("conv.weight"))
        .map(|(_, v)| {
            v.as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum();
    assert!(max <= 1e-6, "resumed weights differ by {max}");
    assert!(moved > 0.0);
    // the log has one line per step, across both invocations
    let log = std::fs::read_to_string(b.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 4, "{log}");
}
