//! The service's configuration file (`/etc/ign-edge/config.toml`, what the systemd unit's
//! `ign-edge service` reads): its keys, and the run configuration it stands for.

use serde::Deserialize;
use std::path::PathBuf;

use crate::app::run::RunConfig;
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
        c
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
