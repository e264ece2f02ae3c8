//! The application layer between the command line and the engine: plain configurations that
//! the CLI and the service parse into, and the operations every front end shares.
//!
//! - [`model_spec`]: which model to run and how (file, threads, precision, board defaults),
//!   opening it on the chosen backend, and the bundled model.
//! - [`run`]: the live loop's configuration (`ign-edge run` and `ign-edge service`).
//! - [`project`]: inputs through f, f², … into a grid or `.npy` (`ign-edge project`).
//! - [`bench`]: what `ign-edge bench` measures ([`bench::BenchPlan`]), board defaults merged
//!   once, and the regression gate.
//! - [`service`]: the service's TOML file and the run configuration it stands for.
//!
//! The layers: docs/ARCHITECTURE.md.

pub mod bench;
pub mod model_spec;
pub mod project;
pub mod run;
pub mod service;

pub use model_spec::ModelSpec;
