//! Events out: when the anomaly score (`--anomaly`) crosses its threshold for long enough, an
//! event starts, and it ends when the score has stayed low for a while; each phase of an
//! event goes to the outputs named by `--events SPEC` (a JSON-lines file, a webhook; MQTT is
//! reserved), with a snapshot of what triggered it. An engine module, a peer of the web page:
//! it watches the loop through [`crate::pipeline::feed::Watcher`] and never makes it wait.
//!
//! - `event`: what an output is given ([`Event`], [`Snapshot`]), RFC 3339 times, ids;
//! - `sink/`: the [`EventSink`] trait and one file per output, found by name in
//!   [`sink::OUTPUTS`] (as the loop's sinks are);
//! - `outlet`: the runner of one output ([`Outlet`]): its own thread, a bounded queue that
//!   drops (counted) rather than waits, retries with exponential backoff, counters for
//!   `/stats.json` and `/metrics`, a bounded stop.

pub mod detector;
pub mod event;
pub mod outlet;
pub mod sink;
pub mod snapshots;

pub use event::{Event, Phase, Snapshot};
pub use outlet::{Delivery, Outlet, OutletOptions, OutletReport};
pub use sink::{EventSink, OutputOptions, Reading};
