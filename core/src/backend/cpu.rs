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
    /// Per batch size: the plan's state and the thread count it runs with.
    states: HashMap<usize, (TypedSimpleState, Threads)>,
    /// Threads asked for.
    threads: usize,
    /// Run the plan in fp16 arithmetic (tract's `f32_to_f16` transform).
    half: bool,
    /// Run on exactly `threads`, without measuring whether one thread is faster.
    pinned: bool,
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
        let mut b = CpuBackend {
            model: model.clone(),
            states: HashMap::new(),
            threads: threads.unwrap_or(1).max(1),
            half,
            pinned: false,
        };
        b.prepare(b.default_batch())?;
        Ok(b)
    }

    /// Like [`CpuBackend::new`], but every plan runs on exactly `threads` threads, even where
    /// one thread would be faster: for tests and measurements of the multi-threaded kernels.
    pub fn pinned(model: &Model, threads: usize) -> Result<Self> {
        let mut b = CpuBackend {
            model: model.clone(),
            states: HashMap::new(),
            threads: threads.max(1),
            half: model.info.precision == crate::model::Precision::Fp16 && cpu_has_fp16(),
            pinned: true,
        };
        b.prepare(b.default_batch())?;
        Ok(b)
    }

    fn default_batch(&self) -> usize {
        self.model.info.fixed_batch.unwrap_or(1)
    }

    /// Threads asked for (`--threads`).
    pub fn threads_requested(&self) -> usize {
        self.threads
    }

    /// Threads the plan for the model's usual batch (its fixed batch, else 1) runs with: the
    /// requested count, or 1 where one thread measured faster at load (see `Threads::choose`).
    pub fn threads(&self) -> usize {
        self.threads_for(self.default_batch())
    }

    /// Threads the plan for `batch` runs with (see [`CpuBackend::threads`]); the requested
    /// count for a batch not prepared yet.
    pub fn threads_for(&self, batch: usize) -> usize {
        self.states
            .get(&batch)
            .map_or(self.threads, |(_, t)| t.used)
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

    /// A one-line notice when the model does not run as asked: an fp16 model on a CPU without
    /// fp16 arithmetic, or more threads asked for than help (one was faster at load).
    pub fn notice(&self) -> Option<String> {
        let path = self.model.info.path.display();
        let mut lines = Vec::new();
        if self.model.info.precision == crate::model::Precision::Fp16 && !self.half {
            lines.push(format!(
                "{path}: this CPU has no fp16 arithmetic (aarch64 asimdhp), so the fp16 weights run in fp32"
            ));
        }
        if let Some((_, t)) = self.states.get(&self.default_batch()) {
            if t.used < self.threads {
                lines.push(format!(
                    "{path}: {} threads took {:.0} us per call against {:.0} us for one, so it runs on one thread",
                    self.threads, t.measured_us[1], t.measured_us[0]
                ));
            }
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
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
            let mut state = plan.spawn()?;
            let threads = Threads::choose(
                &mut state,
                &self.model.info,
                batch,
                self.threads,
                self.pinned,
            )?;
            self.states.insert(batch, (state, threads));
        }
        Ok(())
    }

    /// The optimized model for `batch`, for profiling and inspection.
    pub fn optimized_model(&mut self, batch: usize) -> Result<&TypedModel> {
        self.prepare(batch)?;
        Ok(self.states[&batch].0.model())
    }
}

/// Runs per executor in a row when [`Threads::choose`] measures.
const BLOCK: usize = 4;

/// The thread count a plan runs with. More threads than one are kept only when they measured
/// faster at load: on a small model at batch 1 (ign-mnist: 260 µs on 2 threads against 135 µs
/// on one, on a 2-core x86) tract's workers cost more than they share.
struct Threads {
    executor: Executor,
    used: usize,
    /// µs per call on 1 and on the requested threads, first quartile (0 when not measured).
    measured_us: [f64; 2],
}

impl Threads {
    /// Time `state` on noise with one thread and with `asked`, alternating, for about 0.2 s at
    /// most (at least 3 calls each), and keep the faster; `pinned`: `asked`, unmeasured.
    fn choose(
        state: &mut TypedSimpleState,
        info: &crate::model::ModelInfo,
        batch: usize,
        asked: usize,
        pinned: bool,
    ) -> Result<Threads> {
        if asked <= 1 || pinned {
            return Ok(Threads {
                executor: if asked <= 1 {
                    Executor::SingleThread
                } else {
                    Executor::multithread(asked)
                },
                used: asked.max(1),
                measured_us: [0.0; 2],
            });
        }
        let x = crate::inputs::noise_batch(info, batch, 7);
        let t = input_tensor(state, &x)?;
        let executors = [Executor::SingleThread, Executor::multithread(asked)];
        let times = alternate(|e| {
            let t0 = std::time::Instant::now();
            multithread_tract_scope(executors[e].clone(), || state.run(tvec!(t.clone().into())))?;
            Ok(t0.elapsed().as_secs_f64() * 1e6)
        })?;
        let (multi, measured_us) = many_is_faster(times);
        log::debug!("threads: first quartile {measured_us:?} us on 1 and {asked} threads");
        let [single, many] = executors;
        Ok(Threads {
            executor: if multi { many } else { single },
            used: if multi { asked } else { 1 },
            measured_us,
        })
    }
}

/// Samples of `run(0)` (one thread) and `run(1)` (more), in blocks of [`BLOCK`] calls on each
/// in turn, for about 0.3 s (at least 3 rounds, at most 12); the first call of a block is not
/// counted: a pool whose threads slept through the other executor's calls wakes up slowly,
/// which a plan running on it call after call does not pay.
fn alternate(mut run: impl FnMut(usize) -> Result<f64>) -> Result<[Vec<f64>; 2]> {
    let mut times: [Vec<f64>; 2] = [vec![], vec![]];
    let start = std::time::Instant::now();
    for round in 0..12 {
        for (e, ts) in times.iter_mut().enumerate() {
            for i in 0..BLOCK {
                let us = run(e)?;
                if i > 0 {
                    ts.push(us);
                }
            }
        }
        if round >= 2 && start.elapsed().as_secs_f64() > 0.3 {
            break;
        }
    }
    Ok(times)
}

/// Whether the multi-threaded samples are faster, judged on the first quartiles (returned, µs):
/// what each executor reaches when the machine leaves it alone. On a shared host the other
/// cores are sometimes busy, which slows the multi-threaded calls by up to 1.7× at random
/// (bimodal samples); the median then follows the noise. A tie keeps one thread.
fn many_is_faster(mut times: [Vec<f64>; 2]) -> (bool, [f64; 2]) {
    let quartile = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 4).copied().unwrap_or(f64::INFINITY)
    };
    let measured = [quartile(&mut times[0]), quartile(&mut times[1])];
    (measured[1] < measured[0], measured)
}

/// Time spent in one kind of operator, from [`CpuBackend::profile_nodes`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct OpTime {
    pub op: String,
    pub nodes: usize,
    /// µs per call, over the operator's nodes.
    pub total_us: f64,
    /// Floating-point or integer operations per call of its nodes (2 per multiply-add, from
    /// tract's cost model; `None` where tract states none: copies, activations, tables).
    #[serde(default)]
    pub flops: Option<f64>,
}

impl OpTime {
    /// GFLOP/s (or integer GOP/s) the operator reaches, where its work is known.
    pub fn gflops(&self) -> Option<f64> {
        gflops(self.flops, self.total_us)
    }
}

/// `flops` done in `us` microseconds, in GFLOP/s (`None` when either is unknown or zero).
fn gflops(flops: Option<f64>, us: f64) -> Option<f64> {
    flops.filter(|_| us > 0.0).map(|f| f / us / 1e3)
}

/// Time spent in one node of the optimized plan, from [`CpuBackend::profile_nodes`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct NodeTime {
    /// The node's name in tract's plan (the ONNX node's name, with tract's suffixes).
    pub node: String,
    pub op: String,
    /// µs per call.
    pub us: f64,
    /// Operations per call (2 per multiply-add; `None` where tract states none).
    #[serde(default)]
    pub flops: Option<f64>,
}

impl NodeTime {
    /// GFLOP/s the node reaches, where its work is known.
    pub fn gflops(&self) -> Option<f64> {
        gflops(self.flops, self.us)
    }
}

impl CpuBackend {
    /// Time of the optimized plan over `iterations` runs on `input`: per operator type, and per
    /// node, each largest first.
    pub fn profile_nodes(
        &mut self,
        input: &ImageBatch,
        iterations: usize,
    ) -> Result<(Vec<OpTime>, Vec<NodeTime>)> {
        let n = input.shape[0];
        self.prepare(n)?;
        let (state, threads) = self.states.get_mut(&n).expect("prepared");
        let executor = threads.executor.clone();
        let t = input_tensor(state, input)?;
        let fmas: HashMap<usize, u64> = crate::model::node_fmas_by_id(state.model())?
            .into_iter()
            .collect();
        // by node id: (name, op, µs summed over the iterations)
        let mut by_node: HashMap<usize, (String, String, f64)> = HashMap::new();
        for _ in 0..iterations.max(1) {
            multithread_tract_scope(executor.clone(), || {
                state.run_plan_with_eval(tvec!(t.clone().into()), |ctx, st, node, inputs| {
                    let t0 = std::time::Instant::now();
                    let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                    let e = by_node
                        .entry(node.id)
                        .or_insert_with(|| (node.name.clone(), node.op().name().to_string(), 0.0));
                    e.2 += t0.elapsed().as_secs_f64() * 1e6;
                    r
                })
            })?;
        }
        let runs = iterations.max(1) as f64;
        let flops_of = |id: &usize| fmas.get(id).map(|&f| 2.0 * f as f64);
        let mut nodes: Vec<NodeTime> = by_node
            .iter()
            .map(|(id, (name, op, us))| NodeTime {
                node: name.clone(),
                op: op.clone(),
                us: us / runs,
                flops: flops_of(id),
            })
            .collect();
        nodes.sort_by(|a, b| b.us.total_cmp(&a.us));
        let mut by_op: HashMap<String, OpTime> = HashMap::new();
        for n in &nodes {
            let o = by_op.entry(n.op.clone()).or_insert_with(|| OpTime {
                op: n.op.clone(),
                nodes: 0,
                total_us: 0.0,
                flops: None,
            });
            o.nodes += 1;
            o.total_us += n.us;
            if let Some(f) = n.flops {
                o.flops = Some(o.flops.unwrap_or(0.0) + f);
            }
        }
        let mut ops: Vec<OpTime> = by_op.into_values().collect();
        ops.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
        Ok((ops, nodes))
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
        let (state, threads) = self.states.get_mut(&n).expect("prepared");
        let t = input_tensor(state, input)?;
        let out = multithread_tract_scope(threads.executor.clone(), || state.run(tvec!(t.into())))?;
        let out = out[0].cast_to::<f32>()?;
        let view = out.to_plain_array_view::<f32>()?;
        let data: Vec<f32> = match view.as_slice() {
            Some(s) => s.to_vec(),
            None => view.iter().copied().collect(),
        };
        ImageBatch::new(data, input.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread choice on forced timings: `single` and `many` give the µs of the n-th call
    /// on each executor.
    fn choose(
        mut single: impl FnMut(usize) -> f64,
        mut many: impl FnMut(usize) -> f64,
    ) -> (bool, [f64; 2]) {
        let mut calls = [0usize; 2];
        let times = alternate(|e| {
            calls[e] += 1;
            Ok(if e == 0 {
                single(calls[0])
            } else {
                many(calls[1])
            })
        })
        .unwrap();
        assert_eq!(times[0].len(), times[1].len());
        assert!(times[0].len() >= 3 * (BLOCK - 1), "{}", times[0].len());
        many_is_faster(times)
    }

    #[test]
    fn a_second_thread_is_kept_only_where_it_is_faster() {
        // one thread faster (a small model: the workers cost more than they share)
        assert!(!choose(|_| 100.0, |_| 150.0).0);
        // two faster
        assert_eq!(choose(|_| 100.0, |_| 60.0), (true, [100.0, 60.0]));
        // a tie keeps one
        assert!(!choose(|_| 100.0, |_| 100.0).0);
        // two faster when left alone, 1.7x slower on 3 calls in 5 (the other core busy): the
        // median (102) would keep one thread, the first quartile sees the 60
        let busy = |n: usize| if n % 5 < 3 { 102.0 } else { 60.0 };
        assert_eq!(choose(|_| 100.0, busy), (true, [100.0, 60.0]));
        // one faster, and its own calls sometimes slowed: still one
        let spiky = |n: usize| if n.is_multiple_of(4) { 170.0 } else { 100.0 };
        assert!(!choose(spiky, |_| 130.0).0);
        // the slower count is never chosen, whatever the ratio
        for ratio in [0.5, 0.9, 0.99, 1.01, 1.1, 2.0] {
            let (multi, [one, two]) = choose(|_| 100.0, |_| 100.0 * ratio);
            assert_eq!(multi, ratio < 1.0, "{ratio}");
            assert_eq!(multi, two < one);
        }
    }
}
