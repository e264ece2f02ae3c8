//! ONNX export (the model file contract, docs/ARCHITECTURE.md): float32 NCHW in and out, dynamic batch axis, `ign.*` metadata.
//!
//! BatchNorm is folded into the preceding convolution with the running statistics (the
//! eval-mode network). LayerNorm (the default) is written with standard ops: ReduceMean, Sub,
//! Mul, Add, Sqrt, Div, then a per-channel scale and shift.
//! The encoder's output tensor is named `latent` and recorded as `ign.latent`.

use anyhow::{Context, Result};
use candle_nn::VarMap;
use ign_core::model::metadata::keys;
use ign_core::model::writer::{attr_float, attr_int, attr_ints, Dim, OnnxWriter};
use std::path::{Path, PathBuf};

use crate::calibrate::{Calibration, CalibrationOptions};
use crate::model::{Act, LayerSpec, Norm, NORM_EPS};
use crate::train::bnstats::{recalibrate, BnStats};
use crate::train::config::TrainConfig;

const BN_EPS: f64 = NORM_EPS;

fn tensor_vec(varmap: &VarMap, name: &str) -> Result<Vec<f32>> {
    let data = varmap.data().lock().unwrap();
    let v = data
        .get(name)
        .with_context(|| format!("checkpoint lacks {name}"))?;
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

/// Weights and bias of one layer with its BatchNorm folded in.
fn folded(
    varmap: &VarMap,
    prefix: &str,
    spec: &LayerSpec,
    norm: Norm,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut w = tensor_vec(varmap, &format!("{prefix}.conv.weight"))?;
    let mut b = if spec.has_bias() {
        tensor_vec(varmap, &format!("{prefix}.conv.bias"))?
    } else {
        vec![0.0; spec.cout]
    };
    if spec.norm && norm == Norm::Batch {
        let gamma = tensor_vec(varmap, &format!("{prefix}.bn.weight"))?;
        let beta = tensor_vec(varmap, &format!("{prefix}.bn.bias"))?;
        let mean = tensor_vec(varmap, &format!("{prefix}.bn.running_mean"))?;
        let var = tensor_vec(varmap, &format!("{prefix}.bn.running_var"))?;
        let k2 = spec.kernel * spec.kernel;
        for o in 0..spec.cout {
            let s = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            b[o] = ((b[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
            // Conv weight: [out, in, k, k]; ConvTranspose weight: [in, out, k, k].
            for i in 0..spec.cin {
                let base = if spec.transpose {
                    (i * spec.cout + o) * k2
                } else {
                    (o * spec.cin + i) * k2
                };
                for v in &mut w[base..base + k2] {
                    *v = (*v as f64 * s) as f32;
                }
            }
        }
    }
    Ok((w, b))
}

/// Write a per-sample LayerNorm over (C, H, W) (`instance`: InstanceNorm over (H, W) of each
/// channel) with per-channel affine; returns its output.
fn layer_norm(
    w: &mut OnnxWriter,
    varmap: &VarMap,
    prefix: &str,
    input: &str,
    channels: usize,
    instance: bool,
) -> Result<String> {
    let gamma = tensor_vec(varmap, &format!("{prefix}.ln.weight"))?;
    let beta = tensor_vec(varmap, &format!("{prefix}.ln.bias"))?;
    let g = w.initializer_f32(&format!("{prefix}.ln.weight"), &[1, channels, 1, 1], &gamma);
    let b = w.initializer_f32(&format!("{prefix}.ln.bias"), &[1, channels, 1, 1], &beta);
    let eps = w.initializer_f32(&format!("{prefix}.ln.eps"), &[1], &[NORM_EPS as f32]);
    let over: &[i64] = if instance { &[2, 3] } else { &[1, 2, 3] };
    let axes = || vec![attr_ints("axes", over), attr_int("keepdims", 1)];
    let n = |s: &str| format!("{prefix}.ln.{s}");
    w.node("ReduceMean", &[input], &[&n("mean")], axes());
    w.node("Sub", &[input, &n("mean")], &[&n("centered")], vec![]);
    w.node(
        "Mul",
        &[&n("centered"), &n("centered")],
        &[&n("sq")],
        vec![],
    );
    w.node("ReduceMean", &[&n("sq")], &[&n("var")], axes());
    w.node("Add", &[&n("var"), &eps], &[&n("var_eps")], vec![]);
    w.node("Sqrt", &[&n("var_eps")], &[&n("std")], vec![]);
    w.node("Div", &[&n("centered"), &n("std")], &[&n("normed")], vec![]);
    w.node("Mul", &[&n("normed"), &g], &[&n("scaled")], vec![]);
    w.node("Add", &[&n("scaled"), &b], &[&n("out")], vec![]);
    Ok(n("out"))
}

/// The ONNX bytes of the model held in `varmap`.
pub fn onnx_bytes(config: &TrainConfig, varmap: &VarMap, step: u64) -> Result<Vec<u8>> {
    onnx_bytes_with(config, varmap, step, &[])
}

/// [`onnx_bytes`] with extra metadata entries.
pub fn onnx_bytes_with(
    config: &TrainConfig,
    varmap: &VarMap,
    step: u64,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let m = &config.model;
    let mut w = OnnxWriter::new("ign");
    w.producer("ign-train");
    let shape = [
        Dim::param("N"),
        Dim::Fixed(m.channels),
        Dim::Fixed(m.image_size),
        Dim::Fixed(m.image_size),
    ];
    w.input_f32("x", &shape);
    let mut cur = "x".to_string();
    let enc = m.encoder_specs();
    let dec = m.decoder_specs();
    let n_enc = enc.len();
    for (li, (part, i, spec)) in enc
        .iter()
        .enumerate()
        .map(|(i, s)| ("enc", i, s))
        .chain(dec.iter().enumerate().map(|(i, s)| ("dec", i, s)))
        .enumerate()
    {
        let prefix = format!("{part}.{i}");
        let (wt, bias) = folded(varmap, &prefix, spec, m.norm)?;
        let wdims = if spec.transpose {
            [spec.cin, spec.cout, spec.kernel, spec.kernel]
        } else {
            [spec.cout, spec.cin, spec.kernel, spec.kernel]
        };
        let wn = w.initializer_f32(&format!("{prefix}.weight"), &wdims, &wt);
        let bn = w.initializer_f32(&format!("{prefix}.bias"), &[spec.cout], &bias);
        let k = spec.kernel as i64;
        let p = spec.padding as i64;
        let s = spec.stride as i64;
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("dilations", &[1, 1]),
        ];
        let mut conv_out = format!("{prefix}.conv");
        let op = if spec.transpose {
            "ConvTranspose"
        } else {
            "Conv"
        };
        w.node(op, &[&cur, &wn, &bn], &[&conv_out], attrs);
        if spec.norm && matches!(m.norm, Norm::Layer | Norm::Instance) {
            conv_out = layer_norm(
                &mut w,
                varmap,
                &prefix,
                &conv_out,
                spec.cout,
                m.norm == Norm::Instance,
            )?;
        }
        let last_enc = li + 1 == n_enc;
        let last = li + 1 == n_enc + dec.len();
        let out_name = if last_enc {
            "latent".to_string()
        } else if last {
            "y".to_string()
        } else {
            format!("{prefix}.act")
        };
        match spec.act {
            Act::LeakyRelu => w.node(
                "LeakyRelu",
                &[&conv_out],
                &[&out_name],
                vec![attr_float("alpha", 0.2)],
            ),
            Act::Relu => w.node("Relu", &[&conv_out], &[&out_name], vec![]),
            Act::Tanh => w.node("Tanh", &[&conv_out], &[&out_name], vec![]),
            Act::None => w.node("Identity", &[&conv_out], &[&out_name], vec![]),
        }
        cur = out_name;
    }
    w.output_f32("y", &shape);
    write_metadata(&mut w, config, step, extra);
    Ok(w.to_bytes())
}

/// The `ign.*` metadata of the model: the contract's keys, the trainer's settings, the recipe
/// stage that trained it, and `extra`.
fn write_metadata(w: &mut OnnxWriter, config: &TrainConfig, step: u64, extra: &[(&str, &str)]) {
    let m = &config.model;
    w.metadata(keys::DATASET, &config.dataset_name);
    w.metadata(keys::CHANNELS, &m.channels.to_string());
    w.metadata(keys::HEIGHT, &m.image_size.to_string());
    w.metadata(keys::WIDTH, &m.image_size.to_string());
    w.metadata(keys::VALUE_RANGE, "-1,1");
    w.metadata(keys::PRECISION, "fp32");
    w.metadata(keys::LATENT, "latent");
    w.metadata(
        keys::TRAINER,
        &format!(
            "ign-train {}; steps={step}; seed={}; width={}; norm={:?}; batch={}; noise={:?}",
            env!("CARGO_PKG_VERSION"),
            config.seed,
            m.width,
            m.norm,
            config.batch,
            config.noise
        ),
    );
    if let Some(r) = &config.recipe {
        w.metadata(keys::RECIPE, &r.to_string());
    }
    for (k, v) in extra {
        w.metadata(k, v);
    }
}

/// The variant of `model.onnx` for the first application to noise: `model.noise.onnx`.
pub fn noise_variant_path(out: &Path) -> std::path::PathBuf {
    ign_core::model::noise_variant_path(out)
}

/// How [`export_with`] exports a checkpoint.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The BatchNorm statistics folded in.
    pub stats: BnStats,
    /// The training data (`None`: the run's).
    pub data: Option<PathBuf>,
    /// Export the last step's weights of a run with a moving average.
    pub raw_weights: bool,
    /// Whether to calibrate the anomaly threshold ([`crate::calibrate`]).
    pub calibrate: Calibrate,
    /// How.
    pub calibration: CalibrationOptions,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            stats: BnStats::Data,
            data: None,
            raw_weights: false,
            calibrate: Calibrate::Auto,
            calibration: CalibrationOptions::default(),
        }
    }
}

/// Whether export calibrates a scene model's anomaly threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibrate {
    /// For runs on a folder of images (scenes), not on IDX digits.
    Auto,
    Always,
    Never,
}

/// What [`export_with`] wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The files: the model, then its noise variant if any.
    pub files: Vec<PathBuf>,
    /// The threshold written into the model's metadata, if calibrated.
    pub calibration: Option<Calibration>,
}

/// Export the model of a checkpoint (file or run folder) to `out`; returns the files written.
///
/// A BatchNorm model gets the statistics of `stats` inputs (see [`crate::train::bnstats`]; `data`
/// needs the run's data, `data_path` or the checkpoint's) and, unless `stats` is `running`, a
/// second file [`noise_variant_path`] with the statistics of noise. A run with `--ema` gives
/// its moving average of the weights ([`crate::train::ema`]) unless `raw_weights`; the file's
/// `ign.weights` metadata says which (`ema` or `last`). A run on a folder of images gets its
/// anomaly threshold ([`export_with`]).
pub fn export(
    checkpoint: &Path,
    out: &Path,
    stats: BnStats,
    data_path: Option<&Path>,
    raw_weights: bool,
) -> Result<Vec<PathBuf>> {
    let opts = ExportOptions {
        stats,
        data: data_path.map(Path::to_path_buf),
        raw_weights,
        ..Default::default()
    };
    Ok(export_with(checkpoint, out, &opts)?.files)
}

/// [`export`] as `opts` say, with the anomaly threshold of a scene model: the model's f scores
/// the run's held-out frames (the data's test split) and [`crate::calibrate::calibrate`] picks
/// the threshold, written as the `ign.anomaly.*` metadata of the model (not of its noise
/// variant).
pub fn export_with(checkpoint: &Path, out: &Path, opts: &ExportOptions) -> Result<Exported> {
    let file = crate::train::recipe::checkpoint_file(checkpoint)?;
    let ck = crate::train::checkpoint::load(&file)?;
    let (model, varmap) = ck.model()?;
    let weights = if ck.has_ema() && !opts.raw_weights {
        ck.restore_ema_weights(&varmap)?;
        log::info!(
            "exporting the moving average of the weights (--ema {}; --raw-weights for those of step {})",
            ck.config.ema,
            ck.step
        );
        "ema"
    } else {
        "last"
    };
    let stats = opts.stats;
    let pair = !(ck.config.model.norm != Norm::Batch || stats == BnStats::Running);
    let mut outs = vec![out.to_path_buf()];
    if pair && stats != BnStats::Noise {
        outs.push(noise_variant_path(out));
    }
    let data = opts
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(&ck.config.data));
    let run_data = PathBuf::from(&ck.config.data);
    refuse_overwriting(&outs, &[file.clone(), run_data, data.clone()])?;
    let calibrating = match opts.calibrate {
        Calibrate::Always => true,
        Calibrate::Never => false,
        Calibrate::Auto => {
            data.exists() && crate::data::detect_kind(&data)? == crate::data::DataKind::Folder
        }
    };
    let split = if pair || calibrating {
        Some(load_split(&ck.config, &data, pair)?)
    } else {
        None
    };
    let base = [("ign.weights", weights.to_string())];
    let kinds = if pair {
        vec![stats, BnStats::Noise]
    } else {
        vec![stats]
    };
    // the model, and (unless it already has them) the noise variant with noise statistics;
    // both are made and checked before either replaces the files there
    let (mut made, mut calibration) = (Vec::new(), None);
    for (&kind, path) in kinds.iter().zip(&outs) {
        let mut extra: Vec<(&str, String)> = base.to_vec();
        if pair {
            let split = split.as_ref().expect("loaded for BatchNorm");
            let noise = crate::z::noise::Noise::new(ck.config.noise, &split.train);
            let batch = ck.config.batch;
            recalibrate(&model, kind, &split.train, &noise, batch, ck.config.seed)?;
            extra.push(("ign.bn_stats", kind.as_str().to_string()));
        }
        let bytes_of = |extra: &[(&str, String)]| {
            let e: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            onnx_bytes_with(&ck.config, &varmap, ck.step, &e)
        };
        let mut bytes = bytes_of(&extra)?;
        if calibrating && made.is_empty() {
            let split = split.as_ref().expect("loaded for calibration");
            let m = ign_core::model::Model::from_bytes(path, &bytes)?;
            let c = crate::calibrate::calibrate(&m, &split.test, &opts.calibration)
                .with_context(|| format!("{}: anomaly threshold", data.display()))?;
            extra.extend(c.metadata());
            bytes = bytes_of(&extra)?;
            calibration = Some(c);
        }
        check_loads(path, &bytes)?;
        made.push(bytes);
    }
    let files: Vec<(&Path, &[u8])> = outs
        .iter()
        .map(PathBuf::as_path)
        .zip(made.iter().map(Vec::as_slice))
        .collect();
    ign_core::fsio::atomic_write_all(&files)?;
    Ok(Exported {
        files: outs,
        calibration,
    })
}

/// The run's data at `data`, split as the run split it (its test fraction), in the model's
/// shape.
fn load_split(config: &TrainConfig, data: &Path, bn: bool) -> Result<crate::data::Split> {
    let m = &config.model;
    crate::data::load(
        data,
        &crate::data::DataOptions {
            image_size: Some(m.image_size),
            channels: Some(m.channels),
            test_fraction: config.test_fraction,
            ..Default::default()
        },
    )
    .with_context(|| {
        let need = if bn {
            "BatchNorm statistics need the training data"
        } else {
            "the anomaly threshold needs the run's held-out frames"
        };
        format!("{need}: pass --data (the run used {})", config.data)
    })
}

/// The exported bytes load as an IGN model (tract types the whole graph), before any file
/// is replaced.
fn check_loads(path: &Path, bytes: &[u8]) -> Result<()> {
    ign_core::model::Model::from_bytes(path, bytes)
        .map(|_| ())
        .with_context(|| {
            format!(
                "{}: the exported model does not load; nothing was written",
                path.display()
            )
        })
}

/// Refuse an output that is one of the inputs (the checkpoint, the data): export never
/// writes over what it reads.
fn refuse_overwriting(outs: &[PathBuf], inputs: &[PathBuf]) -> Result<()> {
    for o in outs {
        if let Some(i) = inputs.iter().find(|i| ign_core::fsio::same_file(o, i)) {
            anyhow::bail!(
                "{}: --out would overwrite {} that export reads; pick another file, e.g. models/my-ign.onnx",
                o.display(),
                i.display()
            );
        }
    }
    Ok(())
}
