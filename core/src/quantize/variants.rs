//! Variant lookup: a model's file in another precision, found next to it or made on the fly.

use anyhow::{bail, Result};
use std::path::Path;

use super::calib::RangeMethod;
use super::{quantize_bytes, QuantizeOptions};
use crate::model::{Model, ModelError, Precision};

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
        log::warn!(
            "no {}: quantizing to int8 now, calibrated on noise only; `ign-edge quantize --precision int8 --calib <real images>` makes a better file",
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
