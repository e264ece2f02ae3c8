//! Recipes: the built-in ones parse and start on the fixture data, bad ones are refused with
//! the file, stage and flag named, a rerun skips finished stages and resumes an unfinished one,
//! and export writes the recipe into the model.

mod common;

use common::weights;
use ign_train::train::checkpoint::{self, Checkpoint};
use ign_train::train::config::RecipeStage;
use ign_train::train::recipe::{self, Recipe, RecipeOptions, BUILT_IN};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tiny() -> Recipe {
    let path = fixture("recipe-tiny.toml");
    Recipe::load(path.to_str().unwrap()).unwrap()
}

fn options(out: &Path) -> RecipeOptions {
    RecipeOptions {
        data: fixture("mnist-300-images-idx3-ubyte.gz"),
        out: out.to_path_buf(),
        quiet: true,
        ..Default::default()
    }
}

fn stage_ck(out: &Path, stage: &str) -> Checkpoint {
    checkpoint::load(&out.join(stage).join("checkpoint.safetensors")).unwrap()
}

#[test]
fn every_recipe_file_is_built_in_and_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/recipes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let built_in: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, built_in, "each models/recipes/*.toml is built in");
    assert!(names.contains(&"ign-mnist".to_string()));
    for (file, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(file).unwrap();
        let r = Recipe::parse(&text, &file.display().to_string()).unwrap();
        assert_eq!(&r.name, name, "{}", file.display());
        // a baseline (scene-ae: reconstruction alone) may be one stage
        assert!(!r.stages.is_empty() && !r.description.is_empty(), "{name}");
        assert_eq!(r.stages[0].from, None, "{name}");
        // the built-in copy is the file, and a name finds it
        let built = Recipe::load(name).unwrap();
        assert_eq!((built.text, built.hash), (text, r.hash));
        // every stage after the first starts from the one before, further on
        for (i, s) in r.stages.iter().enumerate().skip(1) {
            assert_eq!(s.from, Some(i - 1), "{name} stage {}", s.name);
            if let (Some(a), Some(b)) = (r.stages[i - 1].steps, s.steps) {
                assert!(b > a, "{name} stage {}", s.name);
            }
        }
    }
}

/// A recipe text with `stages` after a valid header.
fn with_stages(stages: &str) -> String {
    format!("name = \"bad\"\ndescription = \"d\"\ndata = \"x\"\n{stages}")
}

const NOISE: &str = "[[stage]]\nname = \"noise\"\nsteps = 10\n[stage.flags]\nwidth = 4\n";

#[test]
fn bad_recipes_are_refused_with_the_file_stage_and_flag_named() {
    let cases: Vec<(String, &[&str])> = vec![
        (
            format!("{}extra = 1\n", with_stages("")),
            &["unknown field", "extra"],
        ),
        (with_stages(""), &["no [[stage]]"]),
        (
            with_stages(&format!("{NOISE}[[stage]]\nname = \"noise\"\nsteps = 20\n")),
            &["stage noise", "two stages"],
        ),
        (
            with_stages(&format!(
                "{NOISE}[[stage]]\nname = \"b\"\nfrom = \"c\"\nsteps = 20\n"
            )),
            &["stage b", "\"c\" names no earlier stage"],
        ),
        (
            with_stages(&format!(
                "{NOISE}[[stage]]\nname = \"b\"\nfrom = \"noise\"\nsteps = 10\n"
            )),
            &["stage b", "must exceed the 10 of stage noise"],
        ),
        (
            with_stages("[[stage]]\nname = \"Noise\"\nsteps = 5\n"),
            &["lowercase"],
        ),
        (
            with_stages("[[stage]]\nname = \"a\"\nsteps = 5\ncolour = 1\n"),
            &["unknown field", "colour"],
        ),
        (
            with_stages(&format!("{NOISE}colour = 1\n")),
            &[
                "stage noise",
                "flag colour",
                "unexpected argument '--colour'",
            ],
        ),
        (
            with_stages(&format!("{NOISE}norm = \"bogus\"\n")),
            &["stage noise", "flag norm", "invalid value 'bogus'"],
        ),
        (
            with_stages(&format!("{NOISE}restore-printed = false\n")),
            &["flag restore-printed", "set with true"],
        ),
        (
            with_stages(&format!("{NOISE}lr = true\n")),
            &["flag lr", "a value is required"],
        ),
        (
            with_stages(&format!("{NOISE}z-mix = [0.3]\n")),
            &["flag z-mix", "a string, a number or true"],
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", Recipe::parse(&text, "bad.toml").unwrap_err());
        assert!(!err.contains('\n'), "{err}");
        assert!(err.starts_with("bad.toml: "), "{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} not in: {err}");
        }
    }
    // what the command line gives, or the stage's own keys set, is not a stage's flag
    for flag in [
        "data",
        "out",
        "resume",
        "from",
        "steps",
        "recipe",
        "threads",
        "sample-every",
        "checkpoint-every",
    ] {
        let text = with_stages(&format!("{NOISE}{flag} = \"1\"\n"));
        let err = format!("{:#}", Recipe::parse(&text, "bad.toml").unwrap_err());
        assert!(
            err.starts_with("bad.toml: stage noise: flag ")
                && err.contains(flag)
                && err.contains("not a stage's flag"),
            "{err}"
        );
    }
    let err = format!("{:#}", Recipe::load("no-such-recipe").unwrap_err());
    assert!(
        err.contains("ign-mnist") && err.contains("no-such-recipe"),
        "{err}"
    );
}

/// The first two stages of each built-in recipe, two steps each, on the fixture data (the
/// printed digits from the fixture faces).
#[test]
fn the_first_two_stages_of_each_built_in_recipe_run() {
    for (name, data) in [("ign-mnist", "mnist"), ("ign-fashion", "fashion")] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let r = Recipe::load(name).unwrap();
        let opts = RecipeOptions {
            data: fixture(&format!("{data}-300-images-idx3-ubyte.gz")),
            stages: Some(2),
            step_cap: Some(2),
            fonts: Some(fixture("fonts")),
            ..options(&out)
        };
        recipe::run(&r, &opts).unwrap();
        let (first, second) = (&r.stages[0], &r.stages[1]);
        let (a, b) = (stage_ck(&out, &first.name), stage_ck(&out, &second.name));
        assert_eq!((a.step, b.step), (2, 4), "{name}");
        assert!(!out.join(&r.stages[2].name).exists(), "{name}");
        // the flags of the recipe, as the command line reads them
        assert_eq!(a.config.model.width, 32);
        assert_eq!(a.config.model.norm, ign_train::model::Norm::Batch);
        assert_eq!((a.config.z_mix, b.config.z_mix), (0.0, 0.3));
        assert_eq!(b.config.recipe.as_ref().unwrap().to_string(), {
            let n = r.stages.len();
            format!("{name}@{} stage {} (2 of {n})", r.hash, second.name)
        });
        let copy = std::fs::read_to_string(out.join("recipe.toml")).unwrap();
        assert_eq!(copy, r.text);
    }
}

#[test]
fn a_rerun_skips_finished_stages_and_resumes_an_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    let r = tiny();
    // the whole recipe at once
    let whole = dir.path().join("whole");
    recipe::run(&r, &options(&whole)).unwrap();
    // stopped in the first stage (as Ctrl-C leaves it), then run again
    let parts = dir.path().join("parts");
    let stopped = RecipeOptions {
        stages: Some(1),
        step_cap: Some(1),
        ..options(&parts)
    };
    recipe::run(&r, &stopped).unwrap();
    assert_eq!(stage_ck(&parts, "noise").step, 1);
    recipe::run(&r, &options(&parts)).unwrap();
    let steps: Vec<u64> = ["noise", "mix", "restore"]
        .iter()
        .map(|s| stage_ck(&parts, s).step)
        .collect();
    assert_eq!(steps, [2, 4, 6]);
    let log = |s: &str| std::fs::read_to_string(parts.join(s).join("log.csv")).unwrap();
    assert_eq!(log("noise").lines().count(), 1 + 2, "{}", log("noise"));
    assert!(log("mix").lines().nth(1).unwrap().starts_with("3,"));
    // the resumed chain is the uninterrupted one
    assert_eq!(
        weights(&stage_ck(&parts, "restore")),
        weights(&stage_ck(&whole, "restore"))
    );
    assert_eq!(stage_ck(&parts, "restore").config.loss.lambda_restore, 20.0);
    // a third run finds every stage done and changes nothing
    let before = std::fs::read(parts.join("restore/checkpoint.safetensors")).unwrap();
    recipe::run(&r, &options(&parts)).unwrap();
    let after = std::fs::read(parts.join("restore/checkpoint.safetensors")).unwrap();
    assert_eq!(before, after);
    assert_eq!(log("noise").lines().count(), 3);
    // another recipe in the same folder is refused
    let other = Recipe::parse(&r.text.replace("steps = 6", "steps = 8"), "other.toml").unwrap();
    let err = format!("{:#}", recipe::run(&other, &options(&parts)).unwrap_err());
    assert!(
        err.contains("recipe.toml") && err.contains("tiny@"),
        "{err}"
    );
}

#[test]
fn export_of_a_recipe_run_writes_its_last_stage_and_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = tiny();
    let model = dir.path().join("m.onnx");
    let export = || {
        ign_train::export::export(
            &out,
            &model,
            ign_train::train::bnstats::BnStats::Data,
            None,
            false,
        )
    };
    recipe::run(
        &r,
        &RecipeOptions {
            stages: Some(2),
            ..options(&out)
        },
    )
    .unwrap();
    let err = format!("{:#}", export().unwrap_err());
    assert!(err.contains("last stage restore has not run"), "{err}");
    recipe::run(&r, &options(&out)).unwrap();
    export().unwrap();
    let m = ign_core::model::Model::load(&model).unwrap();
    let text = std::fs::read_to_string(fixture("recipe-tiny.toml")).unwrap();
    let hash: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        m.info.metadata["ign.recipe"],
        format!("tiny@{} stage restore (3 of 3)", &hash[..12])
    );
    assert!(m.info.metadata["ign.trainer"].contains("steps=6"));
    // a plain run has none; old checkpoints read as none
    let stage = RecipeStage {
        recipe: "tiny".into(),
        hash: hash[..12].into(),
        stage: "restore".into(),
        index: 3,
        stages: 3,
    };
    assert_eq!(stage_ck(&out, "restore").config.recipe, Some(stage));
}

/// Through the binary: progress per stage, and the flags a recipe sets are refused beside it.
#[test]
fn the_command_line_runs_a_recipe_and_refuses_its_flags_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ign-train"))
            .args(["train", "--recipe"])
            .arg(fixture("recipe-tiny.toml"))
            .arg("--data")
            .arg(fixture("mnist-300-images-idx3-ubyte.gz"))
            .args(["--out", "run", "--threads", "1", "--sample-every", "0"])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in [
        "stage 1 of 3 (noise)",
        "stage 2 of 3 (mix): from stage noise",
        "3 of 3 stages",
    ] {
        assert!(stderr.contains(line), "{line:?} not in {stderr}");
    }
    let again = run(&[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("stage 3 of 3 (restore): done at step 6"),
        "{stderr}"
    );
    for flag in [&["--width", "8"][..], &["--steps", "9"], &["--resume"]] {
        let out = run(flag);
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
}

/// Ctrl-C in a stage saves its checkpoint and exits 130, naming how to go on; the same command
/// again resumes the stage from there.
#[test]
fn ctrl_c_saves_the_stage_and_the_same_command_resumes_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let text = "name = \"long\"\n[[stage]]\nname = \"only\"\nsteps = 1000000\n\
                [stage.flags]\nwidth = 4\nbatch = 4\n";
    std::fs::write(dir.path().join("long.toml"), text).unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_ign-train"))
            .args(["train", "--recipe", "long.toml", "--data"])
            .arg(fixture("mnist-300-images-idx3-ubyte.gz"))
            .args(["--out", "run", "--threads", "1", "--sample-every", "0"])
            .args(["--checkpoint-every", "0"])
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let log = dir.path().join("run/only/log.csv");
    let lines = || {
        std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let interrupt = |child: std::process::Child, after: usize| {
        let t0 = std::time::Instant::now();
        while lines() < after {
            assert!(t0.elapsed().as_secs() < 60, "no training step within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        child.wait_with_output().unwrap()
    };
    let first = interrupt(start(), 4);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("continue with the same ign-train train --recipe command"),
        "{stderr}"
    );
    let saved = stage_ck(&dir.path().join("run"), "only").step;
    assert_eq!(saved, lines() as u64 - 1);
    // again: it says it resumes at the saved step, and trains on from there
    let mut child = start();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("resuming") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no resuming line");
    }
    assert!(
        line.contains(&format!("stage 1 of 1 (only): resuming at step {saved}")),
        "{line}"
    );
    let second = interrupt(child, saved as usize + 3);
    assert_eq!(second.status.code(), Some(130));
    let log = std::fs::read_to_string(&log).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=steps.len() as u64).collect::<Vec<_>>(),
        "one line per step, in order"
    );
}
