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
    /// Fidelity floor of the fused scheme (dB, PSNR of `f` against fp32 on the held-out real
    /// images and on noise): while either kind is below it, the integer conv whose float
    /// arithmetic (on int8 weights) gains the most per multiply-add (among those gaining
    /// [`MIN_FLOOR_GAIN_DB`]) moves to float. 0: off.
    pub min_psnr_db: f64,
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
            min_psnr_db: DEFAULT_MIN_PSNR_DB,
        }
    }
}

/// The fused scheme's default fidelity floor (dB): the int8 issue's target for `f` on real
/// images and on noise.
pub const DEFAULT_MIN_PSNR_DB: f64 = 40.0;

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
    let mut chosen = Chosen {
        psnr: p,
        bytes,
        choice,
        summary,
    };
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
        let build = |floats: &[String]| build_with(&choice, floats).map(|(b, _)| b);
        let floats = floor.floats(&bytes, &build, &psnr_on)?;
        if floats.len() > dense.len() {
            let (qb, s) = build_with(&choice, &floats)?;
            let added: Vec<&str> = floats[dense.len()..].iter().map(String::as_str).collect();
            let method = format!(
                "{}, {} in float for the {} dB floor",
                describe(&choice),
                added.join(", "),
                opts.min_psnr_db
            );
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

/// The int8 file of the float graph `float` with each of `tensors` (observed `values`) ranged by
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
        log::info!(
            "notice: per-tensor range refinement stopped after {} s: {tried} of {} tensors tried",
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

/// What the fused scheme's fidelity floor works from (see [`raise_to_floor`]).
struct FloorInputs<'a> {
    /// The model file (for messages).
    path: &'a Path,
    set: &'a CalibSet,
    model: &'a Model,
    /// The float graph the int8 pass starts from.
    float: &'a pb::ModelProto,
    /// The convs already in float (dense layers).
    dense: &'a [String],
    floor: f64,
}

type PsnrOn<'p> =
    dyn Fn(&[u8], &crate::tensor::ImageBatch, &crate::tensor::ImageBatch) -> Result<f64> + 'p;

impl FloorInputs<'_> {
    /// The convs to run in float for the file `bytes` (built by `build` from a list of float
    /// convs) to meet the floor: `dense`, and those [`raise_to_floor`] adds.
    fn floats(
        &self,
        bytes: &[u8],
        build: &dyn Fn(&[String]) -> Result<Vec<u8>>,
        psnr_on: &PsnrOn<'_>,
    ) -> Result<Vec<String>> {
        let worst_on = |kinds: &[(crate::tensor::ImageBatch, crate::tensor::ImageBatch)],
                        bytes: &[u8]|
         -> Result<f64> {
            let mut w = f64::INFINITY;
            for (x, want) in kinds {
                w = w.min(psnr_on(bytes, x, want)?);
            }
            Ok(w)
        };
        let held = held_kinds(self.set, self.model)?;
        let judge = fit_kinds(self.set, self.model)?;
        let macs = conv_macs(self.path, self.float).unwrap_or_else(|e| {
            log::warn!("notice: the convs' multiply-adds are unknown ({e:#}): the floor moves the largest gain first");
            Default::default()
        });
        raise_to_floor(
            self.float,
            self.dense,
            self.floor,
            worst_on(&held, bytes)?,
            |conv| macs.get(conv).copied().unwrap_or(0),
            |floats| worst_on(&judge, &build(floats)?),
            |floats| worst_on(&held, &build(floats)?),
        )
    }
}

/// Multiply-adds of each conv of `float` per image (by its output name, as the fidelity floor
/// names convs), from tract's cost of the nodes the conv becomes at batch 1: what moving that
/// conv from int8 to float costs, roughly.
fn conv_macs(
    path: &Path,
    float: &pb::ModelProto,
) -> Result<std::collections::HashMap<String, u64>> {
    let typed = Model::from_bytes(path, &float.encode_to_vec())
        .and_then(|m| m.typed(1))
        .context("typing the float graph at batch 1")?;
    let by_node = crate::model::node_fmas(&typed)?;
    let graph = float.graph.as_ref().context("model without a graph")?;
    Ok(graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" && !n.output.is_empty())
        .map(|n| {
            // tract names a node after its ONNX name, or its first output when it has none
            let name = graph::node_label(n);
            let prefix = format!("{name}.");
            let macs = by_node
                .iter()
                .filter(|(k, _)| k == name || k.starts_with(&prefix))
                .map(|(_, v)| v)
                .sum();
            (n.output[0].clone(), macs)
        })
        .collect())
}

/// The held-out images by kind (real when there are any, noise), each with fp32's `f`.
fn held_kinds(
    set: &CalibSet,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let mut kinds: Vec<crate::tensor::ImageBatch> = set.held_real.iter().cloned().collect();
    kinds.push(set.held_noise.clone());
    with_fp32(kinds, model)
}

/// Part of the fitting images by kind (real when there are any, noise; 48 of each), each
/// with fp32's `f`: what the fidelity floor's choices are judged on, so that the held-out
/// images only say whether the floor is met.
fn fit_kinds(
    set: &CalibSet,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let noise = (set.fit.len() - set.fit_real) / 2;
    let mut kinds = Vec::new();
    if set.fit_real > 0 {
        kinds.push(selection(&set.fit.slice(0, set.fit_real), 48)?);
    }
    if noise > 0 {
        kinds.push(selection(
            &set.fit.slice(set.fit_real, set.fit_real + noise),
            48,
        )?);
    }
    with_fp32(kinds, model)
}

fn with_fp32(
    kinds: Vec<crate::tensor::ImageBatch>,
    model: &Model,
) -> Result<Vec<(crate::tensor::ImageBatch, crate::tensor::ImageBatch)>> {
    let mut fp32 = CpuBackend::new(model, None)?;
    kinds
        .into_iter()
        .map(|x| {
            let y = Backend::run(&mut fp32, &x)?;
            Ok((x, y))
        })
        .collect()
}

/// The fused scheme's fidelity floor: while `held_worst` (the lowest held-out PSNR by kind)
/// is below `floor`, the integer conv of `float` whose float arithmetic raises `judge` (the
/// same on part of the fitting images) the most *per multiply-add* (`macs`, what the move
/// costs in time) joins `floats`, as long as the held-out worst rises. Only convs that raise
/// `judge` by [`MIN_FLOOR_GAIN_DB`] count; when none does or a cost is unknown (0), the
/// largest gain is taken. Returns `floats` (starting with `dense`).
///
/// Two limits keep an int8 file an int8 file: when the floor is out of reach even with every
/// conv in float (the int8 weights alone cost more), nothing moves; and at most half of the
/// integer convs (rounded up) move.
fn raise_to_floor(
    float: &pb::ModelProto,
    dense: &[String],
    floor: f64,
    mut held_worst: f64,
    macs: impl Fn(&str) -> u64,
    mut judge: impl FnMut(&[String]) -> Result<f64>,
    mut held: impl FnMut(&[String]) -> Result<f64>,
) -> Result<Vec<String>> {
    let mut floats = dense.to_vec();
    let graph = float.graph.as_ref().context("model without a graph")?;
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let mut candidates: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" && !inputs.contains(&n.input[0].as_str()))
        .map(|n| n.output[0].clone())
        .filter(|o| !dense.contains(o))
        .collect();
    if held_worst >= floor || candidates.is_empty() {
        return Ok(floats);
    }
    let mut all = floats.clone();
    all.extend(candidates.iter().cloned());
    let reach = held(&all)?;
    if reach < floor {
        log::info!(
            "notice: the {floor} dB fidelity floor is out of reach in int8 (every conv in float on its int8 weights: {reach:.2} dB, against {held_worst:.2}); every conv that can be int8 stays int8"
        );
        return Ok(floats);
    }
    let cap = candidates.len().div_ceil(2);
    let mut now = judge(&floats)?;
    while held_worst < floor && floats.len() - dense.len() < cap {
        let mut scores = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let mut trial = floats.clone();
            trial.push(c.clone());
            scores.push(judge(&trial)?);
        }
        let Some(i) = pick_for_floor(&candidates, &scores, now, &macs) else {
            break;
        };
        now = scores[i];
        let mut trial = floats.clone();
        trial.push(candidates[i].clone());
        let w = held(&trial)?;
        if w <= held_worst + MIN_FLOOR_GAIN_DB {
            break;
        }
        log::info!(
            "notice: {} computes in float (int8 weights) to reach the {floor} dB floor: held-out worst {held_worst:.2} -> {w:.2} dB",
            candidates[i]
        );
        floats = trial;
        held_worst = w;
        candidates.remove(i);
    }
    Ok(floats)
}

/// Below this gain on the judging images a conv does not count as helping the floor (the
/// same margin the held-out worst must rise by).
pub const MIN_FLOOR_GAIN_DB: f64 = 0.05;

/// Which of `candidates` (judged `scores` with it in float; `now` without) the floor moves:
/// the largest gain per multiply-add among those that gain [`MIN_FLOOR_GAIN_DB`], else the
/// largest score.
fn pick_for_floor(
    candidates: &[String],
    scores: &[f64],
    now: f64,
    macs: &impl Fn(&str) -> u64,
) -> Option<usize> {
    // the first of the largest `value`s among `among`
    let first_max = |among: &mut dyn Iterator<Item = usize>, value: &dyn Fn(usize) -> f64| {
        among.fold(None, |best: Option<usize>, i| match best {
            Some(b) if value(b) >= value(i) => Some(b),
            _ => Some(i),
        })
    };
    let finite = &mut (0..scores.len()).filter(|&i| scores[i].is_finite());
    let best_score = first_max(finite, &|i| scores[i]);
    let costs: Vec<u64> = candidates.iter().map(|c| macs(c)).collect();
    if costs.contains(&0) {
        return best_score;
    }
    let gaining = &mut (0..scores.len())
        .filter(|&i| scores[i].is_finite() && scores[i] - now >= MIN_FLOOR_GAIN_DB);
    first_max(gaining, &|i| (scores[i] - now) / costs[i] as f64).or(best_score)
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

    /// A graph of convs one after the other from the input `x`, each named by its output.
    fn conv_chain(names: &[&str]) -> pb::ModelProto {
        let node = names
            .iter()
            .enumerate()
            .map(|(i, y)| pb::NodeProto {
                op_type: "Conv".into(),
                input: vec![
                    if i == 0 { "x" } else { names[i - 1] }.into(),
                    format!("{y}.w"),
                ],
                output: vec![y.to_string()],
                ..Default::default()
            })
            .collect();
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                input: vec![pb::ValueInfoProto {
                    name: "x".into(),
                    ..Default::default()
                }],
                node,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_fidelity_floor_moves_the_most_useful_convs_to_float_until_it_is_met() {
        let model = conv_chain(&["first", "a", "b", "dense", "c"]);
        let dense = vec!["dense".to_string()];
        // Each conv in float adds its gain; b the most, then c; a nothing.
        let gain = |floats: &[String]| {
            floats
                .iter()
                .map(|f| match f.as_str() {
                    "b" => 1.5,
                    "c" => 0.8,
                    _ => 0.0,
                })
                .sum::<f64>()
        };
        let run = |floor: f64, start: f64| {
            raise_to_floor(
                &model,
                &dense,
                floor,
                start,
                |_| 1,
                |f| Ok(gain(f)),
                |f| Ok(start + gain(f)),
            )
            .unwrap()
        };
        // Met already: nothing moves.
        assert_eq!(run(40.0, 40.5), dense);
        // One step short by 1 dB: the best conv (b) is enough.
        assert_eq!(run(40.0, 39.0), vec!["dense", "b"]);
        // 2 dB short: b, then c (2 of the 3 integer convs a, b, c: the cap); never the first
        // conv (it reads the input: float already).
        assert_eq!(run(40.0, 38.0), vec!["dense", "b", "c"]);
        // Out of reach even with every conv in float (38 + 2.3 < 41): nothing moves.
        assert_eq!(run(41.0, 38.0), dense);
        assert_eq!(run(45.0, 38.0), dense);
        // Off (floor 0): nothing.
        assert_eq!(run(0.0, 10.0), dense);
        // The cap: a gain only from a, b and c together is never reached, by half (2 of 3).
        let only_all = |floats: &[String]| {
            if floats.len() == 4 {
                5.0
            } else {
                0.1 * floats.len() as f64
            }
        };
        let capped = raise_to_floor(
            &model,
            &dense,
            40.0,
            38.0,
            |_| 1,
            |f| Ok(only_all(f)),
            |f| Ok(38.0 + only_all(f)),
        )
        .unwrap();
        assert_eq!(capped.len(), 1 + 2, "{capped:?}");
    }

    /// The floor weighs each conv's gain against its multiply-adds: a cheap conv that gains a
    /// little less goes to float before an expensive one (session 11's ign-mnist: `enc.1.conv`,
    /// 1.6 M, instead of the first transposed conv, 2.1 M: 0.91-0.93x of fp32 instead of
    /// 1.03-1.07x).
    #[test]
    fn the_fidelity_floor_prefers_the_most_gain_per_multiply_add() {
        let model = conv_chain(&["first", "cheap", "costly", "tiny"]);
        // costly gains 1.5 dB for 2.1 M multiply-adds, cheap 1.2 dB for 1.6 M, tiny 0.04 dB
        // for 10 k (the most per multiply-add, 4 dB per M, but under the minimum gain)
        let gain = |floats: &[String]| {
            floats
                .iter()
                .map(|f| match f.as_str() {
                    "costly" => 1.5,
                    "cheap" => 1.2,
                    "tiny" => 0.04,
                    _ => 0.0,
                })
                .sum::<f64>()
        };
        let macs = |c: &str| match c {
            "costly" => 2_100_000,
            "cheap" => 1_600_000,
            "tiny" => 10_000,
            _ => 0,
        };
        let run = |start: f64, macs: &dyn Fn(&str) -> u64| {
            raise_to_floor(
                &model,
                &[],
                40.0,
                start,
                macs,
                |f| Ok(gain(f)),
                |f| Ok(start + gain(f)),
            )
            .unwrap()
        };
        // 1 dB short: cheap is enough and costs less per dB
        assert_eq!(run(39.0, &macs), vec!["cheap"]);
        // 2 dB short: cheap, then costly (tiny never: it gains under the minimum)
        assert_eq!(run(38.0, &macs), vec!["cheap", "costly"]);
        // costs unknown: the largest gain first, as before
        assert_eq!(run(39.0, &|_| 0), vec!["costly"]);
        // the costs of a real graph: tract's multiply-adds, by output name
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ign-mnist.onnx");
        let proto = pb::ModelProto::decode(&*std::fs::read(&path).unwrap()).unwrap();
        let costs = conv_macs(&path, &proto).unwrap();
        // enc.1.conv: its weights' size times its 7x7 outputs
        let g = proto.graph.as_ref().unwrap();
        let conv = g.node.iter().find(|n| n.output[0] == "enc.1.conv").unwrap();
        let w = g
            .initializer
            .iter()
            .find(|t| t.name == conv.input[1])
            .unwrap();
        assert_eq!(w.dims.len(), 4, "{:?}", w.dims);
        let weights: i64 = w.dims.iter().product();
        assert_eq!(costs["enc.1.conv"], weights as u64 * 49, "{costs:?}");
        assert!(costs.values().all(|&m| m > 0), "{costs:?}");
    }

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
