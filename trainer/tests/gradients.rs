//! The stop-gradients of the IGN objective, checked against finite differences in f64.
//!
//! Autograd on `ign_loss` (with the frozen copy and the detached `f(z)`) must equal the
//! derivative of the surrogate in which every stop-gradient quantity is held at its current
//! value: `f_frozen` keeps the weights θ0, and `f_z = f_θ0(z)`.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ign_train::model::{Ign, ModelConfig, Norm};
use ign_train::train::loss::{clamp_tight, distance_per_sample, ign_loss, Distance, LossConfig};
use ign_train::train::{frozen_copy, init_weights};
use std::collections::HashMap;

fn tiny(norm: Norm) -> ModelConfig {
    ModelConfig {
        channels: 1,
        image_size: 28,
        width: 2,
        norm,
    }
}

fn rand_tensor(n: usize, seed: u64, scale: f64) -> Tensor {
    let mut s = seed;
    let v: Vec<f64> = (0..n * 28 * 28)
        .map(|_| {
            s = ign_train::data::mix(s, 1, 3);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, (n, 1, 28, 28), &Device::Cpu).unwrap()
}

/// The surrogate loss at the live weights of `live`, with stop-gradient parts from `fixed`.
fn surrogate(live: &Ign, fixed: &Ign, x: &Tensor, z: &Tensor, cfg: &LossConfig) -> f64 {
    let d = cfg.distance;
    let fx = live.forward_t(x, true).unwrap();
    let fz = live.forward_t(z, true).unwrap();
    let f_z = fixed.forward_t(z, true).unwrap();
    let ff_z = live.forward_t(&f_z, true).unwrap();
    let f_fz = fixed.forward_t(&fz, true).unwrap();
    let rec = distance_per_sample(&fx, x, d).unwrap();
    let idem = distance_per_sample(&f_fz, &fz, d)
        .unwrap()
        .mean_all()
        .unwrap();
    let tight = clamp_tight(
        &distance_per_sample(&ff_z, &f_z, d).unwrap().neg().unwrap(),
        &rec,
        cfg.tight_clamp,
    )
    .unwrap()
    .mean_all()
    .unwrap();
    let total = ((rec.mean_all().unwrap() * cfg.lambda_rec).unwrap()
        + (idem * cfg.lambda_idem).unwrap()
        + (tight * cfg.lambda_tight).unwrap())
    .unwrap();
    total.to_scalar::<f64>().unwrap()
}

fn set_elem(var: &Var, i: usize, value: f64) {
    let shape = var.shape().clone();
    let mut v = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    v[i] = value;
    var.set(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
        .unwrap();
}

fn get_elem(t: &Tensor, i: usize) -> f64 {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()[i]
}

/// L2 is smooth, so central differences are exact to rounding: a tight tolerance.
#[test]
fn autograd_matches_finite_differences_with_l2() {
    let cfg = LossConfig {
        distance: Distance::L2,
        ..LossConfig::default()
    };
    check(&cfg, 1e-6, 1e-5, Norm::Batch);
}

/// LayerNorm (the default) runs as the fused norm-activation op: its hand-written backward
/// pass must give the same gradients as finite differences.
#[test]
fn fused_layer_norm_gradients_match_finite_differences() {
    let cfg = LossConfig {
        distance: Distance::L2,
        ..LossConfig::default()
    };
    check(&cfg, 1e-6, 1e-5, Norm::Layer);
}

/// InstanceNorm runs through the same fused op with one group per channel.
#[test]
fn fused_instance_norm_gradients_match_finite_differences() {
    let cfg = LossConfig {
        distance: Distance::L2,
        ..LossConfig::default()
    };
    check(&cfg, 1e-6, 1e-5, Norm::Instance);
}

/// L1 (the default) has kinks where f(f(z)) = f(z) pixel-wise; a small step keeps clear of them.
#[test]
fn autograd_matches_finite_differences_with_l1() {
    check(&LossConfig::default(), 1e-8, 1e-4, Norm::Batch);
}

fn check(cfg: &LossConfig, eps: f64, tol: f64, norm: Norm) {
    let norm_name = if norm == Norm::Batch { "bn" } else { "ln" };
    let cfg = cfg.clone();
    let varmap = VarMap::new();
    let model = Ign::new(
        &tiny(norm),
        VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu),
    )
    .unwrap();
    init_weights(&varmap, 5).unwrap();
    // larger weights than the DCGAN init so that every term has a sizeable gradient
    for v in varmap.all_vars() {
        let scaled = (v.as_tensor() * 4.0).unwrap();
        v.set(&scaled).unwrap();
    }
    let frozen = frozen_copy(&varmap, &tiny(norm)).unwrap();
    let x = rand_tensor(4, 1, 1.0);
    let z = rand_tensor(4, 2, 1.5);

    let (loss, _) = ign_loss(&model, &frozen, &x, &z, &cfg).unwrap();
    let grads = loss.backward().unwrap();

    // the naive loss: no frozen copy, gradient through both applications of f
    let naive = {
        let fx = model.forward_t(&x, true).unwrap();
        let fz = model.forward_t(&z, true).unwrap();
        let ffz = model.forward_t(&fz, true).unwrap();
        let rec = distance_per_sample(&fx, &x, cfg.distance).unwrap();
        let dd = distance_per_sample(&ffz, &fz, cfg.distance).unwrap();
        let tight = clamp_tight(&dd.neg().unwrap(), &rec, cfg.tight_clamp)
            .unwrap()
            .mean_all()
            .unwrap();
        ((rec.mean_all().unwrap() * cfg.lambda_rec).unwrap()
            + (dd.mean_all().unwrap() * cfg.lambda_idem).unwrap()
            + (tight * cfg.lambda_tight).unwrap())
        .unwrap()
    };
    let naive_grads = naive.backward().unwrap();

    let vars: HashMap<String, Var> = varmap.data().lock().unwrap().clone();
    let checks = [
        ("enc.0.conv.weight", 3),
        ("enc.1.conv.weight", 17),
        ("enc.1.NORM.weight", 1),
        ("enc.3.conv.bias", 2),
        ("dec.0.conv.weight", 40),
        ("dec.1.NORM.bias", 0),
        ("dec.3.conv.weight", 5),
        ("dec.3.conv.bias", 0),
    ];
    let mut max_naive_rel = 0f64;
    for (name, i) in checks {
        let name = name.replace("NORM", norm_name);
        let name = name.as_str();
        let var = &vars[name];
        let analytic = get_elem(grads.get(var.as_tensor()).expect(name), i);
        let naive_g = get_elem(naive_grads.get(var.as_tensor()).unwrap(), i);
        let theta0 = get_elem(var.as_tensor(), i);
        // stop-gradient parts frozen at theta0: an independent copy of all weights
        let fixed_map: HashMap<String, Tensor> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        let fixed = Ign::new(
            &tiny(norm),
            VarBuilder::from_tensors(fixed_map, DType::F64, &Device::Cpu),
        )
        .unwrap();
        set_elem(var, i, theta0 + eps);
        let up = surrogate(&model, &fixed, &x, &z, &cfg);
        set_elem(var, i, theta0 - eps);
        let down = surrogate(&model, &fixed, &x, &z, &cfg);
        set_elem(var, i, theta0);
        let numeric = (up - down) / (2.0 * eps);
        let rel = (analytic - numeric).abs() / numeric.abs().max(1e-3);
        assert!(
            rel < tol,
            "{name}[{i}]: autograd {analytic:.8e}, finite differences {numeric:.8e} (rel {rel:.2e})"
        );
        max_naive_rel = max_naive_rel.max((naive_g - numeric).abs() / numeric.abs().max(1e-3));
    }
    // Without the frozen copy and the detach the gradients are different: the check can fail.
    assert!(
        max_naive_rel > 1e-2,
        "the naive gradient should differ, max rel {max_naive_rel}"
    );
}

/// `--z-tight noise`: the tightness term over the first `k` z only equals, sample for sample,
/// the term of a batch of just those z (LayerNorm: samples do not see each other), and its
/// gradient with respect to the other z is zero.
#[test]
fn tightness_over_the_noise_part_only() {
    use ign_train::train::loss::ign_loss_tight_on;
    let varmap = VarMap::new();
    let cfg = tiny(Norm::Layer);
    let model = Ign::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu),
    )
    .unwrap();
    init_weights(&varmap, 9).unwrap();
    for v in varmap.all_vars() {
        v.set(&(v.as_tensor() * 4.0).unwrap()).unwrap();
    }
    let frozen = frozen_copy(&varmap, &cfg).unwrap();
    let x = rand_tensor(4, 3, 1.0);
    let z = rand_tensor(4, 4, 1.5);
    let loss_cfg = LossConfig::default();
    let (_, part) = ign_loss_tight_on(&model, &frozen, &x, &z, &loss_cfg, 2).unwrap();
    let (_, alone) = ign_loss_tight_on(
        &model,
        &frozen,
        &x.narrow(0, 0, 2).unwrap(),
        &z.narrow(0, 0, 2).unwrap(),
        &loss_cfg,
        2,
    )
    .unwrap();
    let (_, all) = ign_loss_tight_on(&model, &frozen, &x, &z, &loss_cfg, 4).unwrap();
    assert!(
        (part.tight - alone.tight).abs() < 1e-6,
        "{part:?} {alone:?}"
    );
    assert!(
        (part.tight - all.tight).abs() > 1e-6,
        "the other z changed nothing: {all:?}"
    );
    // with k = 0 there is no tightness at all
    let (_, none) = ign_loss_tight_on(&model, &frozen, &x, &z, &loss_cfg, 0).unwrap();
    assert_eq!(none.tight, 0.0);
    assert!((none.idem - all.idem).abs() < 1e-9 && (none.rec - all.rec).abs() < 1e-9);
}

/// A tiny BatchNorm model in f64 initialised from `seed`, its variables and its frozen copy.
fn batch_norm_model(seed: u64) -> (VarMap, Ign, Ign) {
    let varmap = VarMap::new();
    let cfg = tiny(Norm::Batch);
    let model = Ign::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu),
    )
    .unwrap();
    init_weights(&varmap, seed).unwrap();
    let frozen = frozen_copy(&varmap, &cfg).unwrap();
    (varmap, model, frozen)
}

/// `--z-bn separate`: the noise and the other z go through f as two batches, so the
/// idempotence term of the whole batch is the size-weighted mean of the terms of each part
/// alone (with BatchNorm, one shared batch gives another value).
#[test]
fn separate_batch_norm_treats_each_part_as_its_own_batch() {
    use ign_train::train::loss::{ign_loss_planned, ZPlan};
    let (_varmap, model, frozen) = batch_norm_model(13);
    let x = rand_tensor(6, 5, 1.0);
    // noise, then digits-like inputs of another scale
    let z = Tensor::cat(&[&rand_tensor(4, 6, 1.5), &rand_tensor(2, 7, 0.3)], 0).unwrap();
    let loss_cfg = LossConfig::default();
    let plan = |bn_split| ZPlan {
        tight_samples: 6,
        bn_split,
        restore: None,
    };
    let idem = |z: &Tensor, bn_split| {
        ign_loss_planned(&model, &frozen, &x, z, &loss_cfg, plan(bn_split))
            .unwrap()
            .1
            .idem as f64
    };
    let split = idem(&z, Some(4));
    let a = idem(&z.narrow(0, 0, 4).unwrap(), None);
    let b = idem(&z.narrow(0, 4, 2).unwrap(), None);
    let weighted = (4.0 * a + 2.0 * b) / 6.0;
    assert!((split - weighted).abs() < 1e-6, "{split} vs {weighted}");
    let shared = idem(&z, None);
    assert!(
        (shared - split).abs() > 1e-6,
        "one batch gave the same: {shared}"
    );
}

/// `--lambda-restore`: the term is `D(f(z_c), x_c)` over the corrupted part of z (f on that part
/// as its own BatchNorm batch with `--z-bn separate`), it adds `λ·D` to the total, and its
/// gradient reaches the weights through that f (checked against finite differences).
#[test]
fn restoration_term_pulls_f_of_the_corrupted_z_to_their_sources() {
    use ign_train::train::loss::{ign_loss_planned, Restore, ZPlan};
    let (varmap, model, frozen) = batch_norm_model(17);
    let x = rand_tensor(6, 21, 1.0);
    let z = Tensor::cat(&[&rand_tensor(4, 22, 1.5), &rand_tensor(2, 23, 0.5)], 0).unwrap();
    let targets = rand_tensor(2, 24, 1.0);
    let plan = || ZPlan {
        tight_samples: 4,
        bn_split: Some(4),
        restore: Some(Restore {
            start: 4,
            targets: targets.clone(),
        }),
    };
    let with = |lambda_restore| LossConfig {
        distance: Distance::L2,
        lambda_restore,
        ..LossConfig::default()
    };
    let (on, on_terms) = ign_loss_planned(&model, &frozen, &x, &z, &with(20.0), plan()).unwrap();
    let (off, off_terms) = ign_loss_planned(&model, &frozen, &x, &z, &with(0.0), plan()).unwrap();
    let restore_of = |f: &Ign| {
        let out = f.forward_t(&z.narrow(0, 4, 2).unwrap(), true).unwrap();
        distance_per_sample(&out, &targets, Distance::L2)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let direct = restore_of(&model);
    assert!(direct > 0.01, "an untrained f restores nothing: {direct}");
    assert!((on_terms.restore as f64 - direct).abs() < 1e-5 * direct);
    assert_eq!(off_terms.restore, 0.0);
    let gap = (on_terms.total - off_terms.total) as f64;
    assert!(
        (gap - 20.0 * direct).abs() < 1e-4 * gap,
        "{gap} vs {direct}"
    );

    // d(on - off)/dθ = 20 · dD/dθ, through f (not a detached copy)
    let (g_on, g_off) = (on.backward().unwrap(), off.backward().unwrap());
    let data = varmap.data().lock().unwrap().clone();
    let var = &data["enc.0.conv.weight"];
    let diff = (g_on.get(var.as_tensor()).unwrap() - g_off.get(var.as_tensor()).unwrap()).unwrap();
    let (i, h) = (3, 1e-6);
    let v0 = get_elem(var.as_tensor(), i);
    set_elem(var, i, v0 + h);
    let up = restore_of(&model);
    set_elem(var, i, v0 - h);
    let down = restore_of(&model);
    set_elem(var, i, v0);
    let fd = 20.0 * (up - down) / (2.0 * h);
    let ad = get_elem(&diff, i);
    assert!(
        fd.abs() > 1e-6,
        "the restoration term does not depend on this weight"
    );
    assert!(
        (ad - fd).abs() < 1e-4 * fd.abs().max(1e-3),
        "autograd {ad} vs finite differences {fd}"
    );
}
