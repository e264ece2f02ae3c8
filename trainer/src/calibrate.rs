//! The anomaly threshold of a scene model, calibrated at export on the run's held-out normal
//! frames (the data's test split): each frame is scored with the exported ONNX file run by
//! `ign_core`'s CPU backend, as `ign-edge score` and `ign-edge run --anomaly` score them
//! ([`ign_core::anomaly`]), and the threshold is the one that keeps the stated share of them
//! above it ([`anomaly::threshold_for`]). It goes into the model's metadata as
//! `ign.anomaly.threshold`, `ign.anomaly.score` and `ign.anomaly.false_alarm_rate`.

use anyhow::{bail, Context, Result};
use ign_core::anomaly::{self, ScoreKind};
use ign_core::backend::cpu::CpuBackend;
use ign_core::backend::Backend;
use ign_core::model::metadata::keys;
use ign_core::model::Model;
use ign_core::tensor::ImageBatch;

use crate::data::Dataset;

/// The default false-alarm rate: 1% of normal frames above the threshold.
pub const DEFAULT_FALSE_ALARM_RATE: f64 = 0.01;

/// Frames per call of the backend.
const CHUNK: usize = 16;

/// How export calibrates the threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationOptions {
    /// The share of held-out normal frames allowed above the threshold.
    pub false_alarm_rate: f64,
    /// A threshold to write instead of the calibrated one (the held-out frames are still
    /// scored, to report the rate it gives).
    pub threshold: Option<f32>,
    pub score: ScoreKind,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            false_alarm_rate: DEFAULT_FALSE_ALARM_RATE,
            threshold: None,
            score: ScoreKind::default(),
        }
    }
}

/// A calibrated threshold and what it gives on the frames it was calibrated on.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub threshold: f32,
    pub score: ScoreKind,
    /// The false-alarm rate asked for (with a given threshold: the rate it gives).
    pub false_alarm_rate: f64,
    /// The share of the held-out frames above the threshold.
    pub observed_rate: f64,
    /// How many held-out frames were scored.
    pub frames: usize,
    /// The false-alarm rate the threshold gives on new normal frames, on average
    /// ([`anomaly::expected_false_alarm_rate`]): the rate asked for, or more when too few
    /// frames were held out to promise it.
    pub expected_rate: f64,
    /// Whether the threshold was given (`--threshold`) rather than calibrated.
    pub given: bool,
}

impl Calibration {
    /// The `ign.anomaly.*` metadata entries.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::ANOMALY_THRESHOLD, self.threshold.to_string()),
            (keys::ANOMALY_SCORE, self.score.as_str().to_string()),
            (
                keys::ANOMALY_FALSE_ALARM_RATE,
                self.false_alarm_rate.to_string(),
            ),
        ]
    }

    /// One line for the user: the threshold, where it came from, the rate it gives.
    pub fn summary(&self) -> String {
        let origin = if self.given {
            "given with --threshold".to_string()
        } else {
            format!(
                "calibrated for a false-alarm rate of {}%",
                (self.false_alarm_rate * 100.0 * 1e6).round() / 1e6
            )
        };
        let mut line = format!(
            "anomaly threshold {} on the {} score ({origin}): {:.1}% of the {} held-out normal frames lie above it",
            self.threshold,
            self.score.as_str(),
            self.observed_rate * 100.0,
            self.frames
        );
        if !self.given {
            line += &format!(
                ", {:.2}% of new normal frames expected",
                self.expected_rate * 100.0
            );
        }
        line
    }
}

/// The `kind` score of each image of `images` by `model` (on `ign_core`'s CPU backend, one
/// thread), in order.
pub fn scores(model: &Model, images: &Dataset, kind: ScoreKind) -> Result<Vec<f32>> {
    let info = &model.info;
    let shape = (images.channels, images.height, images.width);
    if (info.channels, info.height, info.width) != shape {
        bail!(
            "{}: the model takes {}x{}x{} images, the frames are {}x{}x{}",
            info.path.display(),
            info.channels,
            info.height,
            info.width,
            shape.0,
            shape.1,
            shape.2
        );
    }
    let mut backend = CpuBackend::new(model, Some(1))?;
    let applications = kind.applications();
    let mut out = Vec::with_capacity(images.len());
    let ids: Vec<usize> = (0..images.len()).collect();
    for chunk in ids.chunks(CHUNK) {
        let x = ImageBatch::new(
            images.gather(chunk),
            [chunk.len(), shape.0, shape.1, shape.2],
        )?;
        let outs = backend.project(&x, applications)?;
        for i in 0..x.len() {
            let ffx = outs.get(1).map(|o| o.image(i));
            out.push(anomaly::score(kind, x.image(i), outs[0].image(i), ffx, shape)?.score);
        }
    }
    Ok(out)
}

/// Calibrate the threshold of `model` on the held-out normal frames `normal`.
///
/// The threshold is [`anomaly::threshold_for`] of their scores (the conformal quantile: a
/// new normal frame lies above it with at most the stated probability), raised by a relative 1e-5
/// so that a frame at the threshold stays below it when the runtime's batch size rounds its
/// score differently in the last bits.
pub fn calibrate(
    model: &Model,
    normal: &Dataset,
    opts: &CalibrationOptions,
) -> Result<Calibration> {
    if normal.is_empty() {
        bail!("no held-out frames to calibrate the anomaly threshold on; give --threshold");
    }
    if opts.threshold.is_none() {
        if let Some(need) = anomaly::frames_for_rate(opts.false_alarm_rate) {
            if normal.len() < need {
                let best = anomaly::expected_false_alarm_rate(normal.len(), opts.false_alarm_rate);
                log::warn!(
                    "{} held-out frames can promise a false-alarm rate of {:.2}% at best (1 in {}), not {}%: hold out at least {need} (capture more frames, or train with a larger --test-fraction)",
                    normal.len(),
                    100.0 * best,
                    normal.len() + 1,
                    opts.false_alarm_rate * 100.0
                );
            }
        }
    }
    let s = scores(model, normal, opts.score).context("scoring the held-out frames")?;
    let threshold = match opts.threshold {
        Some(t) => {
            if !(t.is_finite() && t >= 0.0) {
                bail!("--threshold {t} must be a finite score of at least 0");
            }
            t
        }
        None => {
            let t = anomaly::threshold_for(&s, opts.false_alarm_rate)?;
            t + t.abs() * 1e-5
        }
    };
    let above = s.iter().filter(|&&v| v > threshold).count();
    let observed_rate = above as f64 / s.len() as f64;
    Ok(Calibration {
        threshold,
        score: opts.score,
        // a given threshold is recorded with the rate it gives
        false_alarm_rate: if opts.threshold.is_some() {
            observed_rate
        } else {
            opts.false_alarm_rate
        },
        observed_rate,
        frames: s.len(),
        expected_rate: anomaly::expected_false_alarm_rate(s.len(), opts.false_alarm_rate),
        given: opts.threshold.is_some(),
    })
}
