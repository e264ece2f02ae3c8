//! IDX files (MNIST, Fashion-MNIST), gzipped or raw: the format of the classic digit and
//! garment datasets, read by `ign-train` for training and by `ign-edge quantize` for calibration.
//!
//! The header is read first and its dimensions multiplied with checked arithmetic; the data is
//! then read as a stream of exactly that many bytes, so neither a header that declares more
//! than the file holds nor a gzip bomb allocates more than the declared size, itself capped at
//! [`crate::limits::MAX_ARRAY_BYTES`].

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::limits::{product, MAX_ARRAY_BYTES};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// A reader of the file's bytes, gunzipped when it starts with the gzip magic.
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let len = f.metadata().map(|m| m.len()).ok();
    let mut r = BufReader::new(f);
    let head = r
        .fill_buf()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // the inflated size is unknown: the declared size bounds what is read
        Ok((Box::new(GzDecoder::new(r)), None))
    } else {
        Ok((Box::new(r), len))
    }
}

/// Read a whole file, transparently gunzipping it when it starts with the gzip magic; at most
/// `max` bytes (inflated) are read.
pub fn read_maybe_gz(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (r, _) = open_maybe_gz(path)?;
    let mut out = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("{}: corrupt or truncated gzip data ({e})", path.display()))?;
    if out.len() as u64 > max {
        bail!("{}: larger than {max} bytes", path.display());
    }
    Ok(out)
}

/// A parsed IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parse an IDX file of unsigned bytes, checking the magic number and the length.
pub fn read_idx(path: &Path, expected_magic: u32) -> Result<IdxArray> {
    let (r, len) = open_maybe_gz(path)?;
    read_idx_from(r, expected_magic, len).with_context(|| path.display().to_string())
}

/// Parse IDX bytes (see [`read_idx`]).
///
/// ```
/// use ign_core::idx::{parse_idx, IDX_LABELS_MAGIC};
/// let labels = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 2, 7, 3], IDX_LABELS_MAGIC).unwrap();
/// assert_eq!((labels.dims, labels.data), (vec![2], vec![7, 3]));
/// // a header that declares 4 billion labels in a 10-byte file is refused before allocating
/// assert!(parse_idx(&[0, 0, 8, 1, 255, 255, 255, 255, 7, 3], IDX_LABELS_MAGIC).is_err());
/// ```
pub fn parse_idx(bytes: &[u8], expected_magic: u32) -> Result<IdxArray> {
    read_idx_from(bytes, expected_magic, Some(bytes.len() as u64))
}

/// Read an IDX array from a stream of `available` bytes (`None`: unknown, e.g. gzipped).
pub fn read_idx_from(
    mut r: impl Read,
    expected_magic: u32,
    available: Option<u64>,
) -> Result<IdxArray> {
    let mut word = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut word[got..]) {
            Ok(0) => bail!("not an IDX file: only {got} bytes"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => bail!("cannot read ({e})"),
        }
    }
    let magic = u32::from_be_bytes(word);
    if magic != expected_magic {
        let what = if expected_magic == IDX_IMAGES_MAGIC {
            "images"
        } else {
            "labels"
        };
        bail!(
            "not an IDX {what} file: magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        );
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims as u64;
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        r.read_exact(&mut word)
            .map_err(|_| anyhow::anyhow!("truncated IDX header"))?;
        dims.push(u32::from_be_bytes(word) as usize);
    }
    let want = product(&dims)
        .filter(|&n| n as u64 <= MAX_ARRAY_BYTES)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "IDX header declares {dims:?}: more than {} MiB of data, not a dataset this reads",
                MAX_ARRAY_BYTES >> 20
            )
        })?;
    if let Some(have) = available.map(|a| a.saturating_sub(header)) {
        if have < want as u64 {
            bail!("truncated IDX file: header says {dims:?} = {want} bytes of data, found {have}");
        }
    }
    // grows with the bytes really read: a short stream allocates no more than it holds
    let mut data = Vec::new();
    r.take(want as u64)
        .read_to_end(&mut data)
        .map_err(|e| anyhow::anyhow!("corrupt or truncated data ({e})"))?;
    if data.len() < want {
        bail!(
            "truncated IDX file: header says {dims:?} = {want} bytes of data, found {}",
            data.len()
        );
    }
    Ok(IdxArray { dims, data })
}
