//! `jsonl:FILE` or `jsonl:-`: one JSON object per event phase ([`Event`]), one line each,
//! appended to FILE (created if missing) or written to stdout, flushed per line. A line that
//! cannot be written (a full disk) is an error: the runner retries it.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;

use super::{EventSink, OutputOptions};
use crate::events::event::{Event, Snapshot};

/// Appends events as JSON lines.
pub struct JsonLines {
    name: String,
    out: Box<dyn Write + Send>,
}

impl EventSink for JsonLines {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn deliver(&mut self, ev: &Event, _snapshot: Option<&Snapshot>) -> Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()?;
        Ok(())
    }
}

/// `jsonl:<file>` or `jsonl:-` (stdout).
pub fn open_spec(arg: &str, _opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    let out: Box<dyn Write + Send> = match arg {
        "" => bail!("jsonl: give a file, e.g. --events jsonl:events.jsonl (or jsonl:- for stdout)"),
        "-" => Box::new(std::io::stdout()),
        path => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(path))
                .with_context(|| format!("jsonl:{path}: cannot open for appending"))?,
        ),
    };
    Ok(Box::new(JsonLines {
        name: format!("jsonl:{arg}"),
        out,
    }))
}
