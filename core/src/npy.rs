//! `.npy` arrays (NumPy's format): the header is parsed and its declared size checked against
//! the bytes really there before the array is read, so a file that declares 10^11 floats is a
//! one-line error and not an allocation.

use anyhow::{anyhow, bail, Result};

use tract_onnx::prelude::tract_ndarray::ArrayD;

use crate::limits::{product, MAX_ARRAY_BYTES};

/// What a `.npy` header declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// `descr`, e.g. `<f4`.
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes before the data.
    pub data_offset: usize,
}

/// Largest header (NumPy writes ~128 bytes).
const MAX_HEADER: usize = 1 << 16;

/// Parse and check the header of `bytes`, a whole `.npy` file: the data it declares must be
/// present and at most [`MAX_ARRAY_BYTES`].
///
/// ```
/// let mut f = b"\x93NUMPY\x01\x00".to_vec();
/// let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
/// f.extend((dict.len() as u16).to_le_bytes());
/// f.extend(dict.as_bytes());
/// f.extend([0u8; 24]);
/// let h = ign_core::npy::check_header(&f).unwrap();
/// assert_eq!(h.shape, vec![2, 3]);
/// f.truncate(f.len() - 4); // one float short
/// assert!(ign_core::npy::check_header(&f).is_err());
/// ```
pub fn check_header(bytes: &[u8]) -> Result<NpyHeader> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        bail!("not a .npy file (no \\x93NUMPY magic)");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported .npy version {v}"),
    };
    if len > MAX_HEADER || start + len > bytes.len() {
        bail!("truncated or corrupt .npy header ({len} bytes declared)");
    }
    // NumPy's own header grammar (the reader that then reads the data), so both agree on
    // the shape whose size is checked here
    let mut rest = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut rest)
        .map_err(|e| anyhow!("corrupt .npy header ({e})"))?;
    let data_offset = bytes.len() - rest.len();
    let descr = header
        .type_descriptor
        .to_string()
        .trim_matches('\'')
        .to_string();
    let fortran_order = header.layout.is_fortran();
    let shape = header.shape;
    let item = match descr.get(1..) {
        Some("f4" | "i4" | "u4") => 4,
        Some("f8" | "i8" | "u8") => 8,
        Some("f2" | "i2" | "u2") => 2,
        Some("u1" | "i1" | "b1") => 1,
        _ => bail!("unsupported .npy dtype {descr:?}; save float32 arrays"),
    };
    let data = product(&shape)
        .and_then(|n| n.checked_mul(item))
        .filter(|&n| n as u64 <= MAX_ARRAY_BYTES)
        .ok_or_else(|| {
            anyhow!(
                ".npy header declares shape {shape:?}: more than {} MiB",
                MAX_ARRAY_BYTES >> 20
            )
        })?;
    let have = bytes.len() - data_offset;
    if have < data {
        bail!("truncated .npy file: shape {shape:?} of {descr} needs {data} bytes, found {have}");
    }
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// A float32 array's shape and values (C order) from a whole `.npy` file's bytes; the header is
/// checked first (see [`check_header`]).
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    let header = check_header(bytes)?;
    if header.descr != "<f4" {
        bail!(
            "a {} array; save it with np.save(path, x.astype(np.float32))",
            header.descr
        );
    }
    let arr: ArrayD<f32> = ndarray_npy::ReadNpyExt::read_npy(bytes).map_err(|e| {
        anyhow!("not a float32 .npy array ({e}); save it with np.save(path, x.astype(np.float32))")
    })?;
    let shape = arr.shape().to_vec();
    let data = arr.as_standard_layout().iter().copied().collect();
    Ok((shape, data))
}
