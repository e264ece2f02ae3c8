//! Load and validate an IGN model (ONNX; the model file contract of docs/ARCHITECTURE.md).
//!
//! Stages, as in tract: bytes → protobuf (validated here) → inference model → typed model
//! (shapes checked) → optimized plan (built per batch size by a [`crate::backend::Backend`]).

pub mod external;
pub mod metadata;
pub mod writer;

use anyhow::{anyhow, bail, Result};
use prost::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::*;

pub use metadata::Precision;

/// An error in the user's model file: reported as one line, exit code 2.
#[derive(Debug)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ModelError {}

fn model_err(path: &Path, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(ModelError(format!("{}: {msg}", path.display())))
}

/// What `ign-edge info` shows, and what every other part needs to know about a model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// File size in bytes.
    pub file_bytes: u64,
    pub input_name: String,
    pub output_name: String,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `None` when the batch axis is dynamic, else the fixed batch size.
    pub fixed_batch: Option<usize>,
    pub precision: Precision,
    /// Number of weights (elements of all initializers).
    pub params: u64,
    /// Floating-point operations of one application of `f` on one image (2 per multiply-add).
    pub flops: u64,
    /// Operator histogram of the ONNX graph.
    pub ops: BTreeMap<String, usize>,
    pub opset: i64,
    pub producer: String,
    /// `metadata_props` (the `ign.*` keys and any others).
    pub metadata: BTreeMap<String, String>,
}

impl ModelInfo {
    /// Floats in one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// A BatchNorm model's variant for the first application to noise, beside it: `M.noise.onnx`
/// (`ign-train export` writes it; its BatchNorm statistics are those of noise, where `M.onnx`
/// has those of real images). The int8 and fp16 variants `M.int8.onnx`, `M.fp16.onnx` share it.
///
/// ```
/// use ign_core::model::noise_variant_path;
/// use std::path::Path;
/// assert_eq!(noise_variant_path(Path::new("m/ign.onnx")), Path::new("m/ign.noise.onnx"));
/// assert_eq!(noise_variant_path(Path::new("m/ign.int8.onnx")), Path::new("m/ign.noise.onnx"));
/// ```
pub fn noise_variant_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = stem
        .strip_suffix(".int8")
        .or_else(|| stem.strip_suffix(".fp16"))
        .unwrap_or(&stem);
    path.with_file_name(format!("{base}.noise.onnx"))
}

/// A loaded, validated model.
#[derive(Clone)]
pub struct Model {
    pub info: ModelInfo,
    inference: InferenceModel,
    /// The file's bytes, for tools that rewrite or split the graph.
    bytes: std::sync::Arc<[u8]>,
}

/// Largest fixed batch axis a model may declare (inputs of that many images are allocated).
const MAX_FIXED_BATCH: usize = 4096;

/// Read a file's bytes with errors that say what to do.
fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    // protobuf messages end at 2 GiB: a larger file is no ONNX model
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() > i32::MAX as u64 {
            return Err(model_err(
                path,
                format!("{} bytes: larger than any ONNX model (2 GiB)", m.len()),
            ));
        }
    }
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(model_err(
            path,
            "no such model file (pass an .onnx file, e.g. models/ign-mnist.onnx)",
        )),
        Err(e) => Err(model_err(path, format!("cannot read model file: {e}"))),
    }
}

fn dims_of(v: &pb::ValueInfoProto) -> Option<(i32, Vec<Option<i64>>)> {
    use pb::tensor_shape_proto::dimension::Value;
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => {
            let dims = t
                .shape
                .as_ref()?
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(Value::DimValue(n)) if *n > 0 => Some(*n),
                    _ => None,
                })
                .collect();
            Some((t.elem_type, dims))
        }
    }
}

impl Model {
    /// Load an ONNX model and validate it against the model file contract.
    ///
    /// Accepts files from `ign-train` and from other exporters (PyTorch's: BatchNormalization
    /// and Identity nodes, any input name, opsets 13 to 17, fixed or dynamic batch). Errors name
    /// the file and say what is wrong.
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = read_model_bytes(path)?;
        Self::from_bytes(path, &bytes)
    }

    /// Load from bytes; `path` is used for messages and for external data.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Model> {
        if bytes.is_empty() {
            return Err(model_err(path, "empty file, not an ONNX model"));
        }
        let proto = pb::ModelProto::decode(bytes).map_err(|e| {
            model_err(
                path,
                format!("not an ONNX model, or a truncated one (protobuf: {e}); re-export or re-download it"),
            )
        })?;
        let graph = proto
            .graph
            .as_ref()
            .filter(|g| !g.node.is_empty())
            .ok_or_else(|| {
                model_err(
                    path,
                    "not an ONNX model: no graph or an empty graph (truncated file?)",
                )
            })?;
        let register = tract_onnx::onnx();
        let ops = known_operators(path, graph, &register)?;
        let (input, output) = image_input_output(path, graph)?;
        let metadata: BTreeMap<String, String> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let Geometry {
            channels,
            height,
            width,
            fixed_batch,
        } = input_geometry(path, input, &metadata)?;
        check_output_dims(path, output, fixed_batch, (channels, height, width))?;

        let model_dir = path.parent().and_then(|p| p.to_str()).map(str::to_owned);
        // What runs (and what the quantizer starts from): external weights read in, shape hints
        // on a named batch dropped, BatchNormalization folded into the convolutions before it;
        // `info` keeps describing the file as it is.
        let (folded, external_bytes) = prepare_for_running(path, &proto)?;
        let parsed = register
            .parse(
                folded.as_ref().map_or(&proto, |f| &f.0),
                model_dir.as_deref(),
            )
            .map_err(|e| model_err(path, format!("tract cannot read the graph: {e}")))?;
        let inference = parsed.model;
        let params: u64 = graph
            .initializer
            .iter()
            .map(|t| t.dims.iter().product::<i64>().max(0) as u64)
            .sum();
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0);
        let info = ModelInfo {
            path: path.to_path_buf(),
            file_bytes: bytes.len() as u64 + external_bytes,
            input_name: input.name.clone(),
            output_name: output.name.clone(),
            channels,
            height,
            width,
            fixed_batch,
            precision: Precision::from_metadata(&metadata),
            params,
            flops: 0,
            ops,
            opset,
            producer: proto.producer_name.clone(),
            metadata,
        };
        let mut model = Model {
            info,
            inference,
            bytes: folded.map_or_else(|| bytes.into(), |f| f.1.into()),
        };
        model.check_output_and_count_flops()?;
        Ok(model)
    }

    /// Type the graph at batch 1: checks the output's shape end to end and counts the FLOPs.
    fn check_output_and_count_flops(&mut self) -> Result<()> {
        let typed = self.typed(1)?;
        let out_fact = typed.output_fact(0)?;
        let out_shape: Option<Vec<usize>> = out_fact.shape.as_concrete().map(|s| s.to_vec());
        let info = &self.info;
        let want = vec![1, info.channels, info.height, info.width];
        if out_shape.as_ref() != Some(&want) {
            bail!(ModelError(format!(
                "{}: output '{}' has shape {:?} but the input is {:?}; an IGN model maps an image to an image of the same shape",
                info.path.display(),
                info.output_name,
                out_fact.shape,
                want
            )));
        }
        self.info.flops = count_flops(&typed)?;
        Ok(())
    }

    /// The decluttered typed model for a concrete batch size.
    pub fn typed(&self, batch: usize) -> Result<TypedModel> {
        if let Some(b) = self.info.fixed_batch {
            if b != batch {
                bail!(ModelError(format!(
                    "{}: the model's batch axis is fixed to {b}; cannot run a batch of {batch}",
                    self.info.path.display()
                )));
            }
        }
        let shape = [batch, self.info.channels, self.info.height, self.info.width];
        self.inference
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .map_err(|e| {
                model_err(
                    &self.info.path,
                    format!(
                        "cannot type the graph for input {shape:?}: {}",
                        root_cause(&e)
                    ),
                )
            })
    }

    /// The ONNX file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The inference-level graph (before typing), for tools that rewrite models.
    pub fn inference_model(&self) -> &InferenceModel {
        &self.inference
    }
}

fn root_cause(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Floating-point operations of a typed model (2 per multiply-add, as tract counts them).
pub fn count_flops(model: &TypedModel) -> Result<u64> {
    Ok(2 * node_fmas_by_id(model)?
        .iter()
        .map(|(_, fma)| fma)
        .sum::<u64>())
}

/// Multiply-adds of each node of a typed model, by node name (nodes without any left out).
pub fn node_fmas(model: &TypedModel) -> Result<Vec<(String, u64)>> {
    Ok(node_fmas_by_id(model)?
        .into_iter()
        .map(|(id, fma)| (model.node(id).name.clone(), fma))
        .collect())
}

/// Multiply-adds of each node of a typed model (plain or optimized), by node id (nodes without
/// any left out).
pub fn node_fmas_by_id(model: &TypedModel) -> Result<Vec<(usize, u64)>> {
    let mut out = Vec::new();
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id)?;
        let mut fma = 0u64;
        // tract has no cost for transposed convolutions: every input value meets
        // out_channels/group * kernel taps.
        if let Some(d) = node.op_as::<tract_onnx::tract_core::ops::cnn::Deconv>() {
            let input_elems = inputs[0].shape.volume().to_i64().unwrap_or(0).max(0) as u64;
            let taps: usize = d.pool_spec.kernel_shape.iter().product();
            fma = input_elems * (d.pool_spec.output_channels / d.group.max(1) * taps) as u64;
        } else {
            for (cost, n) in node.op.cost(&inputs)? {
                if let tract_onnx::tract_core::ops::Cost::FMA(_) = cost {
                    fma += n.to_i64().unwrap_or(0).max(0) as u64;
                }
            }
        }
        if fma > 0 {
            out.push((node.id, fma));
        }
    }
    Ok(out)
}

/// The operators of `graph` and how often each occurs; an error names the first one tract
/// does not know.
fn known_operators(
    path: &Path,
    graph: &pb::GraphProto,
    register: &tract_onnx::Onnx,
) -> Result<BTreeMap<String, usize>> {
    // Every operator must be one tract knows.
    let mut ops = BTreeMap::new();
    for n in &graph.node {
        *ops.entry(n.op_type.clone()).or_insert(0usize) += 1;
        let std_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        if !std_domain || !register.op_register.0.contains_key(&n.op_type) {
            let dom = if std_domain {
                String::new()
            } else {
                format!(" (domain {})", n.domain)
            };
            bail!(ModelError(format!(
                    "{}: unsupported operator {}{dom} in node '{}'; export the model with standard ONNX operators",
                    path.display(),
                    n.op_type,
                    n.name
                )));
        }
    }

    Ok(ops)
}

/// A graph changed for running, and its encoded bytes.
type Prepared = (pb::ModelProto, Vec<u8>);

/// The graph as it runs, and its bytes (`None` when it is the file's as it is), with the bytes
/// of external data read in:
/// - initializers kept in files beside the model read into the graph ([`external`]);
/// - shape hints (`value_info`) on inner tensors that name a symbolic dimension dropped: PyTorch
///   writes `batch` there, which would not unify with the batch the runtime fixes (the shapes
///   are inferred again from the input);
/// - BatchNormalization nodes (and Mul/Add by per-channel constants) folded into the
///   convolutions before them.
fn prepare_for_running(path: &Path, proto: &pb::ModelProto) -> Result<(Option<Prepared>, u64)> {
    let symbolic_hints = proto
        .graph
        .as_ref()
        .is_some_and(|g| g.value_info.iter().any(has_symbolic_dim));
    let external = external::has_external(proto);
    let foldable = proto
        .graph
        .as_ref()
        .is_some_and(crate::quantize::bnfold::has_foldable);
    if !(symbolic_hints || external || foldable) {
        return Ok((None, 0));
    }
    let mut prepared = proto.clone();
    let external_bytes = if external {
        external::inline(path, &mut prepared).map_err(|e| model_err(path, format!("{e:#}")))?
    } else {
        0
    };
    if let Some(g) = prepared.graph.as_mut() {
        g.value_info.retain(|v| !has_symbolic_dim(v));
    }
    if foldable {
        let n = crate::quantize::bnfold::fold_batchnorm(&mut prepared)
            .map_err(|e| model_err(path, format!("cannot fold BatchNormalization: {e:#}")))?;
        log::debug!(
            "{}: {n} BatchNormalization or affine nodes folded into the convolutions before them",
            path.display()
        );
    }
    let bytes = prepared.encode_to_vec();
    Ok((Some((prepared, bytes)), external_bytes))
}

/// Whether a tensor's declared shape names a dimension by a symbol (`batch`).
fn has_symbolic_dim(v: &pb::ValueInfoProto) -> bool {
    use pb::tensor_shape_proto::dimension::Value;
    use pb::type_proto::Value as T;
    let Some(T::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return false;
    };
    t.shape.as_ref().is_some_and(|s| {
        s.dim
            .iter()
            .any(|d| matches!(d.value, Some(Value::DimParam(_))))
    })
}

/// The one image input (initializers excluded) and the one output.
fn image_input_output<'g>(
    path: &Path,
    graph: &'g pb::GraphProto,
) -> Result<(&'g pb::ValueInfoProto, &'g pb::ValueInfoProto)> {
    let init_names: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !init_names.contains(i.name.as_str()))
        .collect();
    if inputs.len() != 1 {
        bail!(ModelError(format!(
            "{}: the model has {} inputs ({}); an IGN model has exactly one image input",
            path.display(),
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if graph.output.len() != 1 {
        bail!(ModelError(format!(
            "{}: the model has {} outputs; an IGN model has exactly one image output",
            path.display(),
            graph.output.len()
        )));
    }
    let input = inputs[0];
    let output = &graph.output[0];
    Ok((input, output))
}

/// The input's image geometry, from its dims or the `ign.*` metadata.
struct Geometry {
    channels: usize,
    height: usize,
    width: usize,
    fixed_batch: Option<usize>,
}

/// Check the input's type, rank, channels, size and batch against the model file contract.
fn input_geometry(
    path: &Path,
    input: &pb::ValueInfoProto,
    metadata: &BTreeMap<String, String>,
) -> Result<Geometry> {
    let (elem, dims) = dims_of(input)
        .ok_or_else(|| model_err(path, format!("input '{}' has no tensor type", input.name)))?;
    if elem != pb::tensor_proto::DataType::Float as i32 {
        bail!(ModelError(format!(
            "{}: input '{}' is not float32 (ONNX type {elem}); IGN models take float32 NCHW images",
            path.display(),
            input.name
        )));
    }
    if dims.len() != 4 {
        bail!(ModelError(format!(
            "{}: input '{}' has rank {}, expected 4 (NCHW)",
            path.display(),
            input.name,
            dims.len()
        )));
    }
    let meta_usize = |k: &str| metadata.get(k).and_then(|v| v.trim().parse::<usize>().ok());
    let dim = |i: usize, key: &str, what: &str| -> Result<usize> {
        dims[i]
            .map(|d| d as usize)
            .or_else(|| meta_usize(key))
            .ok_or_else(|| {
                model_err(
                    path,
                    format!(
                        "input '{}' has no fixed {what} and no {key} metadata",
                        input.name
                    ),
                )
            })
    };
    let channels = dim(1, "ign.channels", "channel count")?;
    let height = dim(2, "ign.height", "height")?;
    let width = dim(3, "ign.width", "width")?;
    if channels != 1 && channels != 3 {
        bail!(ModelError(format!(
            "{}: input '{}' has {channels} channels; IGN models take 1 (gray) or 3 (RGB)",
            path.display(),
            input.name
        )));
    }
    let max = crate::limits::MAX_MODEL_SIDE;
    if height == 0 || width == 0 || height > max || width > max {
        bail!(ModelError(format!(
            "{}: input '{}' is {height}x{width}; ign-edge runs models from 1x1 to {max}x{max}",
            path.display(),
            input.name
        )));
    }
    let fixed_batch = dims[0].map(|d| d as usize);
    if fixed_batch.is_some_and(|n| n > MAX_FIXED_BATCH) {
        bail!(ModelError(format!(
            "{}: input '{}' has a fixed batch of {}; export it with a dynamic batch axis",
            path.display(),
            input.name,
            dims[0].unwrap_or_default()
        )));
    }
    Ok(Geometry {
        channels,
        height,
        width,
        fixed_batch,
    })
}

/// The output's declared dims, where known, must be the input's.
fn check_output_dims(
    path: &Path,
    output: &pb::ValueInfoProto,
    fixed_batch: Option<usize>,
    (channels, height, width): (usize, usize, usize),
) -> Result<()> {
    if let Some((_, odims)) = dims_of(output) {
        let known: Vec<(usize, i64)> = odims
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (i, d)))
            .collect();
        let want = [
            fixed_batch.map(|b| b as i64),
            Some(channels as i64),
            Some(height as i64),
            Some(width as i64),
        ];
        if odims.len() != 4 || known.iter().any(|&(i, d)| i > 0 && want[i] != Some(d)) {
            bail!(ModelError(format!(
                    "{}: output '{}' has shape {:?} but the input is [N, {channels}, {height}, {width}]; an IGN model maps an image to an image of the same shape",
                    path.display(),
                    output.name,
                    odims.iter().map(|d| d.map(|v| v.to_string()).unwrap_or("?".into())).collect::<Vec<_>>()
                )));
        }
    }

    Ok(())
}
