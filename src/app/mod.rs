//! The application layer between the command line and the engine: plain configurations that
//! the CLI and the service parse into, and the operations every front end shares.
//!
//! - [`model_spec`]: which model to run and how (file, threads, precision, board defaults),
//!   and the bundled model.
//!
//! The layers: docs/ARCHITECTURE.md.

pub mod model_spec;

pub use model_spec::ModelSpec;
