//! The `ign-train` command line: one file per subcommand.

pub mod bench_step;
pub mod eval;
pub mod export;
pub mod one_class;
pub mod scene;
pub mod train;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

/// Train Idempotent Generative Networks on CPU, evaluate them, export ONNX for ign-edge.
#[derive(Parser, Debug)]
#[command(name = "ign-train", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Train(train::TrainCmd),
    Export(export::ExportCmd),
    Eval(eval::EvalCmd),
    BenchStep(bench_step::BenchStepCmd),
    Scene(scene::SceneCmd),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(c) => c.run(),
        Command::Export(c) => c.run(),
        Command::Eval(c) => c.run(),
        Command::BenchStep(c) => c.run(),
        Command::Scene(c) => c.run(),
    }
}

/// A value parser for an enum of the layers below: `names` are listed in `--help` and
/// offered on a typo, and each parses with the type's own `FromStr`.
pub fn choice<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    PossibleValuesParser::new(names.iter().copied()).map(|s| match s.parse::<T>() {
        Ok(v) => v,
        Err(e) => unreachable!("{s} is listed but does not parse: {e}"),
    })
}

/// Print an error as one line (causes joined by ": ") and return the exit code 2.
pub fn report_error(e: &anyhow::Error) -> i32 {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {msg}");
    2
}
