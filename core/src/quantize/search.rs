//! The int8 search: the float graph the int8 pass starts from, the range method of each tensor
//! that gives the best held-out fidelity, and the int8 file built from them (the fidelity floor
//! of the fused scheme is `floor`).

use anyhow::{bail, Context, Result};
use prost::Message;
use std::path::Path;
use tract_onnx::pb;

use super::calib::{self, CalibSet, RangeMethod};
use super::floor::{FloorInputs, PsnrOn};
use super::report::Candidate;
use super::{
    deconv, dense, equalize, fidelity, int8, load_variant, set_metadata, QuantizeOptions, Variant,
};
use crate::backend::{cpu::CpuBackend, Backend};
use crate::model::{metadata::keys, Model};

/// The float graph the int8 pass starts from: dense layers (they include the 1x1 → 4x4
/// ConvTranspose), then the sub-pixel rewrite of the other transposed convolutions; checked
/// on the held-out images against the original (`want`): returns the largest difference and
/// the dense products' output tensors.
fn float_rewrites(
    path: &Path,
    model: &Model,
    float: &mut pb::ModelProto,
    set: &CalibSet,
    held: &crate::tensor::ImageBatch,
    want: &crate::tensor::ImageBatch,
    scheme: int8::Scheme,
) -> Result<(Option<f64>, Vec<String>)> {
    let shapes = calib::shapes(
        float,
        &dense::conv_inputs(float),
        &set.held_noise,
        model.info.fixed_batch,
    )?;
    let form = match scheme {
        int8::Scheme::Fused => dense::DenseForm::Conv1x1,
        _ => dense::DenseForm::MatMul,
    };
    let dense_layers = dense::rewrite_dense(float, &shapes, form)?;
    let mut rewritten = dense_layers.len()
        + deconv::rewrite_conv_transpose(float).with_context(|| path.display().to_string())?;
    if scheme == int8::Scheme::Fused {
        // One weight scale per tensor: even out the channels' ranges first.
        rewritten += equalize::equalize(float)?;
    }
    if rewritten == 0 {
        return Ok((None, dense_layers));
    }
    let m = load_variant(path, &float.encode_to_vec())?;
    let err = want.max_abs_diff(&Backend::run(&mut CpuBackend::new(&m, None)?, held)?) as f64;
    if err > 1e-4 {
        bail!(
            "{}: the float rewrites (ConvTranspose, dense layers, equalization) changed the output by {err} (a bug: please report it)",
            path.display()
        );
    }
    Ok((Some(err), dense_layers))
}

/// The int8 file of the fp32 `model` (`proto`): the float rewrites, the best range method of
/// all tensors, then of each tensor, then the fused scheme's fidelity floor.
pub(super) fn int8_variant(
    path: &Path,
    out_path: &Path,
    model: &Model,
    proto: &pb::ModelProto,
    opts: &QuantizeOptions,
) -> Result<Variant> {
    let mut float = proto.clone();
    let set = calib::build(model, opts.calib.as_deref(), opts.sizes)?;
    // fp32 on the held-out images: proves the rewrite, then judges each range method.
    let held = held_all(&set)?;
    let want = Backend::run(&mut CpuBackend::new(model, None)?, &held)?;
    let (rewrite_err, dense) =
        float_rewrites(path, model, &mut float, &set, &held, &want, opts.scheme)?;
    let tensors = int8::calibration_tensors(&float);
    let values = calib::observe(&float, &tensors, &set.fit, model.info.fixed_batch)?;
    let build_with = |choice: &[RangeMethod], floats: &[String]| {
        build_int8(
            &float,
            (&tensors, &values),
            choice,
            floats,
            opts.scheme,
            &set,
        )
    };
    let build = |choice: &[RangeMethod]| build_with(choice, &dense);
    let psnr_on =
        |bytes: &[u8], x: &crate::tensor::ImageBatch, want: &crate::tensor::ImageBatch| {
            let qm = load_variant(out_path, bytes)?;
            let got = Backend::run(&mut CpuBackend::new(&qm, None)?, x)?;
            anyhow::Ok(fidelity::psnr(&want.data, &got.data))
        };
    let (mut chosen, mut candidates) = try_methods(
        &opts.methods,
        tensors.len(),
        (&held, &want),
        &build,
        &psnr_on,
    )?;
    if opts.methods.len() > 1 {
        let (c, candidate) = refine_per_tensor(
            chosen,
            &opts.methods,
            &set,
            model,
            (&held, &want),
            &build,
            &psnr_on,
        )?;
        chosen = c;
        candidates.extend(candidate);
    }
    let Chosen {
        mut bytes,
        choice,
        mut summary,
        ..
    } = chosen;
    let mut floor_method = None;
    if opts.scheme == int8::Scheme::Fused && opts.min_psnr_db > 0.0 {
        let floor = FloorInputs {
            path,
            set: &set,
            model,
            float: &float,
            dense: &dense,
            floor: opts.min_psnr_db,
        };
        let built = with_floor(&floor, (&bytes, &choice), &build_with, &psnr_on)?;
        if let Some((qb, s, method)) = built {
            candidates.push(Candidate {
                method: method.clone(),
                psnr_f_db: psnr_on(&qb, &held, &want)?,
            });
            (bytes, summary, floor_method) = (qb, s, Some(method));
        }
    }
    Ok(Variant {
        bytes,
        calibration: Some(set.description.clone()),
        method: Some(floor_method.unwrap_or_else(|| describe(&choice))),
        candidates,
        rewrite_err,
        summary: Some(summary),
        set,
    })
}

/// Each of `methods` for all `n` tensors, judged on the held-out images: the best (the first
/// of equals), and every one's PSNR for the report.
fn try_methods(
    methods: &[RangeMethod],
    n: usize,
    (held, want): (&crate::tensor::ImageBatch, &crate::tensor::ImageBatch),
    build: &Build<'_>,
    psnr_on: &PsnrOn<'_>,
) -> Result<(Chosen, Vec<Candidate>)> {
    let mut candidates = Vec::new();
    let mut best: Option<(f64, Vec<u8>, Vec<RangeMethod>, int8::Int8Summary)> = None;
    for &m in methods {
        let choice = vec![m; n];
        let (qb, summary) = build(&choice)?;
        let p = psnr_on(&qb, held, want)?;
        candidates.push(Candidate {
            method: m.to_string(),
            psnr_f_db: p,
        });
        if best.as_ref().is_none_or(|b| p > b.0) {
            best = Some((p, qb, choice, summary));
        }
    }
    let (p, bytes, choice, summary) = best.context("no range method given")?;
    let chosen = Chosen {
        psnr: p,
        bytes,
        choice,
        summary,
    };
    Ok((chosen, candidates))
}

type BuildWith<'b> = dyn Fn(&[RangeMethod], &[String]) -> Result<(Vec<u8>, int8::Int8Summary)> + 'b;

/// The fidelity floor ([`FloorInputs::floats`]) on the file `bytes` ranged by `choice`: when
/// it moves convs to float beyond the dense layers, the file with them (built by
/// `build_with`), its summary and its method for the report.
fn with_floor(
    floor: &FloorInputs<'_>,
    (bytes, choice): (&[u8], &[RangeMethod]),
    build_with: &BuildWith<'_>,
    psnr_on: &PsnrOn<'_>,
) -> Result<Option<(Vec<u8>, int8::Int8Summary, String)>> {
    let build = |floats: &[String]| build_with(choice, floats).map(|(b, _)| b);
    let floats = floor.floats(bytes, &build, psnr_on)?;
    if floats.len() <= floor.dense.len() {
        return Ok(None);
    }
    let (qb, mut s) = build_with(choice, &floats)?;
    for f in s.in_float.iter_mut() {
        if floats[floor.dense.len()..].contains(&f.conv) {
            f.why = int8::FloatReason::FidelityFloor;
        }
    }
    let added: Vec<&str> = floats[floor.dense.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    let method = format!(
        "{}, {} in float for the {} dB floor",
        describe(choice),
        added.join(", "),
        floor.floor
    );
    Ok(Some((qb, s, method)))
}

/// its method in `choice`, and `floats` computing in float.
fn build_int8(
    float: &pb::ModelProto,
    (tensors, values): (&[String], &[Vec<f32>]),
    choice: &[RangeMethod],
    floats: &[String],
    scheme: int8::Scheme,
    set: &CalibSet,
) -> Result<(Vec<u8>, int8::Int8Summary)> {
    let ranges: int8::Ranges = tensors
        .iter()
        .zip(values)
        .zip(choice)
        .map(|((t, v), m)| (t.clone(), m.range(v)))
        .collect();
    let (mut q, summary) = int8::quantize(float, &ranges, scheme, floats)?;
    set_metadata(&mut q, keys::PRECISION, "int8");
    set_metadata(
        &mut q,
        "ign.quantization",
        &format!(
            "int8 {:?}, activations by {}; calibration: {}",
            scheme,
            describe(choice),
            set.description
        ),
    );
    q.producer_name = "ign-edge quantize".into();
    Ok((q.encode_to_vec(), summary))
}

/// The int8 file chosen so far, and its held-out PSNR.
struct Chosen {
    psnr: f64,
    bytes: Vec<u8>,
    choice: Vec<RangeMethod>,
    summary: int8::Int8Summary,
}

type Build<'b> = dyn Fn(&[RangeMethod]) -> Result<(Vec<u8>, int8::Int8Summary)> + 'b;

/// Each tensor's own range method after the global choice ([`refine`]), judged on part of the
/// fitting images (the held-out images only judge the result): the better of the two, and the
/// refined candidate for the report when it differs.
fn refine_per_tensor(
    chosen: Chosen,
    methods: &[RangeMethod],
    set: &CalibSet,
    model: &Model,
    (held, want): (&crate::tensor::ImageBatch, &crate::tensor::ImageBatch),
    build: &Build<'_>,
    psnr_on: &PsnrOn<'_>,
) -> Result<(Chosen, Option<Candidate>)> {
    let sel = selection(&set.fit, 96)?;
    let sel_want = Backend::run(&mut CpuBackend::new(model, None)?, &sel)?;
    let (refined, tried) = refine(&chosen.choice, methods, REFINE_BUDGET, |c| {
        psnr_on(&build(c)?.0, &sel, &sel_want)
    })?;
    if tried < chosen.choice.len() {
        log::warn!(
            "per-tensor range refinement stopped after {} s: {tried} of {} tensors tried",
            REFINE_BUDGET.as_secs(),
            chosen.choice.len()
        );
    }
    if refined == chosen.choice {
        return Ok((chosen, None));
    }
    let (qb, s) = build(&refined)?;
    let rp = psnr_on(&qb, held, want)?;
    let candidate = Candidate {
        method: describe(&refined),
        psnr_f_db: rp,
    };
    let better = rp > chosen.psnr;
    Ok((
        if better {
            Chosen {
                psnr: rp,
                bytes: qb,
                choice: refined,
                summary: s,
            }
        } else {
            chosen
        },
        Some(candidate),
    ))
}

/// `percentile 99.99`, or `percentile 99.99, minmax for 2 of 14 tensors` when they differ.
fn describe(choice: &[RangeMethod]) -> String {
    let first = choice.first().map(|m| m.to_string()).unwrap_or_default();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for m in choice {
        let s = m.to_string();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut out = counts.first().map(|c| c.0.clone()).unwrap_or(first);
    for (m, n) in counts.iter().skip(1) {
        out.push_str(&format!(", {m} for {n} of {} tensors", choice.len()));
    }
    out
}

/// Every `len / n`-th image of `fit` (at most `n`): a spread over its real images, noise and
/// f(noise).
pub(super) fn selection(
    fit: &crate::tensor::ImageBatch,
    n: usize,
) -> Result<crate::tensor::ImageBatch> {
    let step = fit.len().div_ceil(n).max(1);
    let parts: Vec<_> = (0..fit.len())
        .step_by(step)
        .map(|i| fit.slice(i, i + 1))
        .collect();
    crate::tensor::ImageBatch::concat(&parts)
}

/// How long the per-tensor range refinement may take (a large model needs seconds per try).
const REFINE_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// Greedy per-tensor range methods: for each tensor in turn, the method among `methods` that
/// scores best with the others fixed (`score`: higher is better), kept only when it gains
/// more than 0.01; tensors are tried until `budget` runs out. Returns the choice and how many
/// tensors were tried.
fn refine(
    start: &[RangeMethod],
    methods: &[RangeMethod],
    budget: std::time::Duration,
    mut score: impl FnMut(&[RangeMethod]) -> Result<f64>,
) -> Result<(Vec<RangeMethod>, usize)> {
    let t0 = std::time::Instant::now();
    let mut choice = start.to_vec();
    let mut best = score(&choice)?;
    for i in 0..choice.len() {
        if t0.elapsed() > budget {
            return Ok((choice, i));
        }
        for &m in methods {
            if m == choice[i] {
                continue;
            }
            let mut c = choice.clone();
            c[i] = m;
            let sc = score(&c)?;
            if sc > best + 0.01 {
                (best, choice) = (sc, c);
            }
        }
    }
    let n = choice.len();
    Ok((choice, n))
}

/// The held-out images: the real ones (when there are any), then the noise.
fn held_all(set: &CalibSet) -> Result<crate::tensor::ImageBatch> {
    let mut parts = vec![];
    if let Some(r) = &set.held_real {
        parts.push(r.clone());
    }
    parts.push(set.held_noise.clone());
    crate::tensor::ImageBatch::concat(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refine_takes_each_tensors_best_method_and_stops_on_its_budget() {
        let (a, b) = (RangeMethod::MinMax, RangeMethod::Percentile(99.9));
        // Tensor 1 scores better with `b`, the others with `a`.
        let score = |c: &[RangeMethod]| {
            Ok(c.iter()
                .enumerate()
                .map(|(i, m)| if (i == 1) == (*m == b) { 1.0 } else { 0.0 })
                .sum::<f64>())
        };
        let (choice, tried) = refine(&[a, a, a], &[a, b], Duration::from_secs(60), score).unwrap();
        assert_eq!((choice, tried), (vec![a, b, a], 3));
        // No time left: nothing tried, the start kept.
        let (choice, tried) = refine(&[a, a, a], &[a, b], Duration::ZERO, score).unwrap();
        assert_eq!((choice, tried), (vec![a, a, a], 0));
        assert_eq!(
            describe(&[a, b, a]),
            "minmax, percentile 99.9 for 1 of 3 tensors"
        );
    }
}
