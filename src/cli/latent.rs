//! `ign-edge latent interpolate|arith`

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use super::args::ModelArgs;
use crate::app::model_spec::ModelSpec;
use crate::backend::Backend;
use crate::imaging::{self, chw_to_image};
use crate::latent::{arith, interpolate, LatentSplit, Path2};
use crate::model::ModelInfo;
use crate::tensor::ImageBatch;
use crate::{fsio, inputs};

/// Latent-space tools: interpolate between two inputs, or do arithmetic on three.
///
/// The model must name its latent tensor in the `ign.latent` metadata (ign-train exports do).
/// Inputs are images, .npy files or noise:1:<seed> (one noise image from that seed).
#[derive(Args, Debug)]
pub struct LatentCmd {
    #[command(subcommand)]
    pub command: LatentOp,
}

#[derive(Subcommand, Debug)]
pub enum LatentOp {
    Interpolate(InterpolateCmd),
    Arith(ArithCmd),
}

/// Decode points between the latents of A and B: a strip (.png) or an animation (.gif).
///
/// Example: ign-edge latent interpolate noise:1:1 noise:1:2 --frames 12 --slerp --out morph.gif
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InterpolateCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    pub a: String,
    pub b: String,
    /// Points from A to B, both included.
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
    /// Spherical interpolation instead of linear.
    #[arg(long)]
    pub slerp: bool,
    /// .png (a strip: A, f(A) ... f(B), B) or .gif (an animation, back and forth).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

/// A − B + C in latent space, beside the same in input space (the paper's noise arithmetic).
///
/// Writes a grid: top row A, B, C, A−B+C (inputs); bottom row f(A), f(B), f(C),
/// f(A−B+C) (input space), decoder(enc(A)−enc(B)+enc(C)) (latent space).
///
/// Example: ign-edge latent arith noise:1:1 noise:1:2 noise:1:3 --out arith.png
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ArithCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    pub a: String,
    pub b: String,
    pub c: String,
    /// Output .png grid.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

impl LatentCmd {
    pub fn run(self) -> Result<()> {
        match self.command {
            LatentOp::Interpolate(c) => c.run(),
            LatentOp::Arith(c) => c.run(),
        }
    }
}

/// One image from a spec (the first, with a notice when the spec holds more).
pub fn one_input(spec: &str, info: &ModelInfo) -> Result<ImageBatch> {
    let all = inputs::load_inputs(&[spec.to_string()], info)?.batch;
    if all.len() > 1 {
        log::warn!("{spec} holds {} images; using the first", all.len());
    }
    Ok(all.slice(0, 1))
}

fn tile(b: &ImageBatch, i: usize, info: &ModelInfo) -> image::RgbImage {
    chw_to_image(b.image(i), info.channels, info.height, info.width)
}

fn ext_of(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

impl InterpolateCmd {
    pub fn run(self) -> Result<()> {
        let spec = ModelSpec::from(self.model.clone());
        let ext = ext_of(&self.out);
        if ext != "png" && ext != "gif" {
            bail!(
                "{}: the output must end in .png (a strip) or .gif (an animation)",
                self.out.display()
            );
        }
        let model = spec.load()?;
        let info = &model.info;
        let mut split = LatentSplit::new(&model)?;
        let (a, b) = (one_input(&self.a, info)?, one_input(&self.b, info)?);
        let how = if self.slerp {
            Path2::Slerp
        } else {
            Path2::Linear
        };
        let ys = interpolate(&mut split, &a, &b, self.frames, how)?;
        let scale = imaging::default_scale(info.height);
        if ext == "png" {
            let mut row = vec![tile(&a, 0, info)];
            row.extend((0..ys.len()).map(|i| tile(&ys, i, info)));
            row.push(tile(&b, 0, info));
            fsio::save_png(&self.out, &imaging::grid(&[row], scale, 2)?)?;
        } else {
            // A | point | B per frame, there and back again.
            let mut frames = Vec::new();
            let order: Vec<usize> = (0..ys.len())
                .chain((1..ys.len().saturating_sub(1)).rev())
                .collect();
            for i in order {
                let row = vec![tile(&a, 0, info), tile(&ys, i, info), tile(&b, 0, info)];
                frames.push(imaging::grid(&[row], scale, 2)?);
            }
            fsio::save_gif(&self.out, &frames, 120)?;
        }
        eprintln!(
            "{} points from {} to {} ({:?}, latent '{}') -> {}",
            ys.len(),
            self.a,
            self.b,
            how,
            split.latent,
            self.out.display()
        );
        Ok(())
    }
}

impl ArithCmd {
    pub fn run(self) -> Result<()> {
        let spec = ModelSpec::from(self.model.clone());
        if ext_of(&self.out) != "png" {
            bail!("{}: the output must end in .png", self.out.display());
        }
        let model = spec.load()?;
        let info = &model.info;
        let mut split = LatentSplit::new(&model)?;
        let mut backend = spec.backend(&model)?;
        let (a, b, c) = (
            one_input(&self.a, info)?,
            one_input(&self.b, info)?,
            one_input(&self.c, info)?,
        );
        let (x, fx, dz) = arith(&mut split, &mut backend, &a, &b, &c)?;
        let f = |v: &ImageBatch, be: &mut dyn Backend| -> Result<image::RgbImage> {
            Ok(tile(&be.run(v)?, 0, info))
        };
        let top = vec![
            tile(&a, 0, info),
            tile(&b, 0, info),
            tile(&c, 0, info),
            tile(&x, 0, info),
        ];
        let bottom = vec![
            f(&a, &mut backend)?,
            f(&b, &mut backend)?,
            f(&c, &mut backend)?,
            tile(&fx, 0, info),
            tile(&dz, 0, info),
        ];
        fsio::save_png(
            &self.out,
            &imaging::grid(&[top, bottom], imaging::default_scale(info.height), 2)?,
        )?;
        eprintln!(
            "A - B + C: top row A, B, C, A-B+C; bottom row f(A), f(B), f(C), f(A-B+C) (input space), decoder(enc A - enc B + enc C) (latent space) -> {}",
            self.out.display()
        );
        Ok(())
    }
}
