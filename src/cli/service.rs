//! `ign-edge service`: the live loop as configured in `/etc/ign-edge/config.toml` (what the
//! systemd unit runs).

use anyhow::{Context, Result};
use clap::Args;

use std::path::PathBuf;

use crate::app::service::ServiceConfig;
/// Run the live loop from a config file (the systemd service's entry point).
///
/// The file's keys are those of `ign-edge run`: board, model, source, sinks, steps, paper,
/// precision, threads, cores, http_token_file (or http_token; the file is installed 0640
/// root:ign-edge), anomaly, threshold, and the events' keys: events (a list of outputs),
/// events_dir, events_max_mb, events_snapshot, event_min_seconds, event_clear_seconds,
/// event_hysteresis, events_timeout. Example: boards/package/config.toml.
#[derive(Args, Debug)]
pub struct ServiceCmd {
    /// The configuration file.
    #[arg(long, default_value = "/etc/ign-edge/config.toml")]
    pub config: PathBuf,
    /// Print the `ign-edge run` command the file stands for, and exit.
    #[arg(long)]
    pub print: bool,
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
        if self.print {
            println!("{}", cfg.run_args().join(" "));
            return Ok(());
        }
        let config = cfg.run_config();
        let summary = crate::app::run::run(config)
            .with_context(|| format!("running the service of {}", self.config.display()))?;
        eprintln!("{}", summary.line());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// What `--print` shows is a command line `ign-edge` accepts.
    #[test]
    fn the_printed_command_line_parses() {
        let cfg: ServiceConfig = toml::from_str(
            "board = \"rpi5\"\nsinks = [\"http:0.0.0.0:8080\"]\n\
             http_token_file = \"/etc/ign-edge/http-token\"\nsteps = 2\npaper = true\n",
        )
        .unwrap();
        let args = cfg.run_args();
        assert!(crate::cli::Cli::try_parse_from(&args).is_ok(), "{args:?}");
    }
}
