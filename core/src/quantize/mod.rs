//! `ign-edge quantize`: fp32 ONNX → fp16 or int8 ONNX, in Rust, with a fidelity report.
//!
//! - [`deconv`]: `ConvTranspose` → `Conv` + `DepthToSpace` (+ `Slice`), exact in fp32, so that
//!   every layer can run on integer kernels;
//! - [`fp16`]: weights stored as half floats;
//! - [`calib`]: calibration set and activation statistics;
//! - [`int8`]: QLinearConv graph from the ranges;
//! - [`fidelity`]: PSNR, errors, idempotence gap and latency against fp32.
//!
//! The output is deterministic: the same model and data give a byte-identical file.

pub mod calib;
pub mod deconv;
pub mod dense;
pub mod equalize;
pub mod fidelity;
pub mod fp16;
pub mod fused;
pub mod graph;
pub mod int8;
pub mod layernorm;

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tract_onnx::pb;

use crate::backend::{cpu::CpuBackend, Backend};
use crate::model::{metadata::keys, Model, ModelError, Precision};
use calib::{CalibSet, CalibSizes, RangeMethod};
use fidelity::SetFidelity;

/// What to make and from which data.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub precision: Precision,
    /// Calibration data spec (IDX file, image folder, `.npy`, `noise:<N>`); int8 only.
    pub calib: Option<String>,
    pub sizes: CalibSizes,
    /// Range methods tried for int8; the best on held-out data wins.
    pub methods: Vec<RangeMethod>,
    /// Batch-1 runs per model for the latency comparison.
    pub latency_runs: usize,
    /// Measure the fidelity report (skipped for conversions on the fly).
    pub measure: bool,
    /// The integer convolution operator.
    pub scheme: int8::Scheme,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            precision: Precision::Int8,
            calib: None,
            sizes: CalibSizes::default(),
            methods: vec![
                RangeMethod::MinMax,
                RangeMethod::Percentile(99.99),
                RangeMethod::Percentile(99.9),
            ],
            latency_runs: 200,
            measure: true,
            scheme: int8::Scheme::default(),
        }
    }
}

/// One int8 range method tried, and its held-out fidelity.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub method: String,
    /// Mean PSNR of `f` over the held-out real images and noise.
    pub psnr_f_db: f64,
}

/// The fidelity report (`--report`, and the printed table).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: PathBuf,
    pub precision: Precision,
    /// What the runtime's arithmetic is on this machine (fp16 runs as fp32 without asimdhp).
    pub arithmetic: String,
    pub file_bytes: u64,
    pub fp32_file_bytes: u64,
    pub size_ratio: f64,
    pub calibration: Option<String>,
    pub method: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Largest difference between the original float graph and the one with every
    /// ConvTranspose rewritten as Conv + DepthToSpace (int8 only).
    pub rewrite_max_abs_error: Option<f64>,
    pub int8: Option<int8::Int8Summary>,
    /// Fidelity on held-out real images (when the calibration data has real images).
    pub real: Option<SetFidelity>,
    /// Fidelity on held-out Gaussian noise.
    pub noise: SetFidelity,
    /// Batch-1 median latency (µs), same run, alternating blocks.
    pub latency_p50_us: f64,
    pub fp32_latency_p50_us: f64,
    pub latency_ratio: f64,
    /// Numerics measured with fp16 arithmetic (emulated on CPUs without it).
    pub fidelity_arithmetic: String,
}

/// The quantized model and its report (when measured).
pub struct Quantized {
    pub bytes: Vec<u8>,
    pub report: Option<Report>,
}

fn set_metadata(proto: &mut pb::ModelProto, key: &str, value: &str) {
    match proto.metadata_props.iter_mut().find(|e| e.key == key) {
        Some(e) => e.value = value.to_string(),
        None => proto.metadata_props.push(pb::StringStringEntryProto {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

fn load_variant(path: &Path, bytes: &[u8]) -> Result<Model> {
    Model::from_bytes(path, bytes)
        .context("the quantized model does not load back (a bug: please report it)")
}

/// Quantize the fp32 model at `path` (see the module docs).
pub fn quantize(path: &Path, opts: &QuantizeOptions) -> Result<Quantized> {
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow!(ModelError(format!(
            "{}: cannot read model file: {e}",
            path.display()
        )))
    })?;
    quantize_bytes(path, &bytes, opts)
}

/// [`quantize`] for a model already in memory (`path` names it in messages).
pub fn quantize_bytes(path: &Path, bytes: &[u8], opts: &QuantizeOptions) -> Result<Quantized> {
    let model = Model::from_bytes(path, bytes)?;
    if model.info.precision != Precision::Fp32 {
        bail!(ModelError(format!(
            "{}: already {} (ign.precision); quantize the fp32 model instead",
            path.display(),
            model.info.precision
        )));
    }
    let proto = pb::ModelProto::decode(bytes).context("decode")?;
    let out_path = path.with_extension(format!("{}.onnx", opts.precision));
    let v = match opts.precision {
        Precision::Fp32 => bail!("--precision fp32: the model already is fp32; pick fp16 or int8"),
        Precision::Fp16 => fp16_variant(path, &model, &proto, opts)?,
        Precision::Int8 => int8_variant(path, &out_path, &model, &proto, opts)?,
    };
    if !opts.measure {
        return Ok(Quantized {
            bytes: v.bytes,
            report: None,
        });
    }
    let variant = load_variant(&out_path, &v.bytes)?;
    let report = measure(
        &model,
        &variant,
        &v.set,
        opts,
        Measured {
            fp32_file_bytes: bytes.len() as u64,
            file_bytes: v.bytes.len() as u64,
            calibration: v.calibration,
            method: v.method,
            candidates: v.candidates,
            rewrite_err: v.rewrite_err,
            summary: v.summary,
        },
    )?;
    Ok(Quantized {
        bytes: v.bytes,
        report: Some(report),
    })
}

/// A variant file made, and how it was made (for the report).
struct Variant {
    bytes: Vec<u8>,
    /// The calibration data's description (int8).
    calibration: Option<String>,
    /// The range method chosen (int8).
    method: Option<String>,
    /// Every range method tried, with its PSNR (int8).
    candidates: Vec<Candidate>,
    /// How much the float rewrites (dense, sub-pixel) changed the output (int8).
    rewrite_err: Option<f64>,
    summary: Option<int8::Int8Summary>,
    /// The images the report measures on.
    set: CalibSet,
}

fn fp16_variant(
    path: &Path,
    model: &Model,
    proto: &pb::ModelProto,
    opts: &QuantizeOptions,
) -> Result<Variant> {
    let mut p = proto.clone();
    fp16::weights_to_fp16(&mut p).with_context(|| path.display().to_string())?;
    set_metadata(&mut p, keys::PRECISION, "fp16");
    p.producer_name = "ign-edge quantize".into();
    let set = calib::build(model, opts.calib.as_deref(), opts.sizes)?;
    Ok(Variant {
        bytes: p.encode_to_vec(),
        calibration: None,
        method: None,
        candidates: Vec::new(),
        rewrite_err: None,
        summary: None,
        set,
    })
}

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

fn int8_variant(
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
    let build = |choice: &[RangeMethod]| -> Result<(Vec<u8>, int8::Int8Summary)> {
        let ranges: int8::Ranges = tensors
            .iter()
            .zip(&values)
            .zip(choice)
            .map(|((t, v), m)| (t.clone(), m.range(v)))
            .collect();
        let (mut q, summary) = int8::quantize(&float, &ranges, opts.scheme, &dense)?;
        set_metadata(&mut q, keys::PRECISION, "int8");
        set_metadata(
            &mut q,
            "ign.quantization",
            &format!(
                "int8 {:?}, activations by {}; calibration: {}",
                opts.scheme,
                describe(choice),
                set.description
            ),
        );
        q.producer_name = "ign-edge quantize".into();
        Ok((q.encode_to_vec(), summary))
    };
    let psnr_on =
        |bytes: &[u8], x: &crate::tensor::ImageBatch, want: &crate::tensor::ImageBatch| {
            let qm = load_variant(out_path, bytes)?;
            let got = Backend::run(&mut CpuBackend::new(&qm, None)?, x)?;
            anyhow::Ok(fidelity::psnr(&want.data, &got.data))
        };
    let mut candidates = Vec::new();
    let mut best: Option<(f64, Vec<u8>, Vec<RangeMethod>, int8::Int8Summary)> = None;
    for &m in &opts.methods {
        let choice = vec![m; tensors.len()];
        let (qb, summary) = build(&choice)?;
        let p = psnr_on(&qb, &held, &want)?;
        candidates.push(Candidate {
            method: m.to_string(),
            psnr_f_db: p,
        });
        if best.as_ref().is_none_or(|b| p > b.0) {
            best = Some((p, qb, choice, summary));
        }
    }
    let (p, bytes, choice, summary) = best.context("no range method given")?;
    let (mut p, mut bytes, mut choice, mut summary) = (p, bytes, choice, summary);
    if opts.methods.len() > 1 {
        // Then each tensor's own method, judged on part of the fitting images (the held-out
        // images only judge the result).
        let sel = selection(&set.fit, 96)?;
        let sel_want = Backend::run(&mut CpuBackend::new(model, None)?, &sel)?;
        let (refined, tried) = refine(&choice, &opts.methods, REFINE_BUDGET, |c| {
            psnr_on(&build(c)?.0, &sel, &sel_want)
        })?;
        if tried < tensors.len() {
            log::info!(
                "notice: per-tensor range refinement stopped after {} s: {tried} of {} tensors tried",
                REFINE_BUDGET.as_secs(),
                tensors.len()
            );
        }
        if refined != choice {
            let (qb, s) = build(&refined)?;
            let rp = psnr_on(&qb, &held, &want)?;
            candidates.push(Candidate {
                method: describe(&refined),
                psnr_f_db: rp,
            });
            if rp > p {
                (p, bytes, choice, summary) = (rp, qb, refined, s);
            }
        }
    }
    let _ = p;
    Ok(Variant {
        bytes,
        calibration: Some(set.description.clone()),
        method: Some(describe(&choice)),
        candidates,
        rewrite_err,
        summary: Some(summary),
        set,
    })
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
fn selection(fit: &crate::tensor::ImageBatch, n: usize) -> Result<crate::tensor::ImageBatch> {
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

fn held_all(set: &CalibSet) -> Result<crate::tensor::ImageBatch> {
    let mut parts = vec![];
    if let Some(r) = &set.held_real {
        parts.push(r.clone());
    }
    parts.push(set.held_noise.clone());
    crate::tensor::ImageBatch::concat(&parts)
}

struct Measured {
    fp32_file_bytes: u64,
    file_bytes: u64,
    calibration: Option<String>,
    method: Option<String>,
    candidates: Vec<Candidate>,
    rewrite_err: Option<f64>,
    summary: Option<int8::Int8Summary>,
}

fn measure(
    model: &Model,
    variant: &Model,
    set: &CalibSet,
    opts: &QuantizeOptions,
    m: Measured,
) -> Result<Report> {
    let mut reference = CpuBackend::new(model, None)?;
    // Fidelity in the variant's own arithmetic (fp16 emulated where the CPU lacks it)...
    let half = variant.info.precision == Precision::Fp16;
    let mut exact = CpuBackend::with_arithmetic(variant, None, half)?;
    let real = match &set.held_real {
        Some(x) => Some(fidelity::compare_on(&mut reference, &mut exact, x)?),
        None => None,
    };
    let noise = fidelity::compare_on(&mut reference, &mut exact, &set.held_noise)?;
    // ...latency as the runtime will run it here.
    let mut runtime = CpuBackend::new(variant, None)?;
    let (fp32_us, us) = fidelity::latency_pair(
        &mut reference,
        &mut runtime,
        &set.held_noise,
        opts.latency_runs,
    )?;
    Ok(Report {
        model: model.info.path.clone(),
        precision: variant.info.precision,
        arithmetic: runtime.arithmetic().to_string(),
        file_bytes: m.file_bytes,
        fp32_file_bytes: m.fp32_file_bytes,
        size_ratio: m.file_bytes as f64 / m.fp32_file_bytes as f64,
        calibration: m.calibration,
        method: m.method,
        candidates: m.candidates,
        rewrite_max_abs_error: m.rewrite_err,
        int8: m.summary,
        real,
        noise,
        latency_p50_us: us,
        fp32_latency_p50_us: fp32_us,
        latency_ratio: us / fp32_us,
        fidelity_arithmetic: exact.arithmetic().to_string(),
    })
}

/// The report as an aligned table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
    s.push_str(&format!(
        "{} vs fp32 ({})\n",
        r.precision,
        r.model.display()
    ));
    if let Some(c) = &r.calibration {
        line(&mut s, "calibration", c.clone());
    }
    for c in &r.candidates {
        line(
            &mut s,
            &format!("range {}", c.method),
            format!("held-out PSNR f {:.2} dB", c.psnr_f_db),
        );
    }
    if let Some(m) = &r.method {
        line(&mut s, "chosen", m.clone());
    }
    if let Some(e) = r.rewrite_max_abs_error {
        line(&mut s, "deconv rewrite (fp32)", format!("max |Δ| {e:.2e}"));
    }
    if let Some(q) = &r.int8 {
        line(
            &mut s,
            "graph",
            format!(
                "{} integer convs, {} in float on int8 weights, {} Relu folded, {} Quantize / {} Dequantize",
                q.integer_convs, q.float_convs, q.folded_relus, q.quantize_nodes, q.dequantize_nodes
            ),
        );
    }
    s.push_str(&format!(
        "  {:<12} {:>7} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10}\n",
        "inputs", "images", "PSNR f", "PSNR f∘f", "max|Δ| f", "max|Δ| f∘f", "idem gap", "fp32 gap"
    ));
    let row = |s: &mut String, name: &str, f: &SetFidelity| {
        s.push_str(&format!(
            "  {:<12} {:>7} {:>7.2} dB {:>7.2} dB {:>11.4} {:>11.4} {:>10.4} {:>10.4}\n",
            name,
            f.images,
            f.psnr_f_db,
            f.psnr_ff_db,
            f.max_abs_f,
            f.max_abs_ff,
            f.idem_gap,
            f.idem_gap_fp32
        ))
    };
    if let Some(f) = &r.real {
        row(&mut s, "real", f);
    }
    row(&mut s, "noise", &r.noise);
    line(
        &mut s,
        "file",
        format!(
            "{} bytes = {:.1}% of fp32 ({} bytes)",
            r.file_bytes,
            100.0 * r.size_ratio,
            r.fp32_file_bytes
        ),
    );
    line(
        &mut s,
        "latency batch 1 (p50)",
        format!(
            "{:.1} us vs fp32 {:.1} us = {:.2}x ({} arithmetic)",
            r.latency_p50_us, r.fp32_latency_p50_us, r.latency_ratio, r.arithmetic
        ),
    );
    s
}

/// `path` with `.onnx` replaced by `.<precision>.onnx` (models/ign-mnist.int8.onnx).
pub fn variant_path(path: &Path, precision: Precision) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{precision}.onnx"))
}

/// The fp32 `model` in `precision`: its variant file if there is one (see [`variant_path`]),
/// else converted now (int8 then calibrates on noise, with a notice).
pub fn in_precision(model: Model, precision: Precision) -> Result<Model> {
    let path = model.info.path.clone();
    if model.info.precision != Precision::Fp32 {
        bail!(ModelError(format!(
            "{}: this model is {}; pass its fp32 original to run it in {precision}",
            path.display(),
            model.info.precision
        )));
    }
    let variant = variant_path(&path, precision);
    if variant.exists() {
        let v = Model::load(&variant)?;
        if v.info.precision != precision {
            bail!(ModelError(format!(
                "{}: expected an {precision} model (ign.precision), found {}; re-run ign-edge quantize",
                variant.display(),
                v.info.precision
            )));
        }
        return Ok(v);
    }
    if precision == Precision::Fp32 {
        return Ok(model);
    }
    let bytes = model.bytes().to_vec();
    if precision == Precision::Int8 {
        log::info!(
            "notice: no {}: quantizing to int8 now, calibrated on noise only; `ign-edge quantize --precision int8 --calib <real images>` makes a better file",
            variant.display()
        );
    }
    let opts = QuantizeOptions {
        precision,
        measure: false,
        methods: vec![RangeMethod::Percentile(99.99)],
        ..Default::default()
    };
    let q = quantize_bytes(&path, &bytes, &opts)?;
    Model::from_bytes(&variant, &q.bytes)
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
