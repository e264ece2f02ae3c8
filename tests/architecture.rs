//! The dependency rules and size limits of docs/ARCHITECTURE.md, checked on the sources
//! themselves: nothing outside `src/cli/` and `src/main.rs` uses `crate::cli`; the trainer
//! depends on `ign-core`, not on the runtime; library code neither prints nor exits; no function
//! is 120 lines or longer.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources(dirs: &[&str]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in dirs {
        rust_files(&root().join(d), &mut v);
    }
    assert!(v.len() > 20, "too few sources found: {}", v.len());
    v
}

#[test]
fn only_the_command_line_uses_the_cli_module() {
    let cli = root().join("src/cli");
    let offenders: Vec<String> = sources(&["src"])
        .into_iter()
        .filter(|p| !p.starts_with(&cli) && !p.ends_with("src/main.rs"))
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("crate::cli"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "crate::cli used in {offenders:?}");
}

#[test]
fn the_trainer_and_the_core_do_not_depend_on_the_runtime() {
    for manifest in ["trainer/Cargo.toml", "core/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(manifest)).unwrap();
        let deps: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ign-edge") || l.starts_with("drm") || l.starts_with("hyper"))
            .collect();
        assert!(deps.is_empty(), "{manifest} depends on {deps:?}");
    }
    let trainer = std::fs::read_to_string(root().join("trainer/Cargo.toml")).unwrap();
    assert!(trainer.contains("ign-core = { path = \"../core\" }"));
}

/// Library code reports through `log` (`ign_core::notices`); only the front ends print.
#[test]
fn library_code_neither_prints_nor_exits() {
    let cli = root().join("src/cli");
    let mut offenders = Vec::new();
    for p in sources(&["src", "core/src", "trainer/src"]) {
        let front_end = p.starts_with(&cli)
            || p.ends_with("main.rs")
            || p.ends_with("core/src/notices.rs")
            || p.starts_with(root().join("trainer/src/cli"));
        if front_end {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // the code before its unit tests
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for needle in ["println!", "process::exit"] {
            if code
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains(needle))
            {
                offenders.push(format!("{}: {needle}", p.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// `(lines, file, name)` of every `fn` with a body, braces counted from its signature.
fn function_lengths(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !started && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if started && depth <= 0 {
                out.push((j - i + 1, name.clone()));
                break;
            }
        }
    }
    out
}

#[test]
fn no_function_is_120_lines_or_longer() {
    let mut long = Vec::new();
    let mut longest = 0;
    for p in sources(&["src", "core/src", "trainer/src"]) {
        for (n, name) in function_lengths(&p) {
            longest = longest.max(n);
            if n >= 120 {
                long.push(format!("{}: fn {name} ({n} lines)", p.display()));
            }
        }
    }
    assert!(
        longest > 50,
        "the counter found no real function ({longest})"
    );
    assert!(long.is_empty(), "split these: {long:#?}");
}
