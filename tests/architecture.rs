//! The rules of docs/ARCHITECTURE.md ("Crates and layers"), checked on the sources and on
//! cargo's dependency graph:
//!
//! 1. the layers of `ign-edge` point down: `cli` → `app` → engine → `ign-core`, and inside the
//!    engine the loop (`pipeline`) knows neither the web page nor the bench, the backends know
//!    no loop ([`LAYERS`]);
//! 2. clap only in the front ends (`src/cli/`, `main.rs`, `trainer/src/cli/`), none in `ign-core`;
//! 3. `ign-core` and `ign-train` depend on no device, server or runtime crate, through
//!    `cargo metadata` (the whole resolved tree, not only the manifest);
//! 4. library code neither prints (any print macro, `dbg!`) nor exits;
//! 5. no function reaches 100 lines, no file exceeds 600 lines but the kernels ([`KERNELS`]).
//!
//! Every rule's checker is also run on a planted violation ([`each_rule_catches_a_planted_violation`]),
//! so that a checker that finds nothing fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A source file: its path relative to the workspace root and its code (comments and the
/// unit tests after `#[cfg(test)]` left out).
struct Source {
    rel: String,
    code: String,
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

/// The code of `text` without comment lines and without its unit tests.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sources(dirs: &[&str]) -> Vec<Source> {
    let mut paths = Vec::new();
    for d in dirs {
        rust_files(&root().join(d), &mut paths);
    }
    assert!(paths.len() > 20, "too few sources found: {}", paths.len());
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            Source {
                rel: p
                    .strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                code: code_of(&text),
            }
        })
        .collect()
}

// ---- rule 1: layers ------------------------------------------------------------------------

/// Each top-level module of `ign-edge` (by its folder or file under `src/`) and the modules of
/// the crate it must not use. The front end (`cli`, `main.rs`) may use everything.
const LAYERS: &[(&str, &[&str])] = &[
    // application: everything but the command line
    ("app", &["cli"]),
    // engine
    ("pipeline", &["cli", "app", "web", "events", "bench"]),
    ("web", &["cli", "app", "bench"]),
    // events watch the loop as the web page does; the page shows their counters
    ("events", &["cli", "app", "web", "bench"]),
    ("bench", &["cli", "app", "web", "events"]),
    (
        "backend",
        &["cli", "app", "pipeline", "web", "events", "bench"],
    ),
    (
        "latent",
        &["cli", "app", "pipeline", "web", "events", "bench"],
    ),
    (
        "board",
        &[
            "cli", "app", "pipeline", "web", "events", "bench", "backend",
        ],
    ),
    (
        "cores",
        &[
            "cli", "app", "pipeline", "web", "events", "bench", "backend",
        ],
    ),
    (
        "signals",
        &[
            "cli", "app", "pipeline", "web", "events", "bench", "backend",
        ],
    ),
];

/// The top-level module a file under `src/` belongs to (`src/pipeline/sink/fb.rs` → pipeline).
fn module_of(rel: &str) -> Option<&str> {
    let rest = rel.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// The crate modules `code` names as `crate::<module>`.
fn crate_uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(i, _)| {
            // not `ign_core::...::crate::` nor `$crate::`
            !code[..*i].ends_with('$') && !code[..*i].ends_with('_')
        })
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// `file: uses crate::x` for every use that breaks [`LAYERS`].
fn layer_offences(files: &[Source]) -> Vec<String> {
    let rules: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut out = Vec::new();
    for f in files {
        let Some(m) = module_of(&f.rel) else { continue };
        let Some(forbidden) = rules.get(m) else {
            continue;
        };
        for used in crate_uses(&f.code) {
            if forbidden.contains(&used.as_str()) {
                out.push(format!("{}: {m} uses crate::{used}", f.rel));
            }
        }
    }
    out
}

#[test]
fn layers_point_down() {
    let files = sources(&["src"]);
    // every module of the crate has a rule (a new one must be placed)
    let known: BTreeSet<&str> = LAYERS.iter().map(|l| l.0).collect();
    let unplaced: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| module_of(&f.rel))
        .filter(|m| !["cli", "main", "lib"].contains(m) && !known.contains(m))
        .collect();
    assert!(unplaced.is_empty(), "place these in LAYERS: {unplaced:?}");
    let offences = layer_offences(&files);
    assert!(offences.is_empty(), "{offences:#?}");
}

// ---- rule 2: clap in the front ends only -----------------------------------------------------

fn is_front_end(rel: &str) -> bool {
    rel.starts_with("src/cli/")
        || rel.starts_with("trainer/src/cli/")
        || rel.ends_with("/main.rs")
        || rel == "core/src/notices.rs"
}

/// Files outside the front ends that use clap.
fn clap_offences(files: &[Source]) -> Vec<String> {
    files
        .iter()
        .filter(|f| !is_front_end(&f.rel))
        .filter(|f| {
            f.code.contains("clap::") || f.code.contains("#[arg(") || f.code.contains("#[command(")
        })
        .map(|f| f.rel.clone())
        .collect()
}

#[test]
fn clap_is_only_in_the_front_ends() {
    let offences = clap_offences(&sources(&["src", "core/src", "trainer/src"]));
    assert!(
        offences.is_empty(),
        "clap below the command line: {offences:#?}"
    );
    let core = std::fs::read_to_string(root().join("core/Cargo.toml")).unwrap();
    assert!(
        !core.lines().any(|l| l.trim_start().starts_with("clap")),
        "core/Cargo.toml depends on clap"
    );
}

// ---- rule 3: the dependency trees ------------------------------------------------------------

/// Crates that only the runtime may pull in: device access, the web server, the NPU.
const RUNTIME_ONLY: &[&str] = &[
    "ign-edge",
    "drm",
    "linuxvideo",
    "hyper",
    "axum",
    "tokio",
    "mipidsi",
    "linux-embedded-hal",
    "libloading",
    "gstreamer",
];

/// The packages `root` depends on (normal dependencies, transitively) in `cargo metadata`'s
/// resolved graph.
fn dependency_tree(meta: &serde_json::Value, root_name: &str) -> BTreeSet<String> {
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = name_of
        .iter()
        .find(|(_, n)| **n == root_name)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{root_name} is not in the workspace"));
    let (mut seen, mut todo) = (BTreeSet::new(), vec![start]);
    while let Some(id) = todo.pop() {
        for d in nodes[id]["deps"].as_array().unwrap() {
            let normal = d["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep = d["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[dep].to_string()) {
                todo.push(dep);
            }
        }
    }
    seen
}

fn runtime_offences(tree: &BTreeSet<String>) -> Vec<String> {
    tree.iter()
        .filter(|d| {
            RUNTIME_ONLY
                .iter()
                .any(|r| d == r || d.starts_with(&format!("{r}-")))
        })
        .cloned()
        .collect()
}

#[test]
fn the_trainer_and_the_core_depend_on_no_runtime_crate() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runtime = dependency_tree(&meta, "ign-edge");
    // the check sees what it looks for: the runtime's own tree has them
    assert!(
        runtime.contains("hyper") && runtime.contains("drm"),
        "{runtime:?}"
    );
    for krate in ["ign-train", "ign-core"] {
        let tree = dependency_tree(&meta, krate);
        assert!(tree.contains("tract-onnx"), "{krate}: {tree:?}");
        let bad = runtime_offences(&tree);
        assert!(bad.is_empty(), "{krate} pulls in {bad:?}");
    }
    let core = dependency_tree(&meta, "ign-core");
    assert!(
        !core.contains("ign-train") && !core.contains("clap"),
        "{core:?}"
    );
}

// ---- rule 4: library code neither prints nor exits -------------------------------------------

const PRINTS: &[&str] = &[
    "println!",
    "print!",
    "eprintln!",
    "eprint!",
    "dbg!",
    "process::exit",
];

/// `file: macro` for each print or exit outside the front ends.
fn print_offences(files: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| !is_front_end(&f.rel)) {
        for needle in PRINTS {
            let found = f.code.match_indices(needle).any(|(i, _)| {
                // `print!` inside `eprint!`/`println!` is counted under those names
                let before = f.code[..i].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if found {
                out.push(format!("{}: {needle}", f.rel));
            }
        }
    }
    out
}

#[test]
fn library_code_neither_prints_nor_exits() {
    let offences = print_offences(&sources(&["src", "core/src", "trainer/src"]));
    assert!(offences.is_empty(), "{offences:#?}");
}

// ---- rule 5: sizes ---------------------------------------------------------------------------

/// Files allowed past [`MAX_FILE_LINES`]: compute kernels, whose loops read best in one place.
const KERNELS: &[&str] = &[
    "core/src/backend/deconv_sum.rs",
    "trainer/src/ops/conv_kernels.rs",
];
const MAX_FN_LINES: usize = 100;
const MAX_FILE_LINES: usize = 600;

/// `(lines, name)` of every `fn` with a body in `text`, braces counted from its signature.
fn function_lengths(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = ["pub(crate) ", "pub(super) ", "pub ", "unsafe ", "const "]
            .iter()
            .fold(t, |t, p| t.strip_prefix(p).unwrap_or(t));
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

/// Functions of [`MAX_FN_LINES`] or more, and files past [`MAX_FILE_LINES`] (whole files,
/// tests included) that are not kernels; and the longest function seen.
fn size_offences(files: &[(String, String)]) -> (Vec<String>, usize) {
    let (mut out, mut longest) = (Vec::new(), 0);
    for (rel, text) in files {
        for (n, name) in function_lengths(text) {
            longest = longest.max(n);
            if n >= MAX_FN_LINES {
                out.push(format!("{rel}: fn {name} ({n} lines)"));
            }
        }
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES && !KERNELS.contains(&rel.as_str()) {
            out.push(format!("{rel}: {lines} lines"));
        }
    }
    (out, longest)
}

#[test]
fn no_long_functions_or_files() {
    let mut paths = Vec::new();
    for d in ["src", "core/src", "trainer/src"] {
        rust_files(&root().join(d), &mut paths);
    }
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let (offences, longest) = size_offences(&files);
    assert!(
        longest > 50,
        "the counter found no real function ({longest})"
    );
    assert!(offences.is_empty(), "split these: {offences:#?}");
}

// ---- each checker against a planted violation -----------------------------------------------

fn planted(rel: &str, code: &str) -> Source {
    Source {
        rel: rel.into(),
        code: code_of(code),
    }
}

#[test]
fn each_rule_catches_a_planted_violation() {
    // 1: the loop reaching up into the application, the web page or the bench
    for (file, code) in [
        ("src/pipeline/mod.rs", "use crate::app::run::RunConfig;"),
        (
            "src/pipeline/display.rs",
            "let s = crate::web::WebServer::start;",
        ),
        (
            "src/backend/select.rs",
            "use crate::app::model_spec::ModelSpec;",
        ),
        ("src/app/run.rs", "use crate::cli::args::ModelArgs;"),
    ] {
        assert_eq!(
            layer_offences(&[planted(file, code)]).len(),
            1,
            "{file}: {code}"
        );
    }
    // ... and what is allowed, or only mentioned in a comment, is not an offence
    for (file, code) in [
        ("src/app/run.rs", "use crate::pipeline::run_loop;"),
        ("src/web/mod.rs", "use crate::pipeline::feed::Watcher;"),
        ("src/pipeline/mod.rs", "// see crate::web for the page"),
        ("src/cli/run.rs", "use crate::app::run::RunConfig;"),
    ] {
        assert!(
            layer_offences(&[planted(file, code)]).is_empty(),
            "{file}: {code}"
        );
    }
    // 2: a clap derive below the command line
    for (file, code) in [
        ("src/app/run.rs", "#[derive(clap::Args)]\nstruct A {}"),
        (
            "core/src/model/metadata.rs",
            "#[derive(clap::ValueEnum)]\nenum P {}",
        ),
        (
            "trainer/src/config.rs",
            "struct A {\n    #[arg(long)]\n    x: u8,\n}",
        ),
    ] {
        assert_eq!(
            clap_offences(&[planted(file, code)]),
            vec![file.to_string()]
        );
    }
    assert!(clap_offences(&[planted("src/cli/run.rs", "use clap::Args;")]).is_empty());
    // 3: a runtime crate in a tree
    let tree: BTreeSet<String> = ["tract-onnx", "hyper-util", "serde"]
        .map(String::from)
        .into();
    assert_eq!(runtime_offences(&tree), vec!["hyper-util".to_string()]);
    // 4: each print macro, and an exit, in library code; none in a front end
    for m in [
        "println!(\"x\")",
        "print!(\"x\")",
        "eprint!(\"x\")",
        "dbg!(x)",
        "std::process::exit(2)",
    ] {
        let f = planted("core/src/idx.rs", &format!("fn f() {{ {m}; }}"));
        assert_eq!(print_offences(&[f]).len(), 1, "{m}");
    }
    assert!(
        print_offences(&[planted("src/cli/info.rs", "fn f() { println!(\"x\"); }")]).is_empty()
    );
    // 5: a long function, a long file
    let long_fn = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(MAX_FN_LINES));
    let long_file = "// x\n".repeat(MAX_FILE_LINES + 1);
    let (o, _) = size_offences(&[
        ("core/src/a.rs".into(), long_fn),
        ("core/src/b.rs".into(), long_file.clone()),
        (KERNELS[0].into(), long_file),
    ]);
    assert_eq!(o.len(), 2, "{o:?}");
}
