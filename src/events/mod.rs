//! Events out: when the anomaly score (`--anomaly`) crosses its threshold for long enough, an
//! event starts, and it ends when the score has stayed low for a while; each phase of an
//! event goes to the outputs named by `--events SPEC` (a JSON-lines file, a webhook, MQTT
//! with Home Assistant discovery), with a snapshot of what triggered it. An engine module, a peer of the web page:
//! it watches the loop through [`crate::pipeline::feed::Watcher`] and never makes it wait.
//!
//! ```text
//!  display thread                   events thread                      one thread per output
//!  watcher: detector ──[queue 8]──> snapshot: encode, write ──[queue]──> deliver, retry, count
//!  (numbers; a canvas clone          (folder capped, oldest   (drops      (backoff, bounded stop)
//!   once per event)                   deleted first)           when full)
//! ```
//!
//! - `detector`: the state machine (minimum duration up, hysteresis and clear time down);
//! - `watcher`: the loop's side ([`crate::pipeline::feed::Watcher`]);
//! - `dispatch`: the events' thread (snapshots, fan-out to the outputs);
//! - `snapshots`: encoding (JPEG, PNG) and the capped folder;
//! - `event`: what an output is given ([`Event`], [`Snapshot`]), RFC 3339 times, ids;
//! - `sink/`: the [`EventSink`] trait and one file per output, found by name in
//!   [`sink::OUTPUTS`] (as the loop's sinks are);
//! - `outlet`: the runner of one output ([`Outlet`]): its own thread, a bounded queue that
//!   drops (counted) rather than waits, retries with exponential backoff, a bounded stop;
//! - `status`: the counters `/stats.json` and `/metrics` show ([`EventsReport`]).

pub mod detector;
mod dispatch;
pub mod event;
pub mod outlet;
pub mod sink;
pub mod snapshots;
pub mod status;
mod watcher;

pub use detector::DetectorSettings;
pub use event::{Event, Phase, Snapshot};
pub use outlet::{Delivery, Outlet, OutletOptions, OutletReport};
pub use sink::{EventSink, OutputOptions, Reading};
pub use snapshots::SnapshotFormat;
pub use status::{EventsReport, EventsStatus};

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pipeline::feed::Watcher;

/// Event phases waiting for the events' thread (snapshots to encode); more are dropped.
pub const QUEUE: usize = 8;
/// Longest [`Events::stop`] takes: the last phases get this long to go out, then outputs
/// still busy are left behind.
pub const STOP_GRACE: Duration = Duration::from_millis(1200);

/// What makes events and where they go (`--events`, `--events-dir`, ...).
#[derive(Clone, Debug)]
pub struct EventsOptions {
    /// Output specs (`jsonl:FILE`, `webhook:URL`, ...; [`sink::OUTPUTS`]).
    pub outputs: Vec<String>,
    /// The snapshots' folder (none: snapshots go to the outputs only).
    pub dir: Option<PathBuf>,
    /// Most bytes of snapshots in `dir`; the oldest are deleted first.
    pub max_bytes: u64,
    pub format: SnapshotFormat,
    pub detector: DetectorSettings,
    pub outlet: OutletOptions,
    pub output: OutputOptions,
}

impl Default for EventsOptions {
    fn default() -> Self {
        EventsOptions {
            outputs: Vec::new(),
            dir: None,
            max_bytes: 200 << 20,
            format: SnapshotFormat::Jpeg,
            detector: DetectorSettings::default(),
            outlet: OutletOptions::default(),
            output: OutputOptions::default(),
        }
    }
}

/// A run's events: the watcher the loop feeds, the events' thread and the outputs' threads.
pub struct Events {
    watcher: Arc<watcher::EventsWatcher>,
    outlets: Arc<Mutex<Vec<Outlet>>>,
    status: EventsStatus,
    /// The events' thread and the word that it ended.
    thread: Option<(JoinHandle<()>, Receiver<()>)>,
    description: String,
}

impl Events {
    /// Open every output (a bad spec fails here, before the loop starts) and start.
    pub fn start(opts: &EventsOptions) -> Result<Events> {
        let folder = opts
            .dir
            .as_deref()
            .map(|d| snapshots::Folder::open(d, opts.max_bytes))
            .transpose()?;
        let mut outlets = Vec::new();
        for spec in &opts.outputs {
            let sink = sink::open(spec, &opts.output)?;
            outlets.push(Outlet::start(sink, &opts.outlet).context("starting an output thread")?);
        }
        let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
        let description = match &folder {
            Some(f) => format!(
                "events -> {} (snapshots in {})",
                names.join(", "),
                f.dir().display()
            ),
            None => format!("events -> {}", names.join(", ")),
        };
        let totals = Arc::new(status::Totals::default());
        let status = EventsStatus {
            totals: totals.clone(),
            outputs: Arc::new(
                outlets
                    .iter()
                    .map(|o| Box::new(o.counters()) as Box<dyn Fn() -> OutletReport + Send + Sync>)
                    .collect(),
            ),
        };
        let outlets = Arc::new(Mutex::new(outlets));
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        let dispatch = dispatch::Dispatch {
            format: opts.format,
            folder,
            outlets: outlets.clone(),
            totals: totals.clone(),
            disk_failing: false,
        };
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                dispatch.run(rx);
                let _ = done_tx.send(());
            })?;
        let watcher = watcher::EventsWatcher::new(
            detector::Detector::new(opts.detector),
            jobs,
            opts.output.model.clone(),
            opts.format != SnapshotFormat::None,
            totals,
        );
        Ok(Events {
            watcher: Arc::new(watcher),
            outlets,
            status,
            thread: Some((thread, done)),
            description,
        })
    }

    /// What the loop feeds.
    pub fn watcher(&self) -> Arc<dyn Watcher> {
        self.watcher.clone()
    }

    /// The counters, for the web page.
    pub fn status(&self) -> EventsStatus {
        self.status.clone()
    }

    /// What it is, for the run's log.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// End the event under way, give the last phases [`STOP_GRACE`] to go out, and stop every
    /// output; an output stuck in a call is left behind, so this never takes longer.
    pub fn stop(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        self.watcher.finish();
        if let Some((thread, done)) = self.thread.take() {
            // the events' thread ends once it has handed the last phases to the outputs
            let half = (deadline - Instant::now()) / 2;
            if done.recv_timeout(half).is_ok() {
                let _ = thread.join();
            } else {
                log::warn!("events: the snapshot writer did not finish in time; left behind");
            }
        }
        let mut outlets = self.outlets.lock().unwrap_or_else(|p| p.into_inner());
        outlets.iter_mut().for_each(Outlet::begin_stop);
        for o in outlets.iter_mut() {
            o.stop(deadline);
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::telemetry::Telemetry;

    fn frame(score: f32) -> Telemetry {
        Telemetry {
            anomaly_score: Some(score),
            anomaly_threshold: Some(0.5),
            anomaly_peak: Some((3, 4)),
            ..Default::default()
        }
    }

    #[test]
    fn a_start_waits_for_its_picture_and_stopping_ends_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.jsonl");
        let mut events = Events::start(&EventsOptions {
            outputs: vec![format!("jsonl:{}", file.display())],
            dir: Some(dir.path().join("snaps")),
            detector: DetectorSettings {
                min_duration: 0.0,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let w = events.watcher();
        w.telemetry(&frame(0.1));
        assert!(!w.wants_picture(), "nothing rising: no picture composed");
        w.telemetry(&frame(0.9)); // starts at once: waits for the next picture
        assert!(w.wants_picture());
        w.picture(&image::RgbImage::new(8, 4), 7);
        assert!(!w.wants_picture(), "one picture per event");
        w.telemetry(&frame(0.45)); // above the clear level (0.4): still on
        events.stop();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            (&lines[0]["phase"], &lines[1]["phase"]),
            (&"start".into(), &"end".into())
        );
        assert_eq!(lines[0]["peak"], serde_json::json!([3, 4]));
        let snap = lines[0]["snapshot"].as_str().unwrap();
        assert!(dir.path().join("snaps").join(snap).is_file());
        let r = events.status().report();
        assert_eq!(
            (r.started, r.ended, r.snapshots, r.active),
            (1, 1, 1, false)
        );
        assert_eq!((r.outputs[0].sent, r.outputs[0].queued), (2, 2));
        // stopped: frames after it make nothing
        w.telemetry(&frame(0.9));
        assert_eq!(events.status().report().started, 1);
    }
}
