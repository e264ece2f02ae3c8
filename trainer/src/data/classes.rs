//! The class filter of `DataOptions::classes`: the images of some classes of a labelled set
//! (the one-class protocol trains on one, [`crate::eval::one_class`]).

use anyhow::{bail, Result};
use std::path::Path;

use super::Dataset;

/// `classes` as `0,3,7`.
pub fn class_list(classes: &[u8]) -> String {
    classes
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The images of `set` whose label is one of `classes`, in order; an error when the set has
/// no labels or a class has no image in it (`which` split of the data at `path`).
pub fn keep_classes(set: Dataset, classes: &[u8], which: &str, path: &Path) -> Result<Dataset> {
    let Some(labels) = &set.labels else {
        bail!(
            "{}: the data has no labels, so no class can be kept; give IDX images with their labels file beside them, or an image folder with one sub-folder per class",
            path.display()
        );
    };
    if let Some(c) = classes.iter().find(|c| !labels.contains(c)) {
        bail!(
            "{}: no image of class {c} in the {which} split (its classes are 0 to {})",
            path.display(),
            set.num_classes().unwrap_or(0).saturating_sub(1)
        );
    }
    let idx: Vec<usize> = (0..set.len())
        .filter(|&i| classes.contains(&labels[i]))
        .collect();
    Ok(Dataset {
        images: set.gather(&idx),
        labels: Some(idx.iter().map(|&i| labels[i]).collect()),
        ..set
    })
}
