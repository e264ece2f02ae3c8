//! Data loading on committed fixtures: IDX (gzipped), image folders, and clear errors.

use ign_train::data::{load, DataKind, DataOptions};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn idx_fixture_splits_deterministically_with_labels_in_range() {
    let s = load(
        &fixture("mnist-300-images-idx3-ubyte.gz"),
        &DataOptions::default(),
    )
    .unwrap();
    assert_eq!((s.train.len(), s.test.len()), (270, 30));
    assert_eq!(
        (s.train.channels, s.train.height, s.train.width),
        (1, 28, 28)
    );
    assert_eq!(s.train.num_classes(), Some(10));
    let (lo, hi) = s
        .train
        .images
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (-1.0, 1.0));
    // background is black: most pixels are -1
    let black = s.train.images.iter().filter(|&&v| v == -1.0).count();
    assert!(black as f64 > 0.7 * s.train.images.len() as f64);
    let again = load(
        &fixture("mnist-300-images-idx3-ubyte.gz"),
        &DataOptions::default(),
    )
    .unwrap();
    assert_eq!(again.test.images, s.test.images);
    // the fashion fixture reads with the same code
    let f = load(
        &fixture("fashion-300-images-idx3-ubyte.gz"),
        &DataOptions::default(),
    )
    .unwrap();
    assert_eq!(f.train.num_classes(), Some(10));
}

#[test]
fn idx_can_be_resized_and_made_rgb() {
    let opts = DataOptions {
        image_size: Some(32),
        channels: Some(3),
        ..Default::default()
    };
    let s = load(&fixture("mnist-300-images-idx3-ubyte.gz"), &opts).unwrap();
    assert_eq!((s.train.channels, s.train.height), (3, 32));
    assert_eq!(s.train.image(0).len(), 3 * 32 * 32);
}

#[test]
fn image_folder_with_class_subfolders_gives_labels() {
    let dir = tempfile::tempdir().unwrap();
    for (class, shade) in [("cats", 30u8), ("dogs", 220u8)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..5 {
            let img = image::RgbImage::from_pixel(40 + i, 30, image::Rgb([shade, shade, shade]));
            img.save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let opts = DataOptions {
        image_size: Some(32),
        test_fraction: 0.2,
        ..Default::default()
    };
    let s = load(dir.path(), &opts).unwrap();
    assert_eq!(s.train.len() + s.test.len(), 10);
    assert_eq!(s.test.len(), 2);
    assert_eq!((s.train.channels, s.train.height), (3, 32));
    let labels = s.train.labels.as_ref().unwrap();
    for (i, &l) in labels.iter().enumerate() {
        let v = s.train.image(i)[0];
        // cats are dark (label 0), dogs bright (label 1)
        assert_eq!(l == 1, v > 0.0, "image {i}: label {l}, pixel {v}");
    }
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let opts = DataOptions {
        kind: Some(DataKind::Folder),
        ..Default::default()
    };
    let e = format!("{:#}", load(&empty, &opts).unwrap_err());
    assert!(e.contains("empty") && e.contains("no PNG or JPEG"), "{e}");

    let labels_as_images = fixture("mnist-300-labels-idx1-ubyte.gz");
    let opts = DataOptions {
        kind: Some(DataKind::Idx),
        ..Default::default()
    };
    let e = format!("{:#}", load(&labels_as_images, &opts).unwrap_err());
    assert!(
        e.contains("labels-idx1") && e.contains("magic number 0x00000801"),
        "{e}"
    );

    let bytes = std::fs::read(fixture("mnist-300-images-idx3-ubyte.gz")).unwrap();
    let cut = dir.path().join("cut-images-idx3-ubyte.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", load(&cut, &opts).unwrap_err());
    assert!(e.contains("cut-images") && e.contains("truncated"), "{e}");

    let e = format!("{:#}", load(&dir.path().join("nope"), &opts).unwrap_err());
    assert!(e.contains("nope") && e.contains("no such file"), "{e}");
}
