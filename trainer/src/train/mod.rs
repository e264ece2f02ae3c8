//! A training run: what defines it ([`config`]), one session's state and step ([`trainer`]),
//! the loop in a run folder ([`session`]) with its log ([`log`]) and the held-out images it
//! watches ([`heldout`]), the IGN loss ([`loss`]), Adam
//! ([`optim`]), the moving average of the weights ([`ema`]), checkpoints ([`checkpoint`]), the
//! BatchNorm statistics export folds in ([`bnstats`]) and recipes of stages ([`recipe`]).

pub mod bnstats;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod heldout;
pub mod log;
pub mod loss;
pub mod optim;
pub mod recipe;
pub mod session;
pub mod trainer;

pub use config::{RecipeStage, TrainConfig, ZBatchNorm, ZFonts, ZTight};
pub use session::{run, Interrupted, RunOptions};
pub use trainer::{frozen_copy, init_weights, trainable_vars, Trainer};
