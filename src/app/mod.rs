//! The application layer between the command line and the engine: plain configurations that
//! the CLI and the service parse into, and the operations every front end shares.
//!
//! - [`model_spec`]: which model to run and how (file, threads, precision, board defaults),
//!   and the bundled model.
//! - [`run`]: the live loop's configuration (`ign-edge run` and `ign-edge service`).
//! - [`service`]: the service's TOML file and the run configuration it stands for.
//!
//! The layers: docs/ARCHITECTURE.md.

pub mod model_spec;
pub mod run;
pub mod service;

pub use model_spec::ModelSpec;
