//! IDX files (MNIST, Fashion-MNIST), gzipped or raw: the format of the classic digit and
//! garment datasets, read by `ign-train` for training and by `ign-edge quantize` for calibration.

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Read a whole file, transparently gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                anyhow::anyhow!("{}: corrupt or truncated gzip data ({e})", path.display())
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// A parsed IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parse an IDX file of unsigned bytes, checking the magic number and the length.
pub fn read_idx(path: &Path, expected_magic: u32) -> Result<IdxArray> {
    let bytes = read_maybe_gz(path)?;
    parse_idx(&bytes, expected_magic).with_context(|| path.display().to_string())
}

/// Parse IDX bytes (see [`read_idx`]).
pub fn parse_idx(bytes: &[u8], expected_magic: u32) -> Result<IdxArray> {
    if bytes.len() < 4 {
        bail!("not an IDX file: only {} bytes", bytes.len());
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
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
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        bail!("truncated IDX header");
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let want: usize = dims.iter().product();
    let have = bytes.len() - header;
    if have < want {
        bail!("truncated IDX file: header says {dims:?} = {want} bytes of data, found {have}");
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..header + want].to_vec(),
    })
}
