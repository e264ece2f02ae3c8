//! The fidelity report of a quantized model against its fp32 original, and its printed table.

use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

use super::calib::CalibSet;
use super::fidelity::{self, SetFidelity};
use super::{int8, QuantizeOptions};
use crate::backend::cpu::CpuBackend;
use crate::model::{Model, Precision};

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

/// What the report takes from the making of the variant.
pub(super) struct Measured {
    pub(super) fp32_file_bytes: u64,
    pub(super) file_bytes: u64,
    pub(super) calibration: Option<String>,
    pub(super) method: Option<String>,
    pub(super) candidates: Vec<Candidate>,
    pub(super) rewrite_err: Option<f64>,
    pub(super) summary: Option<int8::Int8Summary>,
}

/// The fidelity report of `variant` against its fp32 `model`, measured on `set`'s held-out images.
pub(super) fn measure(
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
        if !q.in_float.is_empty() {
            let list: Vec<String> = q
                .in_float
                .iter()
                .map(|f| format!("{} ({})", f.conv, f.why))
                .collect();
            line(&mut s, "in float", list.join(", "));
        }
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
