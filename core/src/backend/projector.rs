//! `f` as every front end applies it: a model's backend, and its noise variant's for the first
//! application to noise (BatchNorm models ship `M.noise.onnx` with the statistics of noise,
//! [`crate::model::noise_variant_path`]).
//!
//! `project`, `demo`, the web pad and `ign-train eval` all hold one; the rule "noise goes
//! through the noise variant first, everything after through the main model" lives here only.

use anyhow::Result;

use super::cpu::CpuBackend;
use super::Backend;
use crate::model::Model;
use crate::tensor::ImageBatch;

/// A model's backend and, when it has one, its noise variant's.
///
/// ```no_run
/// use ign_core::{backend::Projector, inputs, model::Model};
/// let model = Model::load("models/ign-mnist.onnx".as_ref())?;
/// let mut f = Projector::cpu(&model, Some(1))?; // finds models/ign-mnist.noise.onnx
/// let z = inputs::noise_batch(&model.info, 4, 0);
/// let [fz, ffz]: [_; 2] = f.project_noise(&z, 2)?.try_into().unwrap();
/// # anyhow::Ok(())
/// ```
pub struct Projector<B: Backend + ?Sized = dyn Backend> {
    main: Box<B>,
    noise: Option<Box<B>>,
}

impl<B: Backend + ?Sized> Projector<B> {
    /// `main`, with `noise` for the first application to noise.
    pub fn new(main: Box<B>, noise: Option<Box<B>>) -> Self {
        Projector { main, noise }
    }

    /// `[f(x), ..., f^steps(x)]` of images (anything but noise).
    pub fn project(&mut self, x: &ImageBatch, steps: usize) -> Result<Vec<ImageBatch>> {
        self.main.project(x, steps)
    }

    /// `[f(z), ..., f^steps(z)]` of noise: the first application by the noise variant when
    /// there is one, the rest by the main model.
    pub fn project_noise(&mut self, z: &ImageBatch, steps: usize) -> Result<Vec<ImageBatch>> {
        let main: &mut B = &mut self.main;
        match self.noise.as_deref_mut() {
            None => main.project(z, steps),
            Some(n) => {
                let first = n.run(z)?;
                let mut out = if steps > 1 {
                    main.project(&first, steps - 1)?
                } else {
                    Vec::new()
                };
                out.insert(0, first);
                Ok(out)
            }
        }
    }

    /// [`Projector::project_noise`] when `noise`, else [`Projector::project`].
    pub fn project_as(
        &mut self,
        x: &ImageBatch,
        steps: usize,
        noise: bool,
    ) -> Result<Vec<ImageBatch>> {
        if noise {
            self.project_noise(x, steps)
        } else {
            self.project(x, steps)
        }
    }

    /// The main backend (for its name, its pipelining, one application of `f`).
    pub fn main(&mut self) -> &mut B {
        &mut self.main
    }

    /// Whether noise has a variant of its own.
    pub fn has_noise_variant(&self) -> bool {
        self.noise.is_some()
    }

    /// The main backend's name.
    pub fn name(&self) -> String {
        self.main.name()
    }
}

impl Projector<CpuBackend> {
    /// Both on the CPU: `model`, and its noise variant when the file is beside it.
    pub fn cpu(model: &Model, threads: Option<usize>) -> Result<Self> {
        let p = crate::model::noise_variant_path(&model.info.path);
        let noise = if p.exists() {
            Some(Model::load(&p)?)
        } else {
            None
        };
        Projector::cpu_with(model, noise.as_ref(), threads)
    }

    /// Both on the CPU, with the noise variant given (or none).
    pub fn cpu_with(model: &Model, noise: Option<&Model>, threads: Option<usize>) -> Result<Self> {
        let main = Box::new(CpuBackend::new(model, threads)?);
        let noise = noise
            .map(|m| CpuBackend::new(m, threads).map(Box::new))
            .transpose()?;
        Ok(Projector { main, noise })
    }
}

impl<B: Backend + 'static> Projector<B> {
    /// The same backends behind `dyn Backend`, to sit beside other kinds.
    pub fn boxed(self) -> Projector {
        Projector {
            main: self.main as Box<dyn Backend>,
            noise: self.noise.map(|n| n as Box<dyn Backend>),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that adds a constant: which backend ran, and how often, shows in the values.
    struct Add(f32);

    impl Backend for Add {
        fn name(&self) -> String {
            format!("add {}", self.0)
        }
        fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
            ImageBatch::new(input.data.iter().map(|v| v + self.0).collect(), input.shape)
        }
    }

    fn firsts(ys: &[ImageBatch]) -> Vec<f32> {
        ys.iter().map(|y| y.data[0]).collect()
    }

    #[test]
    fn noise_goes_through_the_noise_variant_once_then_the_main_model() {
        let z = ImageBatch::new(vec![0.0; 4], [1, 1, 2, 2]).unwrap();
        let mut f: Projector = Projector::new(Box::new(Add(1.0)), Some(Box::new(Add(10.0))));
        assert!(f.has_noise_variant());
        assert_eq!(firsts(&f.project_noise(&z, 3).unwrap()), [10.0, 11.0, 12.0]);
        assert_eq!(firsts(&f.project_noise(&z, 1).unwrap()), [10.0]);
        assert_eq!(firsts(&f.project(&z, 2).unwrap()), [1.0, 2.0]);
        assert_eq!(firsts(&f.project_as(&z, 2, true).unwrap()), [10.0, 11.0]);
        assert_eq!(firsts(&f.project_as(&z, 2, false).unwrap()), [1.0, 2.0]);
        assert_eq!(f.name(), "add 1");
        // without a noise variant, noise is projected like anything else
        let mut g: Projector = Projector::new(Box::new(Add(1.0)), None);
        assert!(!g.has_noise_variant());
        assert_eq!(firsts(&g.project_noise(&z, 2).unwrap()), [1.0, 2.0]);
    }
}
