//! Recipes: the stages that make a model, as a file (`models/recipes/*.toml`), and the runner
//! of `ign-train train --recipe`, which trains them in order and resumes where it stopped.
//!
//! ```toml
//! name = "ign-mnist"
//! description = "..."
//! data = "MNIST in IDX form"        # informational
//! [[stage]]
//! name = "noise"                    # trains in OUT/noise; [a-z0-9-]+
//! steps = 25486                     # until this total step count (at most, with a share)
//! # share = 0.3                     # or: this share of the time budget (`--minutes`, or the
//! #                                 # recipe's `minutes = 15` at the top), spent in OUT/noise
//! # from = "..."                    # an earlier stage whose final state it starts from
//! [stage.flags]                     # `ign-train train` flags without "--"; `true` for switches
//! width = 32
//! norm = "batch"
//! ```
//!
//! Each stage's flags are parsed by the command line's own parser ([`TrainCmd`]), so a flag
//! means in a recipe what it means on the command line.
//!
//! A stage with a `share` trains for that share of the budget, in minutes of training in its
//! folder; a stage without one trains to its `steps`. Once a stage has started, the stages
//! before it are done: a rerun with a larger budget lets the unfinished stage, or the last
//! one, train on.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::train::TrainCmd;
use crate::train::checkpoint::CHECKPOINT_FILE;
use crate::train::config::{RecipeStage, ZFonts};

/// The copy of the recipe that a recipe's run folder holds.
pub const RECIPE_FILE: &str = "recipe.toml";

/// The built-in recipes, `models/recipes/NAME.toml`, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "ign-fashion",
        include_str!("../../../models/recipes/ign-fashion.toml"),
    ),
    (
        "ign-mnist",
        include_str!("../../../models/recipes/ign-mnist.toml"),
    ),
    (
        "one-class",
        include_str!("../../../models/recipes/one-class.toml"),
    ),
    // in the order of the files' paths: `scene-ae.toml` sorts before `scene.toml`
    (
        "scene-ae",
        include_str!("../../../models/recipes/scene-ae.toml"),
    ),
    ("scene", include_str!("../../../models/recipes/scene.toml")),
];

/// Flags that the command line gives a recipe's run, or that a stage's own keys set: never a
/// stage's flags.
const NOT_STAGE_FLAGS: &[(&str, &str)] = &[
    ("data", "give it on the command line: --recipe R --data DIR"),
    ("out", "give it on the command line: --recipe R --out RUN"),
    ("threads", "give it on the command line"),
    ("sample-every", "give it on the command line"),
    ("checkpoint-every", "give it on the command line"),
    ("recipe", "a stage cannot run another recipe"),
    ("steps", "use the stage's `steps` key"),
    (
        "minutes",
        "use the stage's `share` key of the recipe's `minutes`",
    ),
    ("from", "use the stage's `from` key"),
    ("resume", "a rerun of the recipe resumes by itself"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeToml {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    minutes: Option<f64>,
    #[serde(default)]
    stage: Vec<StageToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageToml {
    name: String,
    #[serde(default)]
    steps: Option<u64>,
    #[serde(default)]
    share: Option<f64>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    flags: toml::Table,
}

/// A recipe, parsed and checked.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    /// What `--data` should be (informational).
    pub data: String,
    /// Where it came from: the file, or `built-in NAME`.
    pub source: String,
    /// The file's text.
    pub text: String,
    /// The first 12 hex digits of the SHA-256 of the text.
    pub hash: String,
    /// The time budget of the stages with a `share` when `--minutes` is not given.
    pub minutes: Option<f64>,
    pub stages: Vec<Stage>,
}

/// One stage of a recipe.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    /// Train until this total step count (`None`: a stage with a share of the time budget).
    pub steps: Option<u64>,
    /// Its share of the time budget (`None`: it trains to its steps).
    pub share: Option<f64>,
    /// The index of the earlier stage whose final state it starts from.
    pub from: Option<usize>,
    /// Its flags as `ign-train train` arguments.
    pub args: Vec<String>,
}

/// How [`run`] runs a recipe: the command line's part, and limits for tests.
#[derive(Clone, Debug, Default)]
pub struct RecipeOptions {
    /// The data (`--data`).
    pub data: PathBuf,
    /// The run folder (`--out`); stage `S` trains in `out/S`.
    pub out: PathBuf,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Run only the first this many stages.
    pub stages: Option<usize>,
    /// Train each stage at most this many steps past its start (the `from` stage's end).
    pub step_cap: Option<u64>,
    /// Render every stage's printed digits from this font folder instead of its `--z-fonts`.
    pub fonts: Option<PathBuf>,
    /// The time budget of the stages with a share, in minutes (`--minutes`; default: the
    /// recipe's).
    pub minutes: Option<f64>,
    /// Hide progress bars.
    pub quiet: bool,
    /// Train every stage on the images of these classes only (`None`: all), as the one-class
    /// protocol does ([`crate::eval::one_class`]).
    pub classes: Option<Vec<u8>>,
    /// Train every stage on reconstruction alone (both IGN weights 0): the autoencoder of the
    /// same network, data and schedule.
    pub reconstruction_only: bool,
}

impl Recipe {
    /// A built-in recipe by name, or a recipe file.
    pub fn load(name_or_file: &str) -> Result<Recipe> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_file) {
            return Recipe::parse(text, &format!("built-in {name}"));
        }
        let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        let text = std::fs::read_to_string(name_or_file).with_context(|| {
            format!(
                "{name_or_file}: no such recipe file, and no built-in recipe of that name (built in: {})",
                names.join(", ")
            )
        })?;
        Recipe::parse(&text, name_or_file)
    }

    /// Parse and check the recipe text `text`, from `source` (named in errors).
    pub fn parse(text: &str, source: &str) -> Result<Recipe> {
        let file: RecipeToml = toml::from_str(text).map_err(|e| {
            let msg = e.to_string().replace('\n', " ");
            anyhow::anyhow!("{source}: not a recipe: {}", msg.trim())
        })?;
        if file.name.trim().is_empty() {
            bail!("{source}: the recipe has no name; set name = \"...\"");
        }
        if file.stage.is_empty() {
            bail!("{source}: the recipe has no [[stage]]");
        }
        let mut stages: Vec<Stage> = Vec::new();
        for st in &file.stage {
            let stage = check_stage(st, &stages, source)?;
            stages.push(stage);
        }
        check_budget(file.minutes, &stages, source)?;
        let hash = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..12]
            .to_string();
        let recipe = Recipe {
            name: file.name,
            description: file.description,
            data: file.data,
            source: source.to_string(),
            text: text.to_string(),
            hash,
            minutes: file.minutes,
            stages,
        };
        for i in 0..recipe.stages.len() {
            recipe.stage_cmd(i, Path::new("DATA"), Path::new("RUN"), &[])?;
        }
        Ok(recipe)
    }

    /// Stage `i`'s flags and `extra` arguments, parsed as `ign-train train` parses them, with
    /// `--data data --out out/STAGE`.
    pub fn stage_cmd(
        &self,
        i: usize,
        data: &Path,
        out: &Path,
        extra: &[OsString],
    ) -> Result<TrainCmd> {
        let stage = &self.stages[i];
        let mut argv: Vec<OsString> = ["ign-train train", "--data"].map(OsString::from).to_vec();
        argv.push(data.into());
        argv.push("--out".into());
        argv.push(out.join(&stage.name).into());
        argv.extend(stage.args.iter().map(OsString::from));
        argv.extend(extra.iter().cloned());
        TrainCmd::parse_args(argv)
            .map_err(|e| anyhow::anyhow!("{}: stage {}: {e}", self.source, stage.name))
    }

    /// Whether any stage trains for a share of the time budget.
    pub fn has_shares(&self) -> bool {
        self.stages.iter().any(|s| s.share.is_some())
    }

    /// The time budget in minutes: `minutes` (the command line's) or the recipe's; `None`
    /// when no stage has a share. An error when a stage has a share and there is no budget,
    /// or when a budget is given to a recipe without shares.
    pub fn budget(&self, minutes: Option<f64>) -> Result<Option<f64>> {
        if let Some(m) = minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
            bail!("--minutes {m}: give a budget above 0 minutes");
        }
        match (self.has_shares(), minutes.or(self.minutes)) {
            (true, Some(m)) => Ok(Some(m)),
            (true, None) => bail!(
                "{}: its stages take shares of a time budget; give --minutes M",
                self.source
            ),
            (false, Some(_)) if minutes.is_some() => bail!(
                "--minutes: no stage of {} has a `share` of a time budget; its stages train to their steps",
                self.source
            ),
            (false, _) => Ok(None),
        }
    }
}

/// Refuse shares out of (0, 1], shares that add up past 1, and a recipe budget that is no
/// positive number of minutes.
fn check_budget(minutes: Option<f64>, stages: &[Stage], source: &str) -> Result<()> {
    if let Some(m) = minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
        bail!("{source}: minutes = {m}: a budget is a number of minutes above 0");
    }
    let mut total = 0.0;
    for st in stages {
        if let Some(share) = st.share {
            if !(share > 0.0 && share <= 1.0) {
                bail!(
                    "{source}: stage {}: share = {share} must be above 0 and at most 1",
                    st.name
                );
            }
            total += share;
        }
    }
    if total > 1.0 + 1e-9 {
        bail!("{source}: the stages' shares add up to {total}, more than the whole budget; lower them to a sum of at most 1");
    }
    Ok(())
}

/// A stage of the file, checked against the stages before it.
fn check_stage(st: &StageToml, before: &[Stage], source: &str) -> Result<Stage> {
    let name = &st.name;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid(name) {
        bail!("{source}: stage {name:?}: a stage name is lowercase letters, digits and '-'");
    }
    if before.iter().any(|s| &s.name == name) {
        bail!("{source}: stage {name}: two stages have this name; rename one");
    }
    let from = match &st.from {
        None => None,
        Some(f) => {
            let Some(i) = before.iter().position(|s| &s.name == f) else {
                bail!("{source}: stage {name}: from = {f:?} names no earlier stage");
            };
            if let (Some(steps), Some(prev)) = (st.steps, before[i].steps) {
                if steps <= prev {
                    bail!(
                        "{source}: stage {name}: steps = {steps} must exceed the {prev} of stage {f} it starts from"
                    );
                }
            }
            Some(i)
        }
    };
    match (st.steps, st.share) {
        (Some(0), _) => {
            bail!("{source}: stage {name}: steps = 0 trains nothing; give the total to reach")
        }
        (None, None) => bail!(
            "{source}: stage {name}: give steps = N (the total to reach) or share = F (of the time budget)"
        ),
        _ => {}
    }
    let mut args = Vec::new();
    for (flag, value) in &st.flags {
        // each flag parsed on its own first, so that a bad one is named
        let checked = flag_args(flag, value).and_then(|a| {
            let mut argv = vec!["ign-train train", "--data", "DATA"];
            argv.extend(a.iter().map(String::as_str));
            TrainCmd::parse_args(argv.into_iter().map(OsString::from).collect()).map(|_| a)
        });
        args.extend(
            checked.map_err(|e| anyhow::anyhow!("{source}: stage {name}: flag {flag}: {e}"))?,
        );
    }
    Ok(Stage {
        name: name.clone(),
        steps: st.steps,
        share: st.share,
        from,
        args,
    })
}

/// The command-line arguments of `flag = value`.
fn flag_args(flag: &str, value: &toml::Value) -> Result<Vec<String>> {
    if let Some((_, why)) = NOT_STAGE_FLAGS.iter().find(|(f, _)| *f == flag) {
        bail!("not a stage's flag ({why})");
    }
    let arg = format!("--{flag}");
    Ok(match value {
        toml::Value::Boolean(true) => vec![arg],
        toml::Value::Boolean(false) => bail!("a switch is set with true, or left out"),
        toml::Value::String(s) => vec![arg, s.clone()],
        toml::Value::Integer(i) => vec![arg, i.to_string()],
        toml::Value::Float(f) => vec![arg, f.to_string()],
        _ => bail!("a flag's value is a string, a number or true"),
    })
}

/// Where a stage stops: a total step count (`u64::MAX`: none) and a time budget.
#[derive(Clone, Copy, Debug)]
struct Goal {
    steps: u64,
    minutes: Option<f64>,
}

impl Goal {
    /// Whether a state at `step`, with `seconds` of training in the stage's folder, is there.
    fn reached(&self, step: u64, seconds: f64) -> bool {
        step >= self.steps || self.minutes.is_some_and(|m| seconds >= m * 60.0)
    }

    /// `step N`, `M minutes` or both.
    fn describe(&self) -> String {
        let steps = (self.steps < u64::MAX).then(|| format!("step {}", self.steps));
        let time = self.minutes.map(|m| format!("{m:.2} minutes of training"));
        [steps, time]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The `ign-train train` arguments of the goal.
    fn args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if self.steps < u64::MAX {
            v.extend(["--steps".into(), self.steps.to_string().into()]);
        }
        if let Some(m) = self.minutes {
            v.extend(["--minutes".into(), m.to_string().into()]);
        }
        v
    }
}

/// The step and training seconds of the checkpoint in `dir`, if it has one.
fn saved_state(dir: &Path) -> Result<Option<(u64, f64)>> {
    let ck = dir.join(CHECKPOINT_FILE);
    if !ck.exists() {
        return Ok(None);
    }
    let ck = crate::train::checkpoint::load(&ck)?;
    Ok(Some((ck.step, ck.seconds)))
}

/// Stage `i`'s goal: its steps (with at most `opts.step_cap` past the state it starts from)
/// and its share of the `budget`.
fn goal(recipe: &Recipe, i: usize, opts: &RecipeOptions, budget: Option<f64>) -> Result<Goal> {
    let stage = &recipe.stages[i];
    let steps = match opts.step_cap {
        None => stage.steps.unwrap_or(u64::MAX),
        Some(cap) => {
            let start = match stage.from {
                Some(f) => saved_state(&opts.out.join(&recipe.stages[f].name))?.map_or(0, |s| s.0),
                None => 0,
            };
            stage.steps.unwrap_or(u64::MAX).min(start + cap)
        }
    };
    let minutes = stage.share.and_then(|s| budget.map(|b| s * b));
    Ok(Goal { steps, minutes })
}

/// Run `recipe`'s stages in order in `opts.out`: a stage whose checkpoint is at its goal (its
/// steps, or its share of the time budget), or whose state a later stage has taken over, is
/// skipped, one short of it resumed, and one not started starts from its `from` stage's
/// folder (or fresh). Writes `out/recipe.toml`, a copy of the recipe; a folder holding
/// another recipe is refused.
pub fn run(recipe: &Recipe, opts: &RecipeOptions) -> Result<()> {
    let budget = recipe.budget(opts.minutes)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create the run folder", opts.out.display()))?;
    keep_copy(recipe, &opts.out)?;
    if let Some(m) = budget {
        log::info!("{}: a time budget of {m} minutes", recipe.name);
    }
    let count = opts.stages.unwrap_or(usize::MAX).min(recipe.stages.len());
    for (i, stage) in recipe.stages.iter().enumerate().take(count) {
        let dir = opts.out.join(&stage.name);
        let place = format!(
            "stage {} of {} ({})",
            i + 1,
            recipe.stages.len(),
            stage.name
        );
        let later = recipe.stages[i + 1..]
            .iter()
            .find(|s| opts.out.join(&s.name).join(CHECKPOINT_FILE).exists());
        if let Some(later) = later {
            log::info!("{place}: done, handed over to stage {}", later.name);
            continue;
        }
        let goal = goal(recipe, i, opts, budget)?;
        let mut extra = goal.args();
        extra.extend([
            "--sample-every".into(),
            opts.sample_every.to_string().into(),
        ]);
        extra.extend([
            "--checkpoint-every".into(),
            opts.checkpoint_every.to_string().into(),
        ]);
        let until = goal.describe();
        match (saved_state(&dir)?, stage.from) {
            (Some((step, secs)), _) if goal.reached(step, secs) => {
                log::info!("{place}: done at step {step} in {}", dir.display());
                continue;
            }
            (Some((step, _)), _) => {
                log::info!("{place}: resuming at step {step} until {until}");
                extra.push("--resume".into());
            }
            (None, Some(f)) => {
                let src = opts.out.join(&recipe.stages[f].name);
                log::info!(
                    "{place}: from stage {} until {until}",
                    recipe.stages[f].name
                );
                extra.extend(["--from".into(), src.into()]);
            }
            (None, None) => log::info!("{place}: training until {until}"),
        }
        run_stage(recipe, i, opts, &extra)?;
    }
    log::info!(
        "{} ({}): {count} of {} stages done in {}",
        recipe.name,
        recipe.source,
        recipe.stages.len(),
        opts.out.display()
    );
    Ok(())
}

/// Train stage `i` with the `extra` arguments of this invocation.
fn run_stage(recipe: &Recipe, i: usize, opts: &RecipeOptions, extra: &[OsString]) -> Result<()> {
    let mut cmd = recipe.stage_cmd(i, &opts.data, &opts.out, extra)?;
    if let Some(fonts) = &opts.fonts {
        cmd.z_fonts = ZFonts::Dir(fonts.clone());
    }
    if opts.reconstruction_only {
        (cmd.lambda_idem, cmd.lambda_tight) = (Some(0.0), Some(0.0));
    }
    let (mut config, mut data_opts, mut run_opts) = cmd.settings()?;
    if let Some(classes) = &opts.classes {
        config.dataset_name = format!(
            "{}-class-{}",
            config.dataset_name,
            crate::data::class_list(classes)
        );
        data_opts.classes = Some(classes.clone());
    }
    config.recipe = Some(RecipeStage {
        recipe: recipe.name.clone(),
        hash: recipe.hash.clone(),
        stage: recipe.stages[i].name.clone(),
        index: i + 1,
        stages: recipe.stages.len(),
    });
    run_opts.quiet = opts.quiet;
    match crate::train::run(config, &opts.data, &data_opts, &run_opts) {
        Ok(_) => Ok(()),
        Err(e) => match e.downcast::<crate::train::Interrupted>() {
            Ok(mut stop) => {
                stop.resume_with = "the same ign-train train --recipe command".into();
                Err(stop.into())
            }
            Err(e) => Err(e),
        },
    }
}

/// Write `out/recipe.toml`, or check that the one there is this recipe.
fn keep_copy(recipe: &Recipe, out: &Path) -> Result<()> {
    let path = out.join(RECIPE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text == recipe.text => Ok(()),
        Ok(text) => {
            let there = Recipe::parse(&text, &path.display().to_string())
                .map(|r| format!("{}@{}", r.name, r.hash))
                .unwrap_or_else(|_| "another recipe".into());
            bail!(
                "{}: this run folder holds {there}, not {}@{}; continue it with --recipe {}, or choose another --out",
                path.display(),
                recipe.name,
                recipe.hash,
                path.display()
            )
        }
        Err(_) => ign_core::fsio::atomic_write(&path, recipe.text.as_bytes()),
    }
}

/// The checkpoint file that `path` stands for: the file itself, a run folder's checkpoint, or
/// for a recipe's run folder (one holding `recipe.toml`) its last stage's.
pub fn checkpoint_file(path: &Path) -> Result<PathBuf> {
    let own = path.join(CHECKPOINT_FILE);
    let copy = path.join(RECIPE_FILE);
    if !path.is_dir() || own.exists() || !copy.exists() {
        return Ok(if path.is_dir() {
            own
        } else {
            path.to_path_buf()
        });
    }
    let text = std::fs::read_to_string(&copy)
        .with_context(|| format!("{}: cannot read the recipe", copy.display()))?;
    let recipe = Recipe::parse(&text, &copy.display().to_string())?;
    let last = &recipe.stages[recipe.stages.len() - 1].name;
    let file = path.join(last).join(CHECKPOINT_FILE);
    if !file.exists() {
        bail!(
            "{}: the recipe's last stage {last} has not run yet; finish it with ign-train train --recipe {} --data DIR --out {}",
            path.display(),
            copy.display(),
            path.display()
        );
    }
    Ok(file)
}
