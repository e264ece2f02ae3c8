//! The scene benchmark (`ign-train scene make` and `ign-train scene eval`): photos seen
//! through a simulated fixed camera, with objects of 1–6% of the frame drawn in, their masks
//! and the same frames without them; and the figures of a scene model on it (image and pixel
//! AUROC, false alarms and detections at the model's calibrated threshold, restoration PSNR
//! inside the object).
//!
//! A benchmark folder:
//!
//! ```text
//! BENCH/manifest.json                    seed, photos, settings, kinds, every object
//! BENCH/view.png                         the scene's view without nuisances
//! BENCH/train/frame-NNNNNN.png           normal frames (ign-train train --data BENCH/train)
//! BENCH/test/normal/frame-NNNNNN.png     normal test frames
//! BENCH/test/anomalous/KIND/frame-*.png  frames with an object
//! BENCH/test/masks/KIND/frame-*.png      its mask (255 inside, 0 outside)
//! BENCH/test/clean/KIND/frame-*.png      the same frame, same nuisances, without the object
//! ```
//!
//! [`make`] builds it, [`objects`] draws the anomalies, [`eval`] measures a model on it.

pub mod eval;
pub mod make;
pub mod objects;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub use objects::Kind;

/// The version of `manifest.json` and of `scene eval`'s JSON.
pub const SCHEMA: u32 = 1;

/// The name of frame `i` in each folder.
pub fn frame_name(i: usize) -> String {
    format!("frame-{i:06}.png")
}

/// Where the parts of a benchmark folder are.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub root: PathBuf,
    /// Normal training frames.
    pub train: PathBuf,
    /// Normal test frames.
    pub normal: PathBuf,
}

impl Layout {
    /// The layout of the benchmark in `root`.
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            train: root.join("train"),
            normal: root.join("test").join("normal"),
        }
    }

    /// The frames with an object of `kind`.
    pub fn anomalous(&self, kind: Kind) -> PathBuf {
        self.root
            .join("test")
            .join("anomalous")
            .join(kind.to_string())
    }

    /// The masks of `kind`'s frames.
    pub fn masks(&self, kind: Kind) -> PathBuf {
        self.root.join("test").join("masks").join(kind.to_string())
    }

    /// The clean twins of `kind`'s frames.
    pub fn clean(&self, kind: Kind) -> PathBuf {
        self.root.join("test").join("clean").join(kind.to_string())
    }

    /// `manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    /// Create every folder of a benchmark with `kinds`.
    pub fn create(&self, kinds: &[Kind]) -> Result<()> {
        let mut dirs = vec![self.train.clone(), self.normal.clone()];
        for &k in kinds {
            dirs.extend([self.anomalous(k), self.masks(k), self.clean(k)]);
        }
        for d in dirs {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("{}: cannot create the folder", d.display()))?;
        }
        Ok(())
    }
}
