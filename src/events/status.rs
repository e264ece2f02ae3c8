//! The events' counters, as `/stats.json` shows them ([`EventsReport`], its `events` key) and
//! `/metrics` ([`EventsReport::prometheus`]: `ign_edge_events_*`, per output with an
//! `output` label).

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::outlet::OutletReport;

/// Counted on the display thread and the events' thread.
#[derive(Default)]
pub(super) struct Totals {
    pub started: AtomicU64,
    pub ended: AtomicU64,
    pub active: AtomicBool,
    pub snapshots: AtomicU64,
    pub snapshot_errors: AtomicU64,
    /// Event phases and pictures the events' own queue had no room for.
    pub overflow: AtomicU64,
}

impl Totals {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads every counter of a run's events; cheap to clone, valid after the run.
#[derive(Clone)]
pub struct EventsStatus {
    pub(super) totals: Arc<Totals>,
    pub(super) outputs: Arc<Vec<Box<dyn Fn() -> OutletReport + Send + Sync>>>,
}

impl EventsStatus {
    /// The counters now.
    pub fn report(&self) -> EventsReport {
        let t = &self.totals;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventsReport {
            started: n(&t.started),
            ended: n(&t.ended),
            active: t.active.load(Ordering::Relaxed),
            snapshots: n(&t.snapshots),
            snapshot_errors: n(&t.snapshot_errors),
            overflow: n(&t.overflow),
            outputs: self.outputs.iter().map(|r| r()).collect(),
        }
    }
}

/// A run's events so far.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EventsReport {
    /// Events started and ended.
    pub started: u64,
    pub ended: u64,
    /// Whether one is under way.
    pub active: bool,
    /// Snapshots written into the events folder, and those that could not be (a full disk).
    pub snapshots: u64,
    pub snapshot_errors: u64,
    /// Event phases the events' own queue had no room for (before any output).
    pub overflow: u64,
    /// Each output's counters.
    pub outputs: Vec<OutletReport>,
}

impl EventsReport {
    /// The counters in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        let mut m = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: f64| {
            m += &format!(
                "# HELP ign_edge_events_{name} {help}\n# TYPE ign_edge_events_{name} {kind}\nign_edge_events_{name} {v}\n"
            );
        };
        one(
            "started_total",
            "counter",
            "Events started.",
            self.started as f64,
        );
        one("ended_total", "counter", "Events ended.", self.ended as f64);
        let active = f64::from(u8::from(self.active));
        one("active", "gauge", "1 while an event is under way.", active);
        let (s, e) = (self.snapshots as f64, self.snapshot_errors as f64);
        one("snapshots_total", "counter", "Snapshots written.", s);
        one(
            "snapshot_errors_total",
            "counter",
            "Snapshots not written.",
            e,
        );
        let o = self.overflow as f64;
        one(
            "overflow_total",
            "counter",
            "Event phases the events queue dropped.",
            o,
        );
        type Field = fn(&OutletReport) -> Option<f64>;
        let per_output: [(&str, &str, &str, Field); 7] = [
            (
                "queued_total",
                "counter",
                "Deliveries queued, per output.",
                |r| Some(r.queued as f64),
            ),
            ("pending", "gauge", "Deliveries waiting, per output.", |r| {
                Some(r.pending as f64)
            }),
            (
                "sent_total",
                "counter",
                "Deliveries sent, per output.",
                |r| Some(r.sent as f64),
            ),
            (
                "dropped_total",
                "counter",
                "Deliveries dropped for a full queue, per output.",
                |r| Some(r.dropped as f64),
            ),
            (
                "retried_total",
                "counter",
                "Retries after a failure, per output.",
                |r| Some(r.retried as f64),
            ),
            (
                "failed_total",
                "counter",
                "Deliveries abandoned, per output.",
                |r| Some(r.failed as f64),
            ),
            (
                "connected",
                "gauge",
                "1 while the output's connection is up.",
                |r| r.connected.map(|c| f64::from(u8::from(c))),
            ),
        ];
        for (name, kind, help, field) in per_output {
            let lines: Vec<String> = self
                .outputs
                .iter()
                .filter_map(|r| {
                    field(r).map(|v| {
                        format!(
                            "ign_edge_events_{name}{{output=\"{}\"}} {v}\n",
                            label(&r.output)
                        )
                    })
                })
                .collect();
            if !lines.is_empty() {
                m += &format!(
                    "# HELP ign_edge_events_{name} {help}\n# TYPE ign_edge_events_{name} {kind}\n"
                );
                m += &lines.concat();
            }
        }
        m
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_each_output_as_a_label() {
        let r = EventsReport {
            started: 2,
            outputs: vec![OutletReport {
                output: "webhook:http://h/\"x\"".into(),
                sent: 3,
                retried: 4,
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = r.prometheus();
        assert!(m.contains("ign_edge_events_started_total 2\n"), "{m}");
        assert!(
            m.contains("ign_edge_events_retried_total{output=\"webhook:http://h/\\\"x\\\"\"} 4\n"),
            "{m}"
        );
        assert!(
            !m.contains("ign_edge_events_connected"),
            "no connection, no series: {m}"
        );
    }
}
