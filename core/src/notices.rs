//! Library code reports progress and notices through the `log` crate, never by printing; a
//! binary shows them with [`init`] (one line each on stderr, as the user reads them).
//!
//! Only this workspace's crates are shown: tract, hyper and others log on their own targets,
//! which stay silent.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= Level::Info && m.target().starts_with("ign_")
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}", r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Show the workspace's notices on stderr (call once, from `main`; later calls do nothing).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
