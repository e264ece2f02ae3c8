//! What machine a benchmark ran on.

use serde::{Deserialize, Serialize};

/// The machine, as recorded in every benchmark report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub arch: String,
    pub cpu: String,
    pub cores: usize,
    /// SIMD features that matter for inference (avx2, avx512f, fma, neon, asimdhp, ...).
    pub features: Vec<String>,
    pub kernel: String,
    /// `/proc/device-tree/model` when present (Raspberry Pi, RK3588 boards).
    pub board: Option<String>,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_matches(char::from(0)).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The value of the first `key : value` line of /proc/cpuinfo with one of `keys`.
fn cpuinfo_field(cpuinfo: &str, keys: &[&str]) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        keys.contains(&k.trim()).then(|| v.trim().to_string())
    })
}

impl Machine {
    /// Detect the current machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo_field(&cpuinfo, &["model name", "Hardware", "Model"])
            .or_else(|| cpuinfo_field(&cpuinfo, &["CPU part"]).map(|p| format!("ARM part {p}")))
            .unwrap_or_else(|| "unknown".into());
        let flags = cpuinfo_field(&cpuinfo, &["flags", "Features"]).unwrap_or_default();
        let wanted = [
            "avx",
            "avx2",
            "fma",
            "avx512f",
            "avx512vnni",
            "f16c",
            "neon",
            "asimd",
            "asimdhp",
            "asimddp",
            "fphp",
            "sve",
            "i8mm",
        ];
        let features = flags
            .split_whitespace()
            .filter(|f| wanted.contains(f))
            .map(str::to_owned)
            .collect();
        Machine {
            arch: std::env::consts::ARCH.into(),
            cpu,
            cores: crate::backend::cpu::available_cores(),
            features,
            kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            board: read_trim("/proc/device-tree/model"),
        }
    }

    /// True when the CPU has native fp16 arithmetic (aarch64 `asimdhp`).
    pub fn has_fp16(&self) -> bool {
        self.features.iter().any(|f| f == "asimdhp")
    }
}

/// Peak resident memory of this process so far, in bytes (`VmHWM`), when known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
