//! Latency statistics.

use serde::{Deserialize, Serialize};

/// Summary of a set of latencies, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub n: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub std_us: f64,
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

impl Latency {
    /// Summarise samples given in seconds.
    ///
    /// ```
    /// let l = ign_core::stats::Latency::from_secs(&[0.001, 0.002, 0.003, 0.004]);
    /// assert_eq!(l.p50_us, 2000.0);
    /// assert_eq!(l.max_us, 4000.0);
    /// assert!((l.mean_us - 2500.0).abs() < 1e-6);
    /// ```
    pub fn from_secs(samples: &[f64]) -> Latency {
        let mut v: Vec<f64> = samples.iter().map(|s| s * 1e6).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Latency {
            n,
            p50_us: quantile(&v, 0.5),
            p90_us: quantile(&v, 0.9),
            p99_us: quantile(&v, 0.99),
            max_us: v.last().copied().unwrap_or(f64::NAN),
            mean_us: mean,
            std_us: var.sqrt(),
        }
    }
}
