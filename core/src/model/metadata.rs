//! The `ign.*` metadata keys of the model file contract (docs/ARCHITECTURE.md).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Metadata keys written by `ign-train export` and read by the runtime.
pub mod keys {
    pub const DATASET: &str = "ign.dataset";
    pub const CHANNELS: &str = "ign.channels";
    pub const HEIGHT: &str = "ign.height";
    pub const WIDTH: &str = "ign.width";
    pub const VALUE_RANGE: &str = "ign.value_range";
    pub const PRECISION: &str = "ign.precision";
    pub const TRAINER: &str = "ign.trainer";
    /// Name of the encoder's output tensor (the latent), for the latent tools.
    pub const LATENT: &str = "ign.latent";
    /// The recipe stage that trained the model (`ign-train train --recipe`), e.g.
    /// `ign-mnist@0123456789ab stage typical (6 of 6)`: the recipe's name, the first 12 hex
    /// digits of the SHA-256 of its file, the stage and its place.
    pub const RECIPE: &str = "ign.recipe";
    /// A scene model's anomaly threshold (a score above it is anomalous), calibrated by
    /// `ign-train export` on held-out normal frames ([`crate::anomaly`]).
    pub const ANOMALY_THRESHOLD: &str = "ign.anomaly.threshold";
    /// The score the threshold is for (`smooth-max`, `mean`, `idem`, `sum`; ign-edge before
    /// `sum` existed refuses a model calibrated for it).
    pub const ANOMALY_SCORE: &str = "ign.anomaly.score";
    /// The false-alarm rate the threshold was calibrated for, on the held-out normal frames.
    pub const ANOMALY_FALSE_ALARM_RATE: &str = "ign.anomaly.false_alarm_rate";
}

/// Numeric precision of a model's weights and arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    /// From `ign.precision`; fp32 when absent or unknown (foreign exporters).
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Precision {
        match meta
            .get(keys::PRECISION)
            .map(|s| s.trim().to_ascii_lowercase())
        {
            Some(s) if s == "fp16" => Precision::Fp16,
            Some(s) if s == "int8" => Precision::Int8,
            _ => Precision::Fp32,
        }
    }

    /// The lowercase name (`fp32`, `fp16`, `int8`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

impl Precision {
    /// Every precision's name, as the command lines take them.
    pub const NAMES: [&'static str; 3] = ["fp32", "fp16", "int8"];
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;

    /// `fp32`, `fp16` or `int8` (any case).
    ///
    /// ```
    /// use ign_core::model::Precision;
    /// assert_eq!("INT8".parse::<Precision>().unwrap(), Precision::Int8);
    /// assert!("int4".parse::<Precision>().is_err());
    /// ```
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" => Ok(Precision::Fp32),
            "fp16" => Ok(Precision::Fp16),
            "int8" => Ok(Precision::Int8),
            _ => anyhow::bail!("{s}: not a precision; use fp32, fp16 or int8"),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
