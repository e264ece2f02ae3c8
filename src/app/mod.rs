//! The application layer between the command line and the engine: plain configurations that
//! the CLI and the service parse into, and the operations every front end shares.
//!
//! - [`model_spec`]: which model to run and how (file, threads, precision, board defaults),
//!   opening it on the chosen backend, and the bundled model.
//! - [`run`]: the live loop's configuration (`ign-edge run` and `ign-edge service`).
//! - [`events`]: the run's event settings (`--events`, ...), checked into the engine's.
//! - [`project`]: inputs through f, f², … into a grid or `.npy` (`ign-edge project`).
//! - [`bench`]: what `ign-edge bench` measures ([`bench::BenchPlan`]), board defaults merged
//!   once, and the regression gate.
//! - [`capture`]: frames of a scene into a folder of PNGs and a manifest (`ign-edge capture`).
//! - [`score`]: how much inputs do not belong to a scene model's scene (`ign-edge score`).
//! - [`service`]: the service's TOML file and the run configuration it stands for.
//!
//! The layers: docs/ARCHITECTURE.md.

pub mod bench;
pub mod capture;
pub mod events;
pub mod model_spec;
pub mod project;
pub mod run;
pub mod score;
pub mod service;

pub use model_spec::ModelSpec;
