//! Event outputs, one file each, chosen by a spec string (`--events SPEC`, several allowed)
//! through the name → constructor table [`OUTPUTS`], as the loop's sinks are: `jsonl:FILE`
//! or `jsonl:-`, `webhook:http://HOST[:PORT]/PATH`, `mqtt[s]://HOST[:PORT]/PREFIX[?options]`
//! (Home Assistant discovery). Each file parses its own part of the spec.
//!
//! An output is an [`EventSink`]: blocking calls on a thread of its own (the
//! [`super::outlet::Outlet`] that runs it, with its bounded queue, retries and counters), so
//! an output may take its time, connect, time out and fail without the loop noticing.
//!
//! Adding an output: a file here with `open_spec(arg, &OutputOptions)`, a line in
//! [`OUTPUTS`]; `deliver` returns an error to be retried with backoff (the runner counts and
//! logs it); `connected`, `tick`, `reading` and `close` are there for outputs that hold a
//! connection (MQTT).

pub mod jsonl;
pub mod mqtt;
pub mod webhook;

use anyhow::{bail, Result};
use std::time::Duration;

use super::event::{Event, Snapshot};

/// The anomaly score of the moment, for outputs that publish it as a state (at most once a
/// second, and whenever `active` changes).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Reading {
    /// RFC 3339, UTC.
    pub time: String,
    pub score: f32,
    pub threshold: f32,
    /// Whether an event is under way.
    pub active: bool,
}

/// Where events go. Every call is made on the output's own thread and may block (bounded by
/// the output's own timeouts: the runner abandons a thread that hangs at shutdown, but it
/// cannot interrupt a call).
pub trait EventSink: Send {
    /// What it is, for logs, `/stats.json` and `/metrics` (`jsonl:events.jsonl`,
    /// `webhook:http://...`); no secrets in it.
    fn name(&self) -> String;
    /// Deliver one phase of an event and, with a start, its snapshot. An error is retried
    /// with backoff, up to the runner's limit.
    fn deliver(&mut self, ev: &Event, snapshot: Option<&Snapshot>) -> Result<()>;
    /// Whether its connection is up (`None`: it has no connection).
    fn connected(&self) -> Option<bool> {
        None
    }
    /// Called between deliveries, at least every [`super::outlet::TICK`] while idle: keep a
    /// connection alive, reconnect, publish what is pending.
    fn tick(&mut self) {}
    /// The score of the moment (see [`Reading`]); an error is counted, not retried (a newer
    /// reading follows).
    fn reading(&mut self, _now: &Reading) -> Result<()> {
        Ok(())
    }
    /// The run is stopping: say goodbye (an MQTT "offline"), flush, within `within`.
    fn close(&mut self, _within: Duration) {}
}

/// What outputs share: limits, and who is talking.
#[derive(Clone, Debug)]
pub struct OutputOptions {
    /// Longest a network output waits for a connection or an answer.
    pub timeout: Duration,
    /// The model's name (its file stem).
    pub model: String,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            timeout: Duration::from_secs(5),
            model: String::new(),
        }
    }
}

/// One kind of output: its name, the spec it takes, and how to open it from the part of the
/// spec after `name:`.
pub struct OutputKind {
    pub name: &'static str,
    /// The spec's form, as `--help` lists it.
    pub usage: &'static str,
    /// What it does, in a few words.
    pub about: &'static str,
    pub open: fn(&str, &OutputOptions) -> Result<Box<dyn EventSink>>,
}

/// Every output this build knows, by name.
pub const OUTPUTS: &[OutputKind] = &[
    OutputKind {
        name: "jsonl",
        usage: "jsonl:<file>|-",
        about: "one JSON line per event phase, appended (- : stdout)",
        open: jsonl::open_spec,
    },
    OutputKind {
        name: "webhook",
        usage: "webhook:http://<host>[:<port>]/<path>",
        about: "a POST per event phase: JSON, and the snapshot as multipart",
        open: webhook::open_spec,
    },
    OutputKind {
        name: "mqtt",
        usage: "mqtt://<host>[:<port>]/<prefix>[?<opts>]",
        about: "MQTT with Home Assistant discovery; opts: user=U&password-file=F \
                (or IGN_EDGE_MQTT_PASSWORD), device=ID (hostname), discovery=P|off",
        open: mqtt::open_spec,
    },
    OutputKind {
        name: "mqtts",
        usage: "mqtts://<host>[:<port>]/<prefix>[?<opts>]",
        about: "the same over TLS (port 8883): ca=FILE (PEM), else the system's CAs",
        open: mqtt::open_tls_spec,
    },
];

/// The outputs for `--help`: one line each.
pub fn help() -> String {
    OUTPUTS
        .iter()
        .map(|k| format!("  {:<38} {}", k.usage, k.about))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Open an output from its spec (`name:argument`; `mqtt://...` too).
pub fn open(spec: &str, opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    match OUTPUTS.iter().find(|k| k.name == name) {
        Some(k) => (k.open)(arg, opts),
        None => {
            let names: Vec<&str> = OUTPUTS.iter().map(|k| k.usage).collect();
            bail!("--events {spec}: unknown output; use {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_outputs_name_the_known_ones() {
        let e = open("carrier-pigeon:coop", &OutputOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown output") && e.contains("jsonl:"), "{e}");
    }
}
