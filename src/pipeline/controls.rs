//! Settings of the running loop that can change while it runs (the web page's controls: k,
//! paper mode, which precision variant runs), shared by the loop's stages and whoever changes
//! them; and the backend that switches between the variants.

use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::Backend;
use crate::model::Precision;
use crate::tensor::ImageBatch;

/// Settings of the running loop that can change while it runs.
#[derive(Debug)]
pub struct Controls {
    /// Applications of f per frame.
    pub steps: AtomicUsize,
    /// Dark ink on white paper.
    pub paper: AtomicBool,
    /// Index into `precisions` of the variant the loop runs.
    pub precision: AtomicUsize,
    /// The model variants the loop can switch between (fp32 and the files beside it).
    pub precisions: Vec<Precision>,
}

impl Controls {
    /// Controls starting at `steps` and `paper`, on the first of `precisions`.
    pub fn new(steps: usize, paper: bool, precisions: Vec<Precision>) -> Arc<Controls> {
        Arc::new(Controls {
            steps: AtomicUsize::new(steps.max(1)),
            paper: AtomicBool::new(paper),
            precision: AtomicUsize::new(0),
            precisions,
        })
    }

    /// The variant the loop runs now.
    pub fn precision(&self) -> Option<Precision> {
        self.precisions
            .get(self.precision.load(Ordering::Relaxed))
            .copied()
    }
}

/// Several variants of one model behind one [`Backend`]; [`Controls`] says which one runs.
pub struct SwitchBackend {
    /// One backend per variant, in the order of `controls.precisions`.
    pub backends: Vec<Box<dyn Backend>>,
    /// Which one runs.
    pub controls: Arc<Controls>,
}

impl Backend for SwitchBackend {
    fn name(&self) -> String {
        let i = self
            .controls
            .precision
            .load(Ordering::Relaxed)
            .min(self.backends.len() - 1);
        self.backends[i].name()
    }
    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
        let i = self
            .controls
            .precision
            .load(Ordering::Relaxed)
            .min(self.backends.len() - 1);
        self.backends[i].run(input)
    }
}
