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
    /// Run the plan in fp16 arithmetic (tract's `f32_to_f16` transform).
    half: bool,
}

/// Whether this CPU has native fp16 arithmetic (aarch64 FEAT_FP16, `asimdhp`: e.g. the
/// Cortex-A76 of the Raspberry Pi 5 and the RK3588; not the Pi 4's A72, not x86).
///
/// Read from the hardware capabilities the kernel reports (`getauxval(AT_HWCAP)`, what
/// `is_aarch64_feature_detected!` reads), not from the text of /proc/cpuinfo as tract does: an
/// emulator (`qemu-aarch64 -cpu max`) reports FEAT_FP16 there but shows the host's cpuinfo.
/// [`steer_tract_fp16`] makes tract's kernel choice agree.
pub fn cpu_has_fp16() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// When this CPU has fp16 arithmetic ([`cpu_has_fp16`]) but tract's own detection missed it,
/// the value to give `TRACT_CPU_ISA` before tract's first dispatch so that its fp16 kernels
/// are picked (`None`: nothing to do, or `TRACT_CPU_ISA` is already set). A program sets it
/// at the start of `main`, before any thread starts.
pub fn steer_tract_fp16() -> Option<&'static str> {
    let unset = std::env::var_os("TRACT_CPU_ISA").is_none();
    (unset && cpu_has_fp16() && !tract_linalg::has_fp16()).then_some("+fp16")
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
    ///
    /// An fp16 model runs in fp16 arithmetic where the CPU has it ([`cpu_has_fp16`]) and in
    /// fp32 elsewhere (tract's emulated fp16 is ~100x slower); see [`CpuBackend::notice`].
    pub fn new(model: &Model, threads: Option<usize>) -> Result<Self> {
        let half = model.info.precision == crate::model::Precision::Fp16 && cpu_has_fp16();
        Self::with_arithmetic(model, threads, half)
    }

    /// Like [`CpuBackend::new`], choosing fp16 arithmetic (`half`) or fp32 explicitly, on any
    /// CPU (fp16 without hardware support is emulated: slow but exact, for fidelity checks).
    pub fn with_arithmetic(model: &Model, threads: Option<usize>, half: bool) -> Result<Self> {
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
            half,
        };
        b.prepare(model.info.fixed_batch.unwrap_or(1))?;
        Ok(b)
    }

    /// Threads used by the matrix kernels.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The arithmetic the plan runs in: `fp32`, `fp16` or `int8` (int8 convolutions with
    /// float islands between them).
    pub fn arithmetic(&self) -> &'static str {
        match self.model.info.precision {
            crate::model::Precision::Int8 => "int8",
            _ if self.half => "fp16",
            _ => "fp32",
        }
    }

    /// A one-line notice when the model does not run in its own precision (an fp16 model on a
    /// CPU without fp16 arithmetic).
    pub fn notice(&self) -> Option<String> {
        (self.model.info.precision == crate::model::Precision::Fp16 && !self.half).then(|| {
            format!(
                "notice: {}: this CPU has no fp16 arithmetic (aarch64 asimdhp), so the fp16 weights run in fp32",
                self.model.info.path.display()
            )
        })
    }

    /// Optimize the plan for `batch` now (otherwise done on first use).
    pub fn prepare(&mut self, batch: usize) -> Result<()> {
        if !self.states.contains_key(&batch) {
            let mut typed = self.model.typed(batch)?;
            if self.half {
                let t = tract_onnx::tract_core::transform::get_transform("f32_to_f16")?
                    .ok_or_else(|| anyhow::anyhow!("tract has no f32_to_f16 transform"))?;
                t.transform(&mut typed)?;
            }
            let plan = super::optimize(typed)
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
        let t = input_tensor(state, input)?;
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

/// The input as the plan wants it (f16 after the `f32_to_f16` transform, else f32).
fn input_tensor(state: &TypedSimpleState, input: &ImageBatch) -> Result<Tensor> {
    let t = Tensor::from_shape(&input.shape, &input.data)?;
    let dt = state.model().input_fact(0)?.datum_type;
    Ok(if dt == f32::datum_type() {
        t
    } else {
        t.cast_to_dt(dt)?.into_owned()
    })
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        match (self.model.info.precision.as_str(), self.arithmetic()) {
            (p, a) if p == a || p == "int8" => format!("cpu-{p}"),
            (p, a) => format!("cpu-{p}-as-{a}"),
        }
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
        if let Some(b) = info.fixed_batch {
            if n != b {
                // A fixed-batch model runs the images in chunks of its batch (the last padded).
                let mut data = Vec::with_capacity(input.data.len());
                for start in (0..n).step_by(b) {
                    let end = (start + b).min(n);
                    let mut chunk = input.slice(start, end);
                    if end - start < b {
                        let pad = chunk.image(0).to_vec();
                        for _ in end - start..b {
                            chunk.data.extend_from_slice(&pad);
                        }
                        chunk.shape[0] = b;
                    }
                    let y = self.run(&chunk)?;
                    data.extend_from_slice(&y.data[..(end - start) * input.image_len()]);
                }
                return ImageBatch::new(data, input.shape);
            }
        }
        self.prepare(n)?;
        let state = self.states.get_mut(&n).expect("prepared");
        let t = input_tensor(state, input)?;
        let out = multithread_tract_scope(self.executor.clone(), || state.run(tvec!(t.into())))?;
        let out = out[0].cast_to::<f32>()?;
        let view = out.to_plain_array_view::<f32>()?;
        let data: Vec<f32> = match view.as_slice() {
            Some(s) => s.to_vec(),
            None => view.iter().copied().collect(),
        };
        ImageBatch::new(data, input.shape)
    }
}
