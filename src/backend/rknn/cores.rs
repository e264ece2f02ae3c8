//! `--npu-cores`: which RK3588 NPU cores to use, one context per core.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

/// `RKNN_NPU_CORE_AUTO`: the runtime picks an idle core.
pub const MASK_AUTO: i32 = 0;
/// The RK3588 has three NPU cores.
pub const MAX_CORES: usize = 3;

/// The NPU cores to run on: `auto` (one context, the runtime's choice) or a list of cores,
/// each getting its own context; images and frames go to them round-robin.
///
/// ```
/// use ign_edge::backend::rknn::cores::NpuCores;
/// let c: NpuCores = "0-2".parse().unwrap();
/// assert_eq!(c.masks(), vec![1, 2, 4]);
/// assert_eq!("auto".parse::<NpuCores>().unwrap().masks(), vec![0]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NpuCores {
    #[default]
    Auto,
    List(Vec<usize>),
}

impl NpuCores {
    /// One `rknn_core_mask` per context.
    pub fn masks(&self) -> Vec<i32> {
        match self {
            NpuCores::Auto => vec![MASK_AUTO],
            NpuCores::List(l) => l.iter().map(|&c| 1 << c).collect(),
        }
    }

    /// How many contexts this makes.
    pub fn contexts(&self) -> usize {
        self.masks().len()
    }
}

impl FromStr for NpuCores {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(NpuCores::Auto);
        }
        let mut cores = Vec::new();
        for part in s.split(',') {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part.trim(), part.trim()),
            };
            let parse = |t: &str| -> Result<usize> {
                match t.parse::<usize>() {
                    Ok(c) if c < MAX_CORES => Ok(c),
                    _ => bail!(
                        "--npu-cores {s}: cores are 0, 1 and 2 (give auto, 0, 1, 2, 0-1, 0-2 or a list like 0,2)"
                    ),
                }
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                bail!("--npu-cores {s}: a range goes from low to high (0-2)");
            }
            for c in a..=b {
                if !cores.contains(&c) {
                    cores.push(c);
                }
            }
        }
        Ok(NpuCores::List(cores))
    }
}

impl fmt::Display for NpuCores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpuCores::Auto => write!(f, "auto"),
            NpuCores::List(l) => {
                let s: Vec<String> = l.iter().map(|c| c.to_string()).collect();
                write!(f, "{}", s.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (s, masks) in [
            ("auto", vec![0]),
            ("0", vec![1]),
            ("1", vec![2]),
            ("2", vec![4]),
            ("0-1", vec![1, 2]),
            ("0-2", vec![1, 2, 4]),
            ("0,2", vec![1, 4]),
            ("1-1,0", vec![2, 1]),
        ] {
            assert_eq!(s.parse::<NpuCores>().unwrap().masks(), masks, "{s}");
        }
    }

    #[test]
    fn rejects_cores_the_chip_lacks() {
        for s in ["3", "0-3", "2-0", "x", ""] {
            let e = s.parse::<NpuCores>().unwrap_err().to_string();
            assert!(e.contains("--npu-cores"), "{s}: {e}");
        }
    }
}
