//! `ign-edge service`: the live loop as configured in `/etc/ign-edge/config.toml` (what the
//! systemd unit runs).

use anyhow::{Context, Result};
use clap::{Args, Parser};
use serde::Deserialize;
use std::path::PathBuf;

use crate::model::Precision;

/// Run the live loop from a config file (the systemd service's entry point).
///
/// The file's keys are those of `ign-edge run`: board, model, source, sinks, steps, paper,
/// precision, threads, cores, http_token_file (or http_token; the file is installed 0640
/// root:ign-edge). Example: boards/package/config.toml.
#[derive(Args, Debug)]
pub struct ServiceCmd {
    /// The configuration file.
    #[arg(long, default_value = "/etc/ign-edge/config.toml")]
    pub config: PathBuf,
    /// Print the `ign-edge run` command the file stands for, and exit.
    #[arg(long)]
    pub print: bool,
}

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
}

impl ServiceConfig {
    /// The `ign-edge run` arguments this configuration stands for.
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
        opt("http-token", self.http_token.clone());
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
        for s in self.sinks.iter().flatten() {
            opt("sink", Some(s.clone()));
        }
        if self.paper == Some(true) {
            a.push("--paper".into());
        }
        a
    }
}

impl ServiceCmd {
    pub fn run(self) -> Result<()> {
        let text = crate::limits::read_text_file(&self.config).with_context(|| {
            format!(
                "{}: cannot read the service configuration (copy boards/package/config.toml there)",
                self.config.display()
            )
        })?;
        let cfg: ServiceConfig = toml::from_str(&text)
            .with_context(|| format!("{}: invalid configuration", self.config.display()))?;
        let args = cfg.run_args();
        if self.print {
            println!("{}", args.join(" "));
            return Ok(());
        }
        let cli = super::Cli::try_parse_from(&args).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                self.config.display(),
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;
        super::run(cli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_becomes_the_run_option() {
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
        let cli = crate::cli::Cli::try_parse_from(cfg.run_args());
        assert!(cli.is_ok(), "{args}");
    }
}
