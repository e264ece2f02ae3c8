//! Pictures of a run: the sample grid (x, f(x), z, f(z), f(f(z))) and the loss curve of its
//! log.

use anyhow::Result;
use candle_core::{Device, Tensor};
use ign_core::imaging;
use ign_core::plot::{line_plot, Series};
use image::RgbImage;
use std::path::Path;

use crate::data::Dataset;
use crate::model::Ign;
use crate::train::log::LogRow;

/// Tiles of a `[B, C, H, W]` tensor.
pub fn tensor_tiles(t: &Tensor) -> Result<Vec<RgbImage>> {
    let (b, c, h, w) = t.dims4()?;
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    let n = c * h * w;
    Ok((0..b)
        .map(|i| imaging::chw_to_image(&v[i * n..(i + 1) * n], c, h, w))
        .collect())
}

/// Rows `x, f(x), z, f(z), f(f(z))` for 8 test images and 8 fixed noise draws, eval mode.
pub fn sample_grid(model: &Ign, x: &Tensor, z: &Tensor) -> Result<RgbImage> {
    let fx = model.forward_t(x, false)?;
    let fz = model.forward_t(z, false)?;
    let ffz = model.forward_t(&fz, false)?;
    let rows = [x, &fx, z, &fz, &ffz]
        .iter()
        .map(|t| tensor_tiles(t))
        .collect::<Result<Vec<_>>>()?;
    imaging::grid(&rows, imaging::default_scale(x.dim(2)?), 2)
}

/// Write `samples/step-NNNNNNN.png` and `samples/latest.png` into the run folder: the grid of
/// `model` on the first 8 `test` images and the noise `z`.
pub fn write_samples(model: &Ign, test: &Dataset, z: &Tensor, step: u64, out: &Path) -> Result<()> {
    let n = test.len().min(8);
    let idx: Vec<usize> = (0..n).collect();
    let x = test.batch(&idx, &Device::Cpu)?;
    let g = sample_grid(model, &x, z)?;
    let dir = out.join("samples");
    ign_core::fsio::save_png(&dir.join(format!("step-{step:07}.png")), &g)?;
    ign_core::fsio::save_png(&dir.join("latest.png"), &g)
}

/// Plot the loss terms of `log.csv` (smoothed over 50 steps) into a PNG.
pub fn write_loss_plot(log: &Path, out: &Path) -> Result<()> {
    let rows = crate::train::log::read(log)?;
    let terms: [fn(&LogRow) -> f64; 4] = [|r| r.total, |r| r.rec, |r| r.idem, |r| r.tight];
    let cols: Vec<Vec<(f64, f64)>> = terms
        .iter()
        .map(|term| rows.iter().map(|r| (r.step as f64, term(r))).collect())
        .collect();
    let smooth = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let win = 50usize;
        let stride = (v.len() / 400).max(1);
        (0..v.len())
            .step_by(stride)
            .map(|i| {
                let lo = i.saturating_sub(win - 1);
                let s: f64 = v[lo..=i].iter().map(|p| p.1).sum();
                (v[i].0, s / (i - lo + 1) as f64)
            })
            .collect()
    };
    let names = ["total", "rec", "idem", "tight"];
    let series: Vec<Series> = names
        .iter()
        .zip(&cols)
        .skip(1)
        .map(|(n, c)| Series {
            name: n.to_string(),
            points: smooth(c),
        })
        .collect();
    let img = line_plot(
        "IGN loss terms (mean of 50 steps)",
        "step",
        &series,
        640,
        360,
    );
    ign_core::fsio::save_png(out, &img)
}
