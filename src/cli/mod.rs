//! The `ign-edge` command line (docs/ARCHITECTURE.md, "The CLI contract"): one file per
//! subcommand, each parsing its arguments into the application layer's configurations
//! ([`crate::app`]) and calling the engine. Nothing outside `cli/` and `main.rs` uses it.

pub mod args;
pub mod bench;
pub mod capture;
pub mod demo;
pub mod info;
pub mod latent;
pub mod project;
pub mod quantize;
pub mod refine;
pub mod rknn_prep;
pub mod run;
pub mod score;
pub mod service;

use clap::{Parser, Subcommand};

/// Run Idempotent Generative Networks on small boards: project noise, corrupted images or
/// sketches onto the learned image manifold ("make it real"), from files or a live camera.
///
/// Start with `ign-edge demo`, then `ign-edge info MODEL` and `ign-edge project`.
#[derive(Parser, Debug)]
#[command(name = "ign-edge", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Demo(demo::DemoCmd),
    Bench(bench::BenchCmd),
    Capture(capture::CaptureCmd),
    Info(info::InfoCmd),
    Project(project::ProjectCmd),
    Quantize(quantize::QuantizeCmd),
    Latent(latent::LatentCmd),
    Refine(refine::RefineCmd),
    RknnPrep(rknn_prep::RknnPrepCmd),
    Run(run::RunCmd),
    Score(score::ScoreCmd),
    Service(service::ServiceCmd),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(c) => c.run(),
        Command::Bench(c) => c.run(),
        Command::Capture(c) => c.run(),
        Command::Info(c) => c.run(),
        Command::Project(c) => c.run(),
        Command::Quantize(c) => c.run(),
        Command::Latent(c) => c.run(),
        Command::Refine(c) => c.run(),
        Command::RknnPrep(c) => c.run(),
        Command::Run(c) => c.run(),
        Command::Score(c) => c.run(),
        Command::Service(c) => c.run(),
    }
}

/// Print an error as one line (causes joined by ": ") and return the exit code 2.
pub fn report_error(e: &anyhow::Error) -> i32 {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {msg}");
    2
}
