//! A run's `log.csv`: one row per step (step, total, rec, idem, tight, seconds, and restore in
//! runs with the restoration term), written and read with the `csv` crate.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::train::loss::LossTerms;

/// One row of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub total: f64,
    pub rec: f64,
    pub idem: f64,
    pub tight: f64,
    /// Seconds the step took.
    pub seconds: f64,
    /// The restoration term; a column of its own only in runs that have it (a run's loss
    /// settings never change on `--resume`, so a log keeps one layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<f64>,
}

impl LogRow {
    /// The row of a step's loss terms (6 decimals; seconds 4).
    pub fn new(step: u64, terms: &LossTerms, seconds: f64, restoring: bool) -> Self {
        let round = |v: f64, places: i32| {
            let k = 10f64.powi(places);
            (v * k).round() / k
        };
        let six = |v: f32| round(v as f64, 6);
        LogRow {
            step,
            total: six(terms.total),
            rec: six(terms.rec),
            idem: six(terms.idem),
            tight: six(terms.tight),
            seconds: round(seconds, 4),
            restore: restoring.then(|| six(terms.restore)),
        }
    }
}

/// Appends rows to a run's log (the header first when the file is new).
pub struct LogWriter {
    path: PathBuf,
    csv: csv::Writer<File>,
}

impl LogWriter {
    /// Open `path` for appending.
    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open the log", path.display()))?;
        let fresh = file.metadata()?.len() == 0;
        let csv = csv::WriterBuilder::new()
            .has_headers(fresh)
            .from_writer(file);
        Ok(LogWriter {
            path: path.to_path_buf(),
            csv,
        })
    }

    /// Add a row.
    pub fn write(&mut self, row: &LogRow) -> Result<()> {
        self.csv
            .serialize(row)
            .with_context(|| format!("{}: cannot write the log", self.path.display()))
    }

    /// Write the buffered rows to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.csv
            .flush()
            .with_context(|| format!("{}: cannot write the log", self.path.display()))
    }
}

/// Every row of the log at `path`.
pub fn read(path: &Path) -> Result<Vec<LogRow>> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("{}: cannot read the log", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| {
            row.with_context(|| {
                format!(
                    "{}: row {} is not a log row (step,total,rec,idem,tight,seconds[,restore])",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(v: f32) -> LossTerms {
        LossTerms {
            total: v,
            rec: v / 2.0,
            idem: v / 4.0,
            tight: -v,
            restore: v / 8.0,
        }
    }

    #[test]
    fn rows_go_in_and_out_with_one_header_and_the_restore_column_when_restoring() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, restoring) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        for (path, restore) in [(&plain, false), (&restoring, true)] {
            // two invocations append to one file: one header
            for step in [1, 2] {
                let mut log = LogWriter::append(path).unwrap();
                let row = LogRow::new(step, &terms(1.0 / 3.0), 0.123456, restore);
                log.write(&row).unwrap();
                log.flush().unwrap();
            }
        }
        let text = std::fs::read_to_string(&plain).unwrap();
        assert_eq!(
            text,
            "step,total,rec,idem,tight,seconds\n\
             1,0.333333,0.166667,0.083333,-0.333333,0.1235\n\
             2,0.333333,0.166667,0.083333,-0.333333,0.1235\n"
        );
        let rows = read(&restoring).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].step, rows[1].restore), (2, Some(0.041667)));
        assert!(std::fs::read_to_string(&restoring)
            .unwrap()
            .starts_with("step,total,rec,idem,tight,seconds,restore\n"));
        assert_eq!(read(&plain).unwrap()[0].restore, None);
        // a broken row is named
        std::fs::write(&plain, "step,total,rec,idem,tight,seconds\n1,x,0,0,0,0\n").unwrap();
        let err = format!("{:#}", read(&plain).unwrap_err());
        assert!(err.contains("row 1"), "{err}");
    }
}
