//! An image folder as training data: every PNG or JPEG under it at the asked size, labels
//! from one sub-folder per class when there are at least two, every k-th file (sorted)
//! held out.

use anyhow::{bail, Result};
use ign_core::imaging;
use std::path::Path;

use super::{DataOptions, Dataset, Split};

/// Load and split the image folder (or single image) at `path`.
pub(super) fn load_folder_split(path: &Path, opts: &DataOptions) -> Result<Split> {
    let files = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        imaging::list_images(path)?
    };
    if files.is_empty() {
        bail!(
            "{}: no PNG or JPEG image in this folder (searched recursively)",
            path.display()
        );
    }
    let size = opts.image_size.unwrap_or(64);
    let channels = opts.channels.unwrap_or(3);
    // labels: one direct sub-folder per class, when every file sits in one and there are >= 2
    let class_of = |p: &Path| -> Option<String> {
        let parent = p.parent()?;
        (parent.parent()? == path).then(|| parent.file_name()?.to_str().map(str::to_owned))?
    };
    let classes: Option<Vec<String>> = files.iter().map(|p| class_of(p)).collect();
    let class_names = classes.as_ref().map(|c| {
        let mut u = c.clone();
        u.sort();
        u.dedup();
        u
    });
    let labelled = class_names
        .as_ref()
        .map(|u| u.len() >= 2 && u.len() <= 256)
        .unwrap_or(false);

    let k = (1.0 / opts.test_fraction.max(1e-6)).round().max(2.0) as usize;
    let mut train = Dataset {
        images: Vec::new(),
        labels: labelled.then(Vec::new),
        channels,
        height: size,
        width: size,
    };
    let mut test = train.clone();
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("loading images {bar:30} {pos}/{len} {eta}")
            .unwrap(),
    );
    for (i, f) in files.iter().enumerate() {
        let img = imaging::open_image(f)?;
        let chw = imaging::image_to_chw(&img, channels, size, size);
        let target = if files.len() >= 2 && i % k == k - 1 {
            &mut test
        } else {
            &mut train
        };
        target.images.extend(chw);
        if labelled {
            let c = class_of(f).unwrap();
            let idx = class_names.as_ref().unwrap().binary_search(&c).unwrap() as u8;
            target.labels.as_mut().unwrap().push(idx);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if test.is_empty() {
        test = train.clone();
    }
    Ok(Split {
        description: format!(
            "{} ({} images, every {} held out{})",
            path.display(),
            files.len(),
            ordinal(k),
            if labelled {
                ", labels from sub-folders"
            } else {
                ""
            }
        ),
        train,
        test,
    })
}

/// `2nd`, `3rd`, `5th`, `11th`, `22nd`: `k` as an English ordinal.
fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 5, 11, 12, 13, 21, 22, 23, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "5th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "111th"
            ]
        );
    }
}
