//! Training data: IDX files (MNIST, Fashion-MNIST; gzipped or raw) and image folders.
//!
//! Everything is loaded into memory as float32 `N×C×H×W` in `[-1, 1]`, with labels when the
//! source has them (IDX label files, or one sub-folder per class). [`augment`]: what a
//! training image goes through before reconstruction sees it (`--augment`).

pub mod augment;
mod classes;
mod folder;

pub use classes::{class_list, keep_classes};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use flate2::read::GzDecoder;
pub use ign_core::idx::{
    parse_idx, read_idx, read_maybe_gz, IdxArray, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
use ign_core::imaging;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An in-memory image set.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len × C × H × W` pixels in `[-1, 1]`.
    pub images: Vec<f32>,
    /// One class index per image, when known.
    pub labels: Option<Vec<u8>>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.image_len().max(1)
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Floats per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of classes (max label + 1), when labelled.
    pub fn num_classes(&self) -> Option<usize> {
        self.labels
            .as_ref()
            .map(|l| l.iter().copied().max().map(|m| m as usize + 1).unwrap_or(0))
    }

    /// Gather images `idx` into a `[B, C, H, W]` tensor.
    pub fn batch(&self, idx: &[usize], dev: &Device) -> Result<Tensor> {
        self.tensor(self.gather(idx), dev)
    }

    /// The pixels of images `idx`, one after the other.
    pub fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let mut buf = Vec::with_capacity(idx.len() * self.image_len());
        for &i in idx {
            buf.extend_from_slice(self.image(i));
        }
        buf
    }

    /// Images of this set's shape, one after the other, as a `[B, C, H, W]` tensor.
    pub fn tensor(&self, pixels: Vec<f32>, dev: &Device) -> Result<Tensor> {
        let b = pixels.len() / self.image_len().max(1);
        Ok(Tensor::from_vec(
            pixels,
            (b, self.channels, self.height, self.width),
            dev,
        )?)
    }

    /// `(C, H, W)` of each image.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Labels of images `idx` (panics if unlabelled).
    pub fn batch_labels(&self, idx: &[usize]) -> Vec<u8> {
        let l = self.labels.as_ref().expect("dataset has labels");
        idx.iter().map(|&i| l[i]).collect()
    }

    /// The first `n` images (or all).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            ..self.clone()
        }
    }

    fn split_at(self, n_train: usize) -> (Dataset, Dataset) {
        let k = n_train * self.image_len();
        let (li, ri) = self.images.split_at(k);
        let (ll, rl) = match &self.labels {
            Some(l) => (Some(l[..n_train].to_vec()), Some(l[n_train..].to_vec())),
            None => (None, None),
        };
        (
            Dataset {
                images: li.to_vec(),
                labels: ll,
                ..self.clone()
            },
            Dataset {
                images: ri.to_vec(),
                labels: rl,
                ..self
            },
        )
    }
}

/// Train and held-out test sets.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
    /// A short human description of where the data came from.
    pub description: String,
}

/// What kind of data `--data` points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DataKind {
    /// IDX files (MNIST, Fashion-MNIST), gzipped or raw.
    Idx,
    /// A folder of PNG/JPEG images (one sub-folder per class gives labels).
    Folder,
}

named_choices!(DataKind { Idx = "idx", Folder = "folder" });

/// How to read and split the data.
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// Force a kind; `None` detects it.
    pub kind: Option<DataKind>,
    /// Resize to this square size; `None` keeps IDX's native size (folders need it: default 64).
    pub image_size: Option<usize>,
    /// 1 (gray) or 3 (RGB); `None`: 1 for IDX, 3 for folders.
    pub channels: Option<usize>,
    /// Fraction held out as the test split when the source has no split of its own.
    pub test_fraction: f64,
    /// Use at most this many training images (0 = all).
    pub limit: usize,
    /// Keep only the images of these classes, in both splits (`None`: all): the one-class
    /// protocol trains on one class ([`crate::eval::one_class`]). Needs labelled data.
    pub classes: Option<Vec<u8>>,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            kind: None,
            image_size: None,
            channels: None,
            test_fraction: 0.1,
            limit: 0,
            classes: None,
        }
    }
}

/// The kind of the data at `path`: the one asked for, else detected; an error when nothing is
/// there.
fn data_kind(path: &Path, opts: &DataOptions) -> Result<DataKind> {
    if !path.exists() {
        bail!(
            "{}: no such file or folder; pass --data with an IDX file or an image folder",
            path.display()
        );
    }
    match opts.kind {
        Some(k) => Ok(k),
        None => detect_kind(path),
    }
}

/// Load and split `path` (an IDX images file, a folder holding IDX files, or an image folder).
///
/// Split rules, all deterministic: a folder with `train-*` and `t10k-*` IDX files uses them as
/// train and test; a single IDX file holds out its last `test_fraction` (the mnist-10k
/// convention: the last 1,000); an image folder holds out every k-th file in sorted order.
pub fn load(path: &Path, opts: &DataOptions) -> Result<Split> {
    let kind = data_kind(path, opts)?;
    let mut split = match kind {
        DataKind::Idx => load_idx_split(path, opts)?,
        DataKind::Folder => folder::load_folder_split(path, opts)?,
    };
    if let Some(classes) = &opts.classes {
        split.train = keep_classes(split.train, classes, "training", path)?;
        split.test = keep_classes(split.test, classes, "test", path)?;
        split.description += &format!(", classes {}", class_list(classes));
    }
    if opts.limit > 0 && split.train.len() > opts.limit {
        split.train = split.train.take(opts.limit);
    }
    Ok(split)
}

/// The kind of data at `path` (an existing file or folder): an image file or a folder without
/// IDX files is a folder of images.
pub fn detect_kind(path: &Path) -> Result<DataKind> {
    if path.is_file() {
        return Ok(if imaging::is_image_path(path) {
            DataKind::Folder
        } else {
            DataKind::Idx
        });
    }
    if !idx_image_files(path)?.is_empty() {
        Ok(DataKind::Idx)
    } else {
        Ok(DataKind::Folder)
    }
}

fn idx_image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.contains("images-idx3-ubyte") || n.contains("images.idx3-ubyte"))
                .unwrap_or(false)
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The labels file that sits beside an IDX images file, if any.
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let cand = name
        .replace("images-idx3-ubyte", "labels-idx1-ubyte")
        .replace("images.idx3-ubyte", "labels.idx1-ubyte");
    let p = images.with_file_name(cand);
    (p != images && p.exists()).then_some(p)
}

fn load_idx_split(path: &Path, opts: &DataOptions) -> Result<Split> {
    if path.is_dir() {
        let files = idx_image_files(path)?;
        let find = |prefix: &str| {
            files.iter().find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.starts_with(prefix))
                    .unwrap_or(false)
            })
        };
        if let (Some(tr), Some(te)) = (find("train-"), find("t10k-")) {
            let train = load_idx_images(tr, opts)?;
            let test = load_idx_images(te, opts)?;
            return Ok(Split {
                description: format!("{} (train) + {} (test)", tr.display(), te.display()),
                train,
                test,
            });
        }
        match files.as_slice() {
            [one] => return split_single(load_idx_images(one, opts)?, one, opts),
            [] => bail!(
                "{}: no IDX images file (*images-idx3-ubyte[.gz]) in this folder",
                path.display()
            ),
            _ => bail!(
                "{}: several IDX image files and no train-/t10k- pair; pass one file with --data",
                path.display()
            ),
        }
    }
    split_single(load_idx_images(path, opts)?, path, opts)
}

fn split_single(all: Dataset, path: &Path, opts: &DataOptions) -> Result<Split> {
    let n = all.len();
    let n_test = ((n as f64) * opts.test_fraction).round() as usize;
    if n < 2 || n_test == 0 || n_test >= n {
        bail!(
            "{}: {n} images is too few to hold out a test split of {:.0}%",
            path.display(),
            opts.test_fraction * 100.0
        );
    }
    let (train, test) = all.split_at(n - n_test);
    Ok(Split {
        description: format!(
            "{} (first {} train, last {} test)",
            path.display(),
            n - n_test,
            n_test
        ),
        train,
        test,
    })
}

/// Load an IDX images file (and its labels file beside it, when present).
pub fn load_idx_images(path: &Path, opts: &DataOptions) -> Result<Dataset> {
    let arr = read_idx(path, IDX_IMAGES_MAGIC)?;
    let (n, h, w) = (arr.dims[0], arr.dims[1], arr.dims[2]);
    if n == 0 {
        bail!("{}: the IDX file holds no image", path.display());
    }
    let labels = match labels_path_for(path) {
        Some(lp) => {
            let l = read_idx(&lp, IDX_LABELS_MAGIC)?;
            if l.dims[0] != n {
                bail!(
                    "{}: {} labels for {n} images in {}",
                    lp.display(),
                    l.dims[0],
                    path.display()
                );
            }
            Some(l.data)
        }
        None => None,
    };
    let channels = opts.channels.unwrap_or(1);
    let size = opts.image_size;
    let plane = h * w;
    let images = if channels == 1 && size.map(|s| s == h && s == w).unwrap_or(true) {
        arr.data.iter().map(|&b| b as f32 / 127.5 - 1.0).collect()
    } else {
        let (oh, ow) = size.map(|s| (s, s)).unwrap_or((h, w));
        let mut out = Vec::with_capacity(n * channels * oh * ow);
        for i in 0..n {
            let g = image::GrayImage::from_raw(
                w as u32,
                h as u32,
                arr.data[i * plane..(i + 1) * plane].to_vec(),
            )
            .expect("size checked");
            out.extend(imaging::image_to_chw(
                &image::DynamicImage::ImageLuma8(g),
                channels,
                oh,
                ow,
            ));
        }
        out
    };
    let (oh, ow) = size.map(|s| (s, s)).unwrap_or((h, w));
    Ok(Dataset {
        images,
        labels,
        channels,
        height: oh,
        width: ow,
    })
}

/// A deterministic sampler: the order of training images is a pure function of
/// `(seed, step)`, so that a resumed run sees exactly the batches an uninterrupted one would.
pub struct BatchSampler {
    n: usize,
    seed: u64,
    epoch: Option<u64>,
    perm: Vec<usize>,
}

impl BatchSampler {
    pub fn new(n: usize, seed: u64) -> Self {
        BatchSampler {
            n,
            seed,
            epoch: None,
            perm: Vec::new(),
        }
    }

    /// Indices of the batch of `batch` images for `step`.
    pub fn indices(&mut self, step: u64, batch: usize) -> Vec<usize> {
        (0..batch as u64)
            .map(|j| {
                let k = step * batch as u64 + j;
                let (epoch, pos) = (k / self.n as u64, (k % self.n as u64) as usize);
                if self.epoch != Some(epoch) {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(self.seed, epoch, 0x5eed));
                    self.perm = (0..self.n).collect();
                    self.perm.shuffle(&mut rng);
                    self.epoch = Some(epoch);
                }
                self.perm[pos]
            })
            .collect()
    }
}

/// Mix a seed with a counter and a stream tag into a new 64-bit seed (splitmix64).
pub fn mix(seed: u64, counter: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `(channels, size)` that `load` will produce for `path`, reading only file headers.
pub fn peek_shape(path: &Path, opts: &DataOptions) -> Result<(usize, usize)> {
    let kind = data_kind(path, opts)?;
    match kind {
        DataKind::Folder => Ok((opts.channels.unwrap_or(3), opts.image_size.unwrap_or(64))),
        DataKind::Idx => {
            let file = if path.is_dir() {
                idx_image_files(path)?.into_iter().next().ok_or_else(|| {
                    anyhow::anyhow!("{}: no IDX images file in this folder", path.display())
                })?
            } else {
                path.to_path_buf()
            };
            let raw =
                std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let mut head = [0u8; 16];
            let got = if raw.starts_with(&[0x1f, 0x8b]) {
                GzDecoder::new(raw.as_slice()).read_exact(&mut head)
            } else {
                raw.as_slice().read_exact(&mut head)
            };
            got.map_err(|_| anyhow::anyhow!("{}: truncated IDX header", file.display()))?;
            let magic = u32::from_be_bytes(head[0..4].try_into().unwrap());
            if magic != IDX_IMAGES_MAGIC {
                bail!(
                    "{}: not an IDX images file: magic number 0x{magic:08x}, expected 0x{IDX_IMAGES_MAGIC:08x}",
                    file.display()
                );
            }
            let h = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
            let w = u32::from_be_bytes(head[12..16].try_into().unwrap()) as usize;
            if h != w && opts.image_size.is_none() {
                bail!(
                    "{}: images are {h}x{w}; pass --image-size to make them square",
                    file.display()
                );
            }
            Ok((opts.channels.unwrap_or(1), opts.image_size.unwrap_or(h)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_idx_and_scales() {
        let b = idx_bytes(IDX_IMAGES_MAGIC, &[1, 2, 2], &[0, 255, 0, 255]);
        let a = parse_idx(&b, IDX_IMAGES_MAGIC).unwrap();
        assert_eq!(a.dims, vec![1, 2, 2]);
        assert_eq!(a.data, vec![0, 255, 0, 255]);
    }

    #[test]
    fn rejects_wrong_magic_and_truncation() {
        let b = idx_bytes(IDX_LABELS_MAGIC, &[4], &[1, 2, 3, 4]);
        let e = parse_idx(&b, IDX_IMAGES_MAGIC).unwrap_err().to_string();
        assert!(e.contains("magic number 0x00000801"), "{e}");
        let b = idx_bytes(IDX_IMAGES_MAGIC, &[2, 2, 2], &[1, 2, 3]);
        let e = parse_idx(&b, IDX_IMAGES_MAGIC).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn sampler_is_a_pure_function_of_step() {
        let mut a = BatchSampler::new(10, 3);
        let seq: Vec<_> = (0..7).map(|s| a.indices(s, 4)).collect();
        let mut b = BatchSampler::new(10, 3);
        assert_eq!(b.indices(5, 4), seq[5]);
        assert_eq!(b.indices(2, 4), seq[2]);
        // each epoch is a permutation
        let mut first: Vec<usize> = seq.iter().flatten().take(10).copied().collect();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
    }
}
