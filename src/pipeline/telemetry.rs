//! The loop's figures of the moment, kept in one place by the inference stage and read by
//! everything that reports them: the overlay ([`super::overlay`]), the web page's
//! `/stats.json` and `/metrics` (`crate::web`), and any sink through `Sink::status`. The run's
//! totals at the end are [`super::Summary`].

use serde::Serialize;

/// What the loop is doing now.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Telemetry {
    /// The model's name (its file stem).
    pub model: String,
    pub precision: String,
    /// Applications of f per frame.
    pub steps: usize,
    /// Frames through the model over the last second.
    pub fps: f64,
    /// Mean per frame of each stage, ms.
    pub capture_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub display_ms: f64,
    /// Capture to display of the last frame shown, ms.
    pub e2e_ms: f64,
    /// Frames and pictures the mailboxes replaced so far.
    pub dropped: u64,
    /// With `--anomaly`: the last frame's score, the threshold and the verdict
    /// ([`crate::anomaly`]; no verdict without a threshold).
    pub anomaly_score: Option<f32>,
    pub anomaly_threshold: Option<f32>,
    pub anomalous: Option<bool>,
    /// With `--anomaly`: where the last frame's heatmap peaks, `(x, y)` in the model's pixels.
    pub anomaly_peak: Option<(u32, u32)>,
}
