//! `ign-edge quantize`: fp32 ONNX → fp16 or int8 ONNX, in Rust, with a fidelity report.
//!
//! This file is the API ([`QuantizeOptions`], [`quantize`], [`quantize_bytes`]) and the fp16
//! variant. The rest lives in rooms of one job each:
//!
//! - `search`: the int8 search: the float rewrites, the range method of each tensor that gives
//!   the best held-out fidelity, and the int8 file built from them;
//! - `floor`: the fused scheme's fidelity floor: which integer convs compute in float;
//! - `report`: the fidelity report and its table ([`Report`], [`table`]);
//! - `variants`: a model's file in another precision ([`variant_path`], [`in_precision`]);
//!
//! and the graph passes and measures they use:
//!
//! - [`deconv`]: `ConvTranspose` → `Conv` + `DepthToSpace` (+ `Slice`), exact in fp32, so that
//!   every layer can run on integer kernels;
//! - [`dense`]: convolutions that are fully connected layers, rewritten;
//! - [`equalize`]: cross-layer equalization, for one weight scale per tensor;
//! - [`layernorm`]: ign-train's LayerNorm fused into one `LayerNormalization`;
//! - [`fp16`]: weights stored as half floats;
//! - [`calib`]: calibration set and activation statistics;
//! - [`int8`]: the QOperator schemes (`q-linear-conv`, `conv-integer`): QLinearConv or
//!   ConvInteger graph from the ranges;
//! - [`fused`]: the default int8 scheme, int8 end to end;
//! - `int8_common`: what the int8 schemes share: ranges and the tensors they are taken on,
//!   uint8 and per-channel int8 rounding, the int32 accumulator rescaled to float;
//! - [`graph`]: small helpers to read and edit an ONNX graph;
//! - [`fidelity`]: PSNR, errors, idempotence gap and latency against fp32.
//!
//! The output is deterministic: the same model and data give a byte-identical file.

pub mod bnfold;
pub mod calib;
pub mod deconv;
pub mod dense;
pub mod equalize;
pub mod fidelity;
mod floor;
pub mod fp16;
pub mod fused;
pub mod graph;
pub mod int8;
mod int8_common;
pub mod layernorm;
mod report;
mod search;
mod variants;

pub use floor::MIN_FLOOR_GAIN_DB;
pub use report::{table, Candidate, Report};
pub use variants::{in_precision, variant_path};

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use std::path::Path;
use tract_onnx::pb;

use crate::model::{metadata::keys, Model, ModelError, Precision};
use calib::{CalibSet, CalibSizes, RangeMethod};

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
    // the graph as it runs: BatchNormalization already folded into the convolutions
    let proto = pb::ModelProto::decode(model.bytes()).context("decode")?;
    let out_path = path.with_extension(format!("{}.onnx", opts.precision));
    let v = match opts.precision {
        Precision::Fp32 => bail!("--precision fp32: the model already is fp32; pick fp16 or int8"),
        Precision::Fp16 => fp16_variant(path, &model, &proto, opts)?,
        Precision::Int8 => search::int8_variant(path, &out_path, &model, &proto, opts)?,
    };
    if !opts.measure {
        return Ok(Quantized {
            bytes: v.bytes,
            report: None,
        });
    }
    let variant = load_variant(&out_path, &v.bytes)?;
    let report = report::measure(
        &model,
        &variant,
        &v.set,
        opts,
        report::Measured {
            // with the external data of a PyTorch export: what the fp32 model takes on disk
            fp32_file_bytes: model.info.file_bytes,
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
