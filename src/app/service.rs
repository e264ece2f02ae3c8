//! The service's configuration file (`/etc/ign-edge/config.toml`, what the systemd unit's
//! `ign-edge service` reads): its keys, and the run configuration it stands for.

use serde::Deserialize;
use std::path::PathBuf;

use crate::app::events::EventsConfig;
use crate::app::run::RunConfig;
use crate::events::SnapshotFormat;
use crate::model::Precision;

/// `/etc/ign-edge/config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub board: Option<String>,
    pub model: Option<PathBuf>,
    pub source: Option<String>,
    pub sinks: Option<Vec<String>>,
    /// The token itself (this file is then a secret: keep it 0640 root:ign-edge).
    pub http_token: Option<String>,
    /// A file whose first line is the token.
    pub http_token_file: Option<PathBuf>,
    pub steps: Option<usize>,
    pub paper: Option<bool>,
    pub precision: Option<Precision>,
    pub threads: Option<usize>,
    pub cores: Option<String>,
    /// Stop after this many frames (for a smoke test; a service runs until stopped).
    pub frames: Option<u64>,
    /// Score frames against the model's scene (`--anomaly`), with this threshold if given.
    pub anomaly: Option<bool>,
    pub threshold: Option<f32>,
    /// Names besides the board's own that browsers may reach the web page by.
    pub http_allow_hosts: Option<Vec<String>>,
    /// With `anomaly`: event outputs (`--events`), the snapshots' folder and its cap, the
    /// snapshot format, the detector's timing and the network outputs' timeout.
    pub events: Option<Vec<String>>,
    pub events_dir: Option<PathBuf>,
    pub events_max_mb: Option<u64>,
    pub events_snapshot: Option<SnapshotFormat>,
    pub event_min_seconds: Option<f64>,
    pub event_clear_seconds: Option<f64>,
    pub event_hysteresis: Option<f32>,
    pub events_timeout: Option<f64>,
}

impl ServiceConfig {
    /// The run configuration this file stands for: `ign-edge run`'s defaults with the file's
    /// keys set (no command line is built or parsed).
    pub fn run_config(&self) -> RunConfig {
        let mut c = RunConfig {
            board: self.board.clone(),
            source: self.source.clone(),
            sinks: self.sinks.clone().unwrap_or_default(),
            http_token: self.http_token.clone(),
            http_token_file: self.http_token_file.clone(),
            frames: self.frames,
            paper: self.paper.unwrap_or(false),
            cores: self.cores.clone(),
            ..RunConfig::default()
        };
        c.model.model = self.model.clone();
        c.model.precision = self.precision;
        c.model.threads = self.threads;
        if let Some(k) = self.steps {
            c.steps = k;
        }
        c.anomaly = self.anomaly.unwrap_or(false);
        c.http_allow_hosts = self.http_allow_hosts.clone().unwrap_or_default();
        c.threshold = self.threshold;
        c.events = self.events_config();
        c
    }

    /// The events' keys over `run`'s defaults.
    fn events_config(&self) -> EventsConfig {
        let d = EventsConfig::default();
        EventsConfig {
            outputs: self.events.clone().unwrap_or_default(),
            dir: self.events_dir.clone(),
            max_mb: self.events_max_mb.unwrap_or(d.max_mb),
            snapshot: self.events_snapshot.unwrap_or(d.snapshot),
            min_seconds: self.event_min_seconds.unwrap_or(d.min_seconds),
            clear_seconds: self.event_clear_seconds.unwrap_or(d.clear_seconds),
            hysteresis: self.event_hysteresis.unwrap_or(d.hysteresis),
            timeout: self.events_timeout.unwrap_or(d.timeout),
        }
    }

    /// The `ign-edge run` command line this configuration stands for (`--print`).
    pub fn run_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["ign-edge".into(), "run".into()];
        let mut opt = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{k}"));
                a.push(v);
            }
        };
        opt("board", self.board.clone());
        opt(
            "model",
            self.model.as_ref().map(|p| p.display().to_string()),
        );
        opt("source", self.source.clone());
        opt(
            "http-token",
            self.http_token.as_ref().map(|_| "<from the config>".into()),
        );
        opt(
            "http-token-file",
            self.http_token_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        opt("steps", self.steps.map(|s| s.to_string()));
        opt("precision", self.precision.map(|p| p.to_string()));
        opt("threads", self.threads.map(|t| t.to_string()));
        opt("cores", self.cores.clone());
        opt("frames", self.frames.map(|f| f.to_string()));
        opt("threshold", self.threshold.map(|t| t.to_string()));
        for h in self.http_allow_hosts.iter().flatten() {
            opt("http-allow-host", Some(h.clone()));
        }
        for s in self.sinks.iter().flatten() {
            opt("sink", Some(s.clone()));
        }
        for e in self.events.iter().flatten() {
            opt("events", Some(e.clone()));
        }
        let dir = self.events_dir.as_ref();
        opt("events-dir", dir.map(|p| p.display().to_string()));
        opt("events-max-mb", self.events_max_mb.map(|v| v.to_string()));
        let snapshot = self.events_snapshot.map(|f| f.name().to_string());
        opt("events-snapshot", snapshot);
        let (min, clear) = (self.event_min_seconds, self.event_clear_seconds);
        opt("event-min-seconds", min.map(|v| v.to_string()));
        opt("event-clear-seconds", clear.map(|v| v.to_string()));
        opt(
            "event-hysteresis",
            self.event_hysteresis.map(|v| v.to_string()),
        );
        opt("events-timeout", self.events_timeout.map(|v| v.to_string()));
        if self.paper == Some(true) {
            a.push("--paper".into());
        }
        if self.anomaly == Some(true) {
            a.push("--anomaly".into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of the file lands in the run configuration, the rest keeps `run`'s defaults.
    #[test]
    fn the_file_becomes_a_run_configuration() {
        let cfg: ServiceConfig = toml::from_str(
            "board = \"rpi5\"\nmodel = \"/usr/share/ign-edge/models/ign-mnist.onnx\"\n\
             source = \"v4l2:/dev/video0\"\nsinks = [\"fb:/dev/fb0\", \"http:0.0.0.0:8080\"]\n\
             http_token_file = \"/etc/ign-edge/http-token\"\nsteps = 2\npaper = true\n\
             precision = \"int8\"\nthreads = 3\ncores = \"big\"\nframes = 9\n",
        )
        .unwrap();
        let c = cfg.run_config();
        assert_eq!(c.board.as_deref(), Some("rpi5"));
        assert_eq!(
            c.model.model.as_deref(),
            Some(std::path::Path::new(
                "/usr/share/ign-edge/models/ign-mnist.onnx"
            ))
        );
        assert_eq!(c.source.as_deref(), Some("v4l2:/dev/video0"));
        assert_eq!(c.sinks, ["fb:/dev/fb0", "http:0.0.0.0:8080"]);
        assert_eq!(
            c.http_token_file.as_deref(),
            Some(std::path::Path::new("/etc/ign-edge/http-token"))
        );
        assert_eq!(c.http_token, None);
        assert_eq!((c.steps, c.paper, c.frames), (2, true, Some(9)));
        assert_eq!(c.model.precision, Some(Precision::Int8));
        assert_eq!(c.model.threads, Some(3));
        assert_eq!(c.cores.as_deref(), Some("big"));
        // untouched keys: run's defaults
        let d = RunConfig::default();
        assert_eq!(
            (c.size.as_str(), c.fps, c.every),
            (d.size.as_str(), d.fps, d.every)
        );
        // an empty file is run's defaults
        let empty: ServiceConfig = toml::from_str("").unwrap();
        assert_eq!(format!("{:?}", empty.run_config()), format!("{d:?}"));
    }

    #[test]
    fn the_events_keys_become_the_run_s_events() {
        let cfg: ServiceConfig = toml::from_str(
            "anomaly = true\nthreshold = 0.2\nevents = [\"jsonl:/var/log/ign-edge/events.jsonl\", \"webhook:http://hass.lan:8123/api/webhook/cam\"]\n\
             events_dir = \"/var/lib/ign-edge/events\"\nevents_max_mb = 50\nevents_snapshot = \"png\"\n\
             event_min_seconds = 1.5\nevent_clear_seconds = 4.0\nevent_hysteresis = 0.3\nevents_timeout = 2.0\n",
        )
        .unwrap();
        let e = cfg.run_config().events;
        assert_eq!(e.outputs.len(), 2);
        assert_eq!(
            e.dir.as_deref(),
            Some(std::path::Path::new("/var/lib/ign-edge/events"))
        );
        assert_eq!((e.max_mb, e.snapshot), (50, SnapshotFormat::Png));
        assert_eq!(
            (e.min_seconds, e.clear_seconds, e.hysteresis, e.timeout),
            (1.5, 4.0, 0.3, 2.0)
        );
        let args = cfg.run_args().join(" ");
        assert!(
            args.contains("--events webhook:http://hass.lan:8123/api/webhook/cam"),
            "{args}"
        );
        assert!(
            args.contains("--events-snapshot png --event-min-seconds 1.5"),
            "{args}"
        );
        // and the command line it prints parses
        use clap::Parser;
        let back = crate::cli::Cli::try_parse_from(cfg.run_args());
        assert!(back.is_ok(), "{args}");
    }

    #[test]
    fn print_shows_the_equivalent_command_line_without_the_secret() {
        let cfg: ServiceConfig = toml::from_str(
            "sinks = [\"http:0.0.0.0:8080\"]\nhttp_token_file = \"/etc/ign-edge/http-token\"\n",
        )
        .unwrap();
        let args = cfg.run_args().join(" ");
        assert!(
            args.contains("--http-token-file /etc/ign-edge/http-token"),
            "{args}"
        );
        assert!(!args.contains("--http-token "), "{args}");
        let secret: ServiceConfig = toml::from_str("http_token = \"s3cret\"\n").unwrap();
        assert!(!secret.run_args().join(" ").contains("s3cret"));
    }
}
