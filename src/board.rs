//! Board profiles (`boards/<name>/board.toml`, docs/ARCHITECTURE.md, contract 3): the build
//! target and flags, and the run defaults (source, sink, precision, threads, cores) that
//! `--board NAME` applies to `run` and `bench`. The shipped profiles are embedded in the binary;
//! `--board path/to/board.toml` reads another, `--board auto` picks the one matching
//! `/proc/device-tree/model`.

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::Precision;

/// One board profile.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    pub description: String,
    /// Substrings of `/proc/device-tree/model` that identify the board.
    #[serde(rename = "match")]
    pub model_match: Vec<String>,
    /// Rust target triple of the board.
    pub target: String,
    /// Extra rustc flags for builds for this board (e.g. `-C target-cpu=cortex-a76`).
    pub rustflags: Vec<String>,
    /// Cargo features the board's build enables.
    pub features: Vec<String>,
    pub defaults: Defaults,
}

/// What `run` and `bench` use on this board unless told otherwise.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub source: String,
    pub sink: String,
    pub backend: String,
    pub precision: Precision,
    pub threads: usize,
    /// `all`, `big`, `little` or a core list (see [`crate::cores`]).
    pub cores: String,
}

/// The shipped profiles, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("rpi4", include_str!("../boards/rpi4/board.toml")),
    ("rpi5", include_str!("../boards/rpi5/board.toml")),
    ("rk3588", include_str!("../boards/rk3588/board.toml")),
];

/// Parse a profile.
pub fn parse(text: &str) -> Result<Board> {
    let b: Board = toml::from_str(text)?;
    if !["auto", "cpu", "rknn"].contains(&b.defaults.backend.as_str()) {
        anyhow::bail!(
            "backend = \"{}\": expected auto, cpu or rknn",
            b.defaults.backend
        );
    }
    Ok(b)
}

/// Every shipped profile.
pub fn shipped() -> Vec<Board> {
    SHIPPED
        .iter()
        .map(|(n, t)| parse(t).unwrap_or_else(|e| panic!("boards/{n}/board.toml: {e}")))
        .collect()
}

/// This machine's board name from the device tree (ARM boards), if any.
pub fn device_tree_model() -> Option<String> {
    std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|s| s.trim_end_matches('\0').trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The shipped profile whose `match` fits `model`.
pub fn for_model(model: &str) -> Option<Board> {
    shipped()
        .into_iter()
        .find(|b| b.model_match.iter().any(|m| model.contains(m.as_str())))
}

/// A profile by name (`rpi4`, `rpi5`, `rk3588`), `auto` (from the device tree), or a path to a
/// `board.toml`.
///
/// ```
/// let b = ign_edge::board::load("rk3588").unwrap();
/// assert_eq!(b.defaults.cores, "big");
/// assert!(ign_edge::board::load("toaster").is_err());
/// ```
pub fn load(name: &str) -> Result<Board> {
    if name == "auto" {
        let model = device_tree_model()
            .ok_or_else(|| anyhow!("--board auto: this machine has no /proc/device-tree/model (not an ARM board?); name a profile: rpi4, rpi5, rk3588"))?;
        return for_model(&model).ok_or_else(|| {
            anyhow!("--board auto: no profile matches \"{model}\"; name one (rpi4, rpi5, rk3588) or pass a board.toml")
        });
    }
    if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == name) {
        return parse(text);
    }
    let path = std::path::Path::new(name);
    if path.extension().is_some_and(|e| e == "toml") {
        let text = crate::limits::read_text_file(path)
            .with_context(|| format!("{name}: cannot read the board profile"))?;
        return parse(&text).with_context(|| format!("{name}: not a valid board profile"));
    }
    Err(anyhow!(
        "--board {name}: unknown board; the profiles are {}, or pass auto or a board.toml",
        SHIPPED
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse_and_match_their_boards() {
        let all = shipped();
        assert_eq!(all.len(), 3);
        for b in &all {
            assert_eq!(b.target, "aarch64-unknown-linux-gnu");
            assert!(crate::cores::parse_list("0").is_ok());
        }
        assert_eq!(
            for_model("Raspberry Pi 5 Model B Rev 1.0").unwrap().name,
            "rpi5"
        );
        assert_eq!(
            for_model("Raspberry Pi 4 Model B Rev 1.4").unwrap().name,
            "rpi4"
        );
        assert_eq!(for_model("Orange Pi 5 Plus").unwrap().name, "rk3588");
        assert_eq!(for_model("Radxa ROCK 5B").unwrap().name, "rk3588");
        assert!(for_model("QEMU Virtual Machine").is_none());
        assert_eq!(load("rpi5").unwrap().defaults.precision, Precision::Fp16);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = SHIPPED[0]
            .1
            .replace("threads = 1", "threads = 1\nthreadz = 2");
        assert!(parse(&text).is_err());
    }
}
