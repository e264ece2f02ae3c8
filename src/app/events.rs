//! The events' settings as the run takes them (`--events`, `--events-dir`, ...; the service's
//! `events`, `events_dir`, ... keys), checked against the anomaly settings and turned into
//! the engine's [`EventsOptions`].

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

use crate::events::{DetectorSettings, EventsOptions, OutputOptions, SnapshotFormat};

/// What makes events and where they go (the options of `ign-edge run`, documented there).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// Output specs: `jsonl:FILE`, `jsonl:-`, `webhook:http://...` (`crate::events::sink`).
    pub outputs: Vec<String>,
    /// Keep snapshots in this folder.
    pub dir: Option<PathBuf>,
    /// Most megabytes of snapshots in `dir`; the oldest are deleted first.
    pub max_mb: u64,
    pub snapshot: SnapshotFormat,
    /// Seconds above the threshold before an event starts.
    pub min_seconds: f64,
    /// Seconds below the clear level before it ends.
    pub clear_seconds: f64,
    /// The clear level is threshold × (1 − hysteresis).
    pub hysteresis: f32,
    /// Longest a network output waits for an answer, seconds.
    pub timeout: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let d = DetectorSettings::default();
        EventsConfig {
            outputs: Vec::new(),
            dir: None,
            max_mb: 200,
            snapshot: SnapshotFormat::Jpeg,
            min_seconds: d.min_duration,
            clear_seconds: d.clear_duration,
            hysteresis: d.hysteresis,
            timeout: OutputOptions::default().timeout.as_secs_f64(),
        }
    }
}

impl EventsConfig {
    /// Whether any output is named (no output: no events, whatever else is set).
    pub fn enabled(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Start the events of a run of `model` (see [`EventsConfig::options`]); none without
    /// outputs.
    pub fn start(
        &self,
        anomaly: bool,
        threshold: Option<f32>,
        model: &str,
    ) -> Result<Option<crate::events::Events>> {
        match self.options(anomaly, threshold, model)? {
            Some(o) => Ok(Some(crate::events::Events::start(&o)?)),
            None => Ok(None),
        }
    }

    /// The engine's options, for a run of `model` that scores frames (`anomaly`) against
    /// `threshold`; `None` without outputs.
    pub fn options(
        &self,
        anomaly: bool,
        threshold: Option<f32>,
        model: &str,
    ) -> Result<Option<EventsOptions>> {
        if !self.enabled() {
            if self.dir.is_some() {
                bail!("--events-dir keeps the snapshots of events: add --events SPEC");
            }
            return Ok(None);
        }
        if !anomaly {
            bail!("--events reports the anomaly score crossing its threshold: add --anomaly");
        }
        if threshold.is_none() {
            bail!("--events needs a threshold: give --threshold (or use a scene model, which ign-train export calibrates)");
        }
        if !(self.min_seconds >= 0.0 && self.clear_seconds >= 0.0) {
            bail!("--event-min-seconds and --event-clear-seconds are 0 or more");
        }
        if !(0.0..1.0).contains(&self.hysteresis) {
            bail!("--event-hysteresis is a fraction of the threshold in [0, 1), e.g. 0.2");
        }
        if !(self.timeout > 0.0 && self.timeout <= 3600.0) || self.max_mb == 0 {
            bail!("--events-timeout is above 0 (seconds) and --events-max-mb at least 1");
        }
        Ok(Some(EventsOptions {
            outputs: self.outputs.clone(),
            dir: self.dir.clone(),
            max_bytes: self.max_mb.saturating_mul(1 << 20),
            format: self.snapshot,
            detector: DetectorSettings {
                min_duration: self.min_seconds,
                clear_duration: self.clear_seconds,
                hysteresis: self.hysteresis,
            },
            output: OutputOptions {
                timeout: Duration::from_secs_f64(self.timeout),
                model: model.to_string(),
            },
            ..EventsOptions::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_need_the_anomaly_score_and_a_threshold() {
        let c = EventsConfig {
            outputs: vec!["jsonl:-".into()],
            ..Default::default()
        };
        let e = c.options(false, Some(0.1), "m").unwrap_err().to_string();
        assert!(e.contains("add --anomaly"), "{e}");
        let e = c.options(true, None, "m").unwrap_err().to_string();
        assert!(e.contains("--threshold"), "{e}");
        let o = c.options(true, Some(0.1), "m").unwrap().unwrap();
        assert_eq!((o.max_bytes, o.output.model.as_str()), (200 << 20, "m"));
        // no output, no events; a folder alone is a mistake
        assert!(EventsConfig::default()
            .options(false, None, "m")
            .unwrap()
            .is_none());
        let dir_only = EventsConfig {
            dir: Some("ev".into()),
            ..Default::default()
        };
        assert!(dir_only.options(true, Some(0.1), "m").is_err());
        let bad = EventsConfig {
            hysteresis: 1.5,
            ..c
        };
        assert!(bad.options(true, Some(0.1), "m").is_err());
    }
}
