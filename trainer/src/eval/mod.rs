//! How good a model is: the figures of `ign-train eval` ([`metrics`]), the inputs other than
//! noise of `eval --ood` ([`ood`]), the classifier whose features and classes they use
//! ([`classifier`]), the pictures of a run ([`samples`]), and the one-class protocol of
//! `eval --one-class` ([`one_class`]).

pub mod classifier;
pub mod metrics;
pub mod one_class;
pub mod ood;
pub mod samples;

pub use metrics::{
    apply, default_classifier_cache, evaluate, summary, CandleBackend, EvalOptions, EvalReport,
    Reference,
};
