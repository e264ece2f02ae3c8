//! The held-out images watched while training: each time samples are written (and at the end),
//! the mean reconstruction distance `D(f(x), x)` over up to [`MAX_IMAGES`] held-out images, in
//! eval mode (as the exported model runs), beside the training batches' own, appended to the
//! run's `heldout.csv` and logged. A held-out distance far above the training one means f is
//! learning the training frames rather than the view (too few frames for the budget): the log
//! warns once.

use anyhow::{Context, Result};
use candle_core::Device;
use serde::Serialize;
use std::path::Path;

use crate::data::Dataset;
use crate::model::Ign;
use crate::train::loss::{distance_per_sample, Distance};

/// Most held-out images measured each time (the first ones: the same set every time).
pub const MAX_IMAGES: usize = 256;
/// Held-out over training distance above which the log warns.
pub const GAP_WARNING: f64 = 2.0;

/// One measurement, a row of `heldout.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldOutRow {
    pub step: u64,
    /// Mean `D(f(x), x)` over the held-out images.
    pub heldout_rec: f64,
    /// Mean of the training batches' reconstruction term since the last row.
    pub train_rec: f64,
    pub images: usize,
}

/// Mean `D(f(x), x)` over the first `max` images of `test` (0 images: `None`).
pub fn measure(model: &Ign, test: &Dataset, distance: Distance, max: usize) -> Result<Option<f64>> {
    let n = test.len().min(max);
    if n == 0 {
        return Ok(None);
    }
    let mut sum = 0.0f64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let x = test.batch(chunk, &Device::Cpu)?;
        let fx = model.forward_t(&x, false)?;
        let d = distance_per_sample(&fx, &x, distance)?.to_vec1::<f32>()?;
        sum += d.iter().map(|&v| v as f64).sum::<f64>();
    }
    Ok(Some(sum / n as f64))
}

/// The running record of one session: the training distances since the last row, and
/// whether the gap warning was given.
#[derive(Default)]
pub struct Watch {
    train_sum: f64,
    train_steps: u64,
    warned: bool,
}

impl Watch {
    /// Add one training step's reconstruction term.
    pub fn step(&mut self, rec: f32) {
        self.train_sum += rec as f64;
        self.train_steps += 1;
    }

    /// Measure now, append the row to `csv` and log it (`None` without held-out images).
    pub fn measure(
        &mut self,
        model: &Ign,
        test: &Dataset,
        distance: Distance,
        step: u64,
        csv: &Path,
    ) -> Result<Option<HeldOutRow>> {
        let Some(heldout_rec) = measure(model, test, distance, MAX_IMAGES)? else {
            return Ok(None);
        };
        let train_rec = self.train_sum / self.train_steps.max(1) as f64;
        (self.train_sum, self.train_steps) = (0.0, 0);
        let row = HeldOutRow {
            step,
            heldout_rec,
            train_rec,
            images: test.len().min(MAX_IMAGES),
        };
        append(csv, &row)?;
        log::debug!(
            "step {step}: held-out rec {heldout_rec:.5} ({} images), training {train_rec:.5}",
            row.images
        );
        if !self.warned && train_rec > 0.0 && heldout_rec > GAP_WARNING * train_rec {
            self.warned = true;
            log::warn!(
                "step {step}: the held-out images reconstruct {:.1}x worse than the training ones ({heldout_rec:.4} against {train_rec:.4}): f is learning the frames rather than the view; capture more frames (or with more variety) for this budget",
                heldout_rec / train_rec
            );
        }
        Ok(Some(row))
    }
}

/// Append `row` to `path` (the header first when the file is new).
fn append(path: &Path, row: &HeldOutRow) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open the held-out log", path.display()))?;
    let fresh = file.metadata()?.len() == 0;
    let mut w = csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(file);
    w.serialize(row)
        .and_then(|_| w.flush().map_err(Into::into))
        .with_context(|| format!("{}: cannot write the held-out log", path.display()))
}
