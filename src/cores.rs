//! Pin the process to chosen CPU cores (`--cores`), e.g. the Cortex-A76 "big" cores of an
//! RK3588 (4-7), so that benchmarks and the live loop do not land on the slow A55 cores.

use anyhow::{bail, Context, Result};

/// Cores named by `spec`: `all`, `big` (the cores with the highest capacity, from
/// `/sys/devices/system/cpu/cpu*/cpu_capacity` or their maximum frequency), `little`, or a
/// list such as `4-7` or `0,2,4`.
///
/// ```
/// assert_eq!(ign_edge::cores::parse_list("4-7").unwrap(), vec![4, 5, 6, 7]);
/// assert_eq!(ign_edge::cores::parse_list("0,2-3").unwrap(), vec![0, 2, 3]);
/// ```
pub fn resolve(spec: &str) -> Result<Vec<usize>> {
    let n = ign_core::backend::cpu::available_cores();
    match spec {
        "all" => Ok((0..online_cores().max(n)).collect()),
        "big" | "little" => {
            let caps = capacities();
            if caps.is_empty() {
                return Ok((0..n).collect());
            }
            let want = if spec == "big" {
                caps.iter().map(|c| c.1).max()
            } else {
                caps.iter().map(|c| c.1).min()
            };
            Ok(caps
                .iter()
                .filter(|c| Some(c.1) == want)
                .map(|c| c.0)
                .collect())
        }
        list => parse_list(list),
    }
}

/// Parse a core list: `4-7`, `0,2,4`, `0-1,4`.
pub fn parse_list(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{s}: expected --cores all, big, little or a list like 4-7 or 0,2");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().with_context(bad)?, b.parse().with_context(bad)?);
                if b < a {
                    bail!(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(bad)?),
        }
    }
    if out.is_empty() {
        bail!("{s}: no core named");
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn online_cores() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_list(s.trim()).ok())
        .map(|v| v.len())
        .unwrap_or(0)
}

/// `(core, capacity)` for every core that reports one (capacity, else max frequency).
fn capacities() -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for cpu in 0..online_cores() {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}");
        let read = |f: &str| {
            std::fs::read_to_string(format!("{base}/{f}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        if let Some(c) = read("cpu_capacity").or_else(|| read("cpufreq/cpuinfo_max_freq")) {
            out.push((cpu, c));
        }
    }
    out
}

/// Pin the calling thread (and the threads it starts afterwards) to `cores`.
pub fn pin(cores: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            if c >= libc::CPU_SETSIZE as usize {
                bail!("core {c} is beyond this system's CPU set");
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "cannot pin to cores {cores:?}: {} (this machine has {} cores online)",
                std::io::Error::last_os_error(),
                online_cores()
            );
        }
    }
    Ok(())
}

/// Resolve `spec` and pin to it; returns the cores.
pub fn pin_spec(spec: &str) -> Result<Vec<usize>> {
    let cores = resolve(spec)?;
    pin(&cores)?;
    Ok(cores)
}
