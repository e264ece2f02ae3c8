//! How good a model is: the figures of `ign-train eval` ([`metrics`]), the inputs other than
//! noise of `eval --ood` ([`ood`]), the classifier whose features and classes they use
//! ([`classifier`]), and the pictures of a run ([`samples`]).

pub mod classifier;
pub mod metrics;
pub mod ood;
pub mod samples;

pub use metrics::{
    apply, default_classifier_cache, evaluate, summary, CandleBackend, EvalOptions, EvalReport,
    Reference,
};
