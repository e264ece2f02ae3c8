//! Everything rknn-toolkit2 needs to compile a model for the RK3588 NPU (`ign-edge
//! rknn-prep`): the graph as the toolkit can build it (LayerNorms fused), the calibration set
//! and dataset.txt, and the conversion script.

use anyhow::{anyhow, bail, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::tract_ndarray as nd;

use super::convert::{self, Layout};
use crate::model::Model;
use crate::{fsio, inputs};

/// What the NPU model computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpuPrecision {
    /// int8 weights and activations, calibrated on --calib (fastest on the NPU).
    Int8,
    /// fp16 throughout (no calibration; about half the int8 speed).
    Fp16,
}

impl NpuPrecision {
    /// The names the command line takes.
    pub const NAMES: [&'static str; 2] = ["int8", "fp16"];
}

impl std::str::FromStr for NpuPrecision {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "int8" => Ok(NpuPrecision::Int8),
            "fp16" => Ok(NpuPrecision::Fp16),
            _ => bail!("{s}: the NPU takes int8 or fp16"),
        }
    }
}

/// What to prepare (what `ign-edge rknn-prep` parses its options into).
#[derive(Debug, Clone)]
pub struct PrepConfig {
    /// The fp32 ONNX model.
    pub model: PathBuf,
    /// Calibration images: an IDX file, a folder with IDX files or images, an image, a .npy
    /// (needed for int8).
    pub calib: Option<String>,
    /// Output folder (created).
    pub out: PathBuf,
    /// How many calibration images to write.
    pub count: usize,
    pub precision: NpuPrecision,
}

/// The names of what rknn-prep writes.
pub struct Prepared {
    pub model: PathBuf,
    pub dataset: Option<PathBuf>,
    pub script: PathBuf,
    pub rknn_name: String,
    /// LayerNorms fused into `LayerNormalization`, and the largest output change that caused.
    pub fused: usize,
    pub fuse_error: f32,
}

impl PrepConfig {
    /// Write the folder; returns what was written.
    pub fn prepare(&self) -> Result<Prepared> {
        if self.precision == NpuPrecision::Int8 && self.calib.is_none() {
            bail!(
                "int8 needs calibration images: give --calib (e.g. the training data), or use --precision fp16"
            );
        }
        let model = Model::load(&self.model)?;
        let info = &model.info;
        if info.precision != crate::model::Precision::Fp32 {
            bail!(
                "{}: give the fp32 model; rknn-toolkit2 quantizes it itself",
                self.model.display()
            );
        }
        std::fs::create_dir_all(&self.out).map_err(|e| {
            anyhow!(
                "{}: cannot create the output folder: {e}",
                self.out.display()
            )
        })?;
        let stem = self
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let onnx_name = format!("{stem}.onnx");
        let onnx = self.out.join(&onnx_name);
        let (bytes, fused, fuse_error) = npu_graph(&model)?;
        fsio::atomic_write(&onnx, &bytes)?;
        let dataset = match (self.precision, &self.calib) {
            (NpuPrecision::Int8, Some(spec)) => Some(self.write_calibration(spec, info)?),
            _ => None,
        };
        let rknn_name = format!("{stem}.rknn");
        let script = self.out.join("convert_rknn.py");
        fsio::atomic_write(
            &script,
            conversion_script(info, &onnx_name, &rknn_name, self.precision).as_bytes(),
        )?;
        Ok(Prepared {
            model: onnx,
            dataset,
            script,
            rknn_name,
            fused,
            fuse_error,
        })
    }

    /// `calib/NNNN.npy` (uint8 NCHW, 0..255, as rknn-toolkit2 2.x expects) and `dataset.txt`.
    fn write_calibration(&self, spec: &str, info: &crate::model::ModelInfo) -> Result<PathBuf> {
        let spec_path = Path::new(spec);
        let specs = vec![spec.to_string()];
        let imgs = if spec_path.is_dir() && !has_images(spec_path) {
            // an IDX folder (train-/t10k- files or mnist-10k's images-idx3-ubyte.gz)
            let idx = std::fs::read_dir(spec_path)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| inputs::is_idx_path(p))
                .min()
                .ok_or_else(|| anyhow!("{spec}: no images or IDX files in this folder"))?;
            inputs::read_idx_images(&idx, info, self.count)?
        } else {
            inputs::load_inputs(&specs, info)?.batch
        };
        let n = imgs.len().min(self.count.max(1));
        if n == 0 {
            bail!("{spec}: no calibration images");
        }
        let dir = self.out.join("calib");
        std::fs::create_dir_all(&dir)?;
        let (c, h, w) = (info.channels, info.height, info.width);
        let mut list = String::new();
        let mut u = vec![0u8; c * h * w];
        for i in 0..n {
            convert::input_u8(imgs.image(i), (c, h, w), Layout::Nchw, &mut u);
            let arr = nd::Array4::from_shape_vec((1, c, h, w), u.clone())?;
            let mut buf = Vec::new();
            ndarray_npy::WriteNpyExt::write_npy(&arr, &mut buf)
                .map_err(|e| anyhow!("cannot encode .npy: {e}"))?;
            let name = format!("calib/{i:04}.npy");
            fsio::atomic_write(&self.out.join(&name), &buf)?;
            writeln!(list, "{name}")?;
        }
        let ds = self.out.join("dataset.txt");
        fsio::atomic_write(&ds, list.as_bytes())?;
        Ok(ds)
    }
}

/// The model as rknn-toolkit2 can build it: LayerNorms fused (see
/// [`crate::quantize::layernorm`]), checked against the original with tract.
fn npu_graph(model: &Model) -> Result<(Vec<u8>, usize, f32)> {
    use crate::backend::{cpu::CpuBackend, Backend};
    use crate::quantize::{calib, layernorm};
    use prost::Message;
    let mut proto = tract_onnx::pb::ModelProto::decode(model.bytes())?;
    let x = inputs::noise_batch(&model.info, 8, 3);
    let shapes = calib::shapes(
        &proto,
        &layernorm::norm_inputs(&proto),
        &x,
        model.info.fixed_batch,
    )?;
    let fused = layernorm::fuse_layer_norms(&mut proto, &shapes)?;
    if fused == 0 {
        return Ok((model.bytes().to_vec(), 0, 0.0));
    }
    let bytes = proto.encode_to_vec();
    let m = Model::from_bytes(&model.info.path, &bytes)?;
    let x = match model.info.fixed_batch {
        Some(n) => x.slice(0, n.min(x.len())),
        None => x,
    };
    let err = CpuBackend::new(model, None)?
        .run(&x)?
        .max_abs_diff(&CpuBackend::new(&m, None)?.run(&x)?);
    if err > 1e-4 {
        bail!(
            "{}: fusing the LayerNorms changed the output by {err} (a bug: please report it)",
            model.info.path.display()
        );
    }
    Ok((bytes, fused, err))
}

fn has_images(dir: &Path) -> bool {
    crate::imaging::list_images(dir)
        .map(|v| !v.is_empty())
        .unwrap_or(false)
}

/// The rknn-toolkit2 script: mean/std 127.5 per channel, the batch fixed to 1, rk3588.
pub fn conversion_script(
    info: &crate::model::ModelInfo,
    onnx: &str,
    rknn: &str,
    precision: NpuPrecision,
) -> String {
    let per_channel = |v: f32| {
        let vals: Vec<String> = (0..info.channels).map(|_| format!("{v}")).collect();
        format!("[[{}]]", vals.join(", "))
    };
    let quantize = precision == NpuPrecision::Int8;
    format!(
        r#"# Written by `ign-edge rknn-prep`: compile {onnx} for the RK3588 NPU with rknn-toolkit2.
# Run in this folder: python3 convert_rknn.py   (pip install rknn-toolkit2)
from rknn.api import RKNN

rknn = RKNN(verbose=False)
# uint8 pixel u -> (u - {mean}) / {std}: the [-1, 1] range the model was trained on
rknn.config(mean_values={mean_v}, std_values={std_v}, target_platform="rk3588")
# the ONNX batch axis is dynamic: fix it to 1
ret = rknn.load_onnx(model="{onnx}", inputs=["{input}"], input_size_list=[[1, {c}, {h}, {w}]])
assert ret == 0, "load_onnx failed"
ret = rknn.build(do_quantization={quant}{dataset})
assert ret == 0, "build failed"
ret = rknn.export_rknn("{rknn}")
assert ret == 0, "export failed"
rknn.release()
print("wrote {rknn}: copy it to the board and run `ign-edge run --model {rknn} --backend rknn`")
"#,
        mean = convert::MEAN,
        std = convert::STD,
        mean_v = per_channel(convert::MEAN),
        std_v = per_channel(convert::STD),
        input = info.input_name,
        c = info.channels,
        h = info.height,
        w = info.width,
        quant = if quantize { "True" } else { "False" },
        dataset = if quantize {
            ", dataset=\"dataset.txt\""
        } else {
            ""
        },
    )
}
