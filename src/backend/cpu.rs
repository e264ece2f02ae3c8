//! The tract CPU backend: the plan is optimized once per batch size and reused; batch 1 is
//! built up front because it is the hot path of the live loop.

use anyhow::{bail, Result};
use std::collections::HashMap;
use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use super::Backend;
use crate::model::{Model, ModelError};
use crate::tensor::ImageBatch;

/// Runs a [`Model`] with tract on the CPU.
pub struct CpuBackend {
    model: Model,
    states: HashMap<usize, TypedSimpleState>,
    executor: Executor,
    threads: usize,
}

/// The number of CPU cores available to this process.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl CpuBackend {
    /// Build the backend with `threads` worker threads for tract's matrix products
    /// (`None` or 1: single-threaded, which is fastest at batch 1 on small models).
    pub fn new(model: &Model, threads: Option<usize>) -> Result<Self> {
        let threads = threads.unwrap_or(1).max(1);
        let executor = if threads > 1 {
            Executor::multithread(threads)
        } else {
            Executor::SingleThread
        };
        let mut b = CpuBackend {
            model: model.clone(),
            states: HashMap::new(),
            executor,
            threads,
        };
        b.prepare(model.info.fixed_batch.unwrap_or(1))?;
        Ok(b)
    }

    /// Threads used by the matrix kernels.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Optimize the plan for `batch` now (otherwise done on first use).
    pub fn prepare(&mut self, batch: usize) -> Result<()> {
        if !self.states.contains_key(&batch) {
            let typed = self.model.typed(batch)?;
            let plan = typed
                .into_optimized()
                .and_then(|m| m.into_runnable())
                .map_err(|e| {
                    anyhow::anyhow!(ModelError(format!(
                        "{}: tract cannot optimize the model: {e:#}",
                        self.model.info.path.display()
                    )))
                })?;
            self.states.insert(batch, plan.spawn()?);
        }
        Ok(())
    }

    /// The optimized model for `batch`, for profiling and inspection.
    pub fn optimized_model(&mut self, batch: usize) -> Result<&TypedModel> {
        self.prepare(batch)?;
        Ok(self.states[&batch].model())
    }
}

/// Time spent in one kind of operator, from [`CpuBackend::profile`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct OpTime {
    pub op: String,
    pub nodes: usize,
    pub total_us: f64,
}

impl CpuBackend {
    /// Per-operator time of the optimized plan over `iterations` runs on `input`, grouped by
    /// operator type, largest first.
    pub fn profile(&mut self, input: &ImageBatch, iterations: usize) -> Result<Vec<OpTime>> {
        let n = input.shape[0];
        self.prepare(n)?;
        let state = self.states.get_mut(&n).expect("prepared");
        let t = Tensor::from_shape(&input.shape, &input.data)?;
        let mut by_op: HashMap<String, (std::collections::HashSet<usize>, f64)> = HashMap::new();
        for _ in 0..iterations.max(1) {
            multithread_tract_scope(self.executor.clone(), || {
                state.run_plan_with_eval(tvec!(t.clone().into()), |ctx, st, node, inputs| {
                    let t0 = std::time::Instant::now();
                    let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                    let e = by_op.entry(node.op().name().to_string()).or_default();
                    e.0.insert(node.id);
                    e.1 += t0.elapsed().as_secs_f64() * 1e6;
                    r
                })
            })?;
        }
        let mut out: Vec<OpTime> = by_op
            .into_iter()
            .map(|(op, (nodes, us))| OpTime {
                op,
                nodes: nodes.len(),
                total_us: us / iterations.max(1) as f64,
            })
            .collect();
        out.sort_by(|a, b| b.total_us.partial_cmp(&a.total_us).unwrap());
        Ok(out)
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu-{}", self.model.info.precision)
    }

    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
        let info = &self.model.info;
        let [n, c, h, w] = input.shape;
        if [c, h, w] != [info.channels, info.height, info.width] {
            bail!(
                "input of shape {:?} does not fit the model ({}x{}x{})",
                &input.shape[1..],
                info.channels,
                info.height,
                info.width
            );
        }
        self.prepare(n)?;
        let state = self.states.get_mut(&n).expect("prepared");
        let t = Tensor::from_shape(&input.shape, &input.data)?;
        let out = multithread_tract_scope(self.executor.clone(), || state.run(tvec!(t.into())))?;
        let view = out[0].to_plain_array_view::<f32>()?;
        let data: Vec<f32> = match view.as_slice() {
            Some(s) => s.to_vec(),
            None => view.iter().copied().collect(),
        };
        ImageBatch::new(data, input.shape)
    }
}
