//! Library code reports progress and notices through the `log` crate, never by printing; a
//! binary shows them with [`init`], one line each on stderr, as the user reads them.
//!
//! The level shows as the line's prefix: `error: `, `warning: `, `debug: `; progress and
//! information (`info!`) print as they are. `IGN_LOG=error|warn|info|debug` sets how much is
//! shown (default `info`).
//!
//! Only this workspace's crates are shown: tract, hyper and others log on their own targets,
//! which stay silent.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("ign_")
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}{}", prefix(r.level()), r.args());
        }
    }

    fn flush(&self) {}
}

/// What a line of `level` starts with.
///
/// ```
/// use ign_core::notices::prefix;
/// assert_eq!(prefix(log::Level::Warn), "warning: ");
/// assert_eq!(prefix(log::Level::Info), "");
/// ```
pub fn prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug | Level::Trace => "debug: ",
    }
}

/// The level `IGN_LOG` asks for (`error`, `warn`, `info`, `debug`, `trace`, `off`), `info`
/// when it is unset or not one of them.
pub fn level_from_env() -> LevelFilter {
    std::env::var("IGN_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::Info)
}

static LOGGER: Stderr = Stderr;

/// Show the workspace's notices on stderr (call once, from `main`; later calls do nothing).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level_from_env());
    }
}
