//! The Rockchip NPU backend: one runtime context per NPU core, each owned by a worker thread;
//! images of a batch and frames of the live loop go to them round-robin and come back in order.

use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::api::{Context, Runtime};
use super::convert::{self, Layout, OutputType};
use super::cores::{NpuCores, MASK_AUTO};
use crate::backend::Backend;
use crate::model::{ModelInfo, Precision};
use crate::tensor::ImageBatch;

/// How images enter the NPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputMode {
    /// uint8 NHWC pixels (`pass_through = 0`); the runtime applies the compiled mean/std and
    /// quantizes. What every upstream RK3588 example does, so the default for every model.
    U8,
    /// The model's own int8 tensor (`pass_through = 1`), mean/std and quantization folded in
    /// here: opt-in (`--npu-pass-through`) until a board shows both paths agree.
    I8 { scale: f32, zp: i32 },
}

/// Input and output tensors of a compiled model, as the runtime reports them.
#[derive(Clone, Debug)]
pub struct IoSpec {
    /// Channels, height, width.
    pub shape: (usize, usize, usize),
    pub input_name: String,
    pub input_layout: Layout,
    pub input: InputMode,
    /// The compiled model's input tensor is int8 (whichever way it is fed).
    pub int8_input: bool,
    pub output_name: String,
    pub output_layout: Layout,
    pub output: OutputType,
}

impl IoSpec {
    fn query(rt: &Runtime, ctx: Context, path: &Path, pass_through: bool) -> Result<IoSpec> {
        let n = rt.in_out_num(ctx)?;
        if n.n_input != 1 || n.n_output != 1 {
            bail!(
                "{}: an IGN model has one input and one output; this one has {} and {}",
                path.display(),
                n.n_input,
                n.n_output
            );
        }
        let ia = rt.tensor_attr(ctx, 0, false)?;
        let oa = rt.tensor_attr(ctx, 0, true)?;
        let input_layout = Layout::from_code(ia.fmt)?;
        let output_layout = Layout::from_code(oa.fmt)?;
        let shape = input_layout
            .chw(ia.shape())
            .with_context(|| format!("{}: input", path.display()))?;
        let oshape = output_layout
            .chw(oa.shape())
            .with_context(|| format!("{}: output", path.display()))?;
        if shape != oshape {
            bail!(
                "{}: input {shape:?} and output {oshape:?} differ; an IGN maps an image to an image of the same shape",
                path.display()
            );
        }
        let input = if pass_through
            && ia.type_ == convert::tensor_type::INT8
            && ia.qnt_type == convert::qnt::AFFINE_ASYMMETRIC
            && ia.scale > 0.0
        {
            InputMode::I8 {
                scale: ia.scale,
                zp: ia.zp,
            }
        } else {
            InputMode::U8
        };
        Ok(IoSpec {
            shape,
            input_name: ia.name(),
            input_layout,
            input,
            int8_input: ia.type_ == convert::tensor_type::INT8,
            output_name: oa.name(),
            output_layout,
            output: OutputType::from_attr(oa.type_, oa.qnt_type, oa.scale, oa.zp)?,
        })
    }

    fn len(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// The precision the model was compiled in, read from its tensor types.
    pub fn precision(&self) -> Precision {
        match (self.input, self.output) {
            (InputMode::I8 { .. }, _) | (_, OutputType::I8 { .. }) => Precision::Int8,
            _ if self.int8_input => Precision::Int8,
            (_, OutputType::F32) => Precision::Fp32,
            _ => Precision::Fp16,
        }
    }
}

/// Times of one application on the NPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct NpuTiming {
    /// Wall time of `rknn_run` (what rknn_benchmark reports).
    pub run_s: f64,
    /// The runtime's own figure (RKNN_QUERY_PERF_RUN), when it gives one.
    pub perf_run_us: Option<i64>,
    /// Input conversion, inputs_set, outputs_get and dequantization.
    pub io_s: f64,
}

/// Running totals of the NPU's timings, for bench.
#[derive(Clone, Debug, Default)]
pub struct NpuStats {
    pub runs: u64,
    pub run_s: f64,
    pub io_s: f64,
    pub perf_run_us: i64,
    pub perf_runs: u64,
    /// Applications per context.
    pub per_context: Vec<u64>,
}

/// One context on one core.
struct NpuContext {
    rt: Arc<Runtime>,
    ctx: Context,
    io: IoSpec,
    in_u8: Vec<u8>,
    in_i8: Vec<i8>,
}

impl NpuContext {
    /// A context from the model's bytes on core `mask`, with its tensors queried; the context
    /// is destroyed again if a later step fails.
    fn open(
        rt: &Arc<Runtime>,
        bytes: &[u8],
        mask: i32,
        path: &Path,
        opts: &RknnOptions,
    ) -> Result<NpuContext> {
        let (cores, pass_through) = (&opts.cores, opts.pass_through);
        let ctx = rt.init(bytes).map_err(|e| init_error(rt, bytes, path, e))?;
        let setup = || -> Result<IoSpec> {
            if mask != MASK_AUTO {
                rt.set_core_mask(ctx, mask)
                    .map_err(|e| anyhow!("{}: --npu-cores {cores}: {e}", path.display()))?;
            }
            IoSpec::query(rt, ctx, path, pass_through)
        };
        match setup() {
            Ok(io) => Ok(NpuContext {
                rt: rt.clone(),
                ctx,
                in_u8: vec![0; io.len()],
                in_i8: vec![0; io.len()],
                io,
            }),
            Err(e) => {
                let _ = rt.destroy(ctx);
                Err(e)
            }
        }
    }

    /// One application of f to one C×H×W image.
    fn apply(&mut self, x: &[f32], y: &mut [f32]) -> Result<NpuTiming> {
        let t0 = Instant::now();
        let io = &self.io;
        let (buf, size, type_, pass, layout) = match io.input {
            InputMode::U8 => {
                // the runtime normalizes NHWC uint8 images only
                convert::input_u8(x, io.shape, Layout::Nhwc, &mut self.in_u8);
                (
                    self.in_u8.as_mut_ptr().cast(),
                    self.in_u8.len(),
                    convert::tensor_type::UINT8,
                    0,
                    Layout::Nhwc,
                )
            }
            InputMode::I8 { scale, zp } => {
                convert::input_i8(x, io.shape, io.input_layout, scale, zp, &mut self.in_i8);
                (
                    self.in_i8.as_mut_ptr().cast(),
                    self.in_i8.len(),
                    convert::tensor_type::INT8,
                    1,
                    io.input_layout,
                )
            }
        };
        let mut input = super::api::Input {
            index: 0,
            buf,
            size: size as u32,
            pass_through: pass,
            type_,
            fmt: layout.code(),
        };
        self.rt.set_input(self.ctx, &mut input)?;
        let t1 = Instant::now();
        self.rt.run(self.ctx)?;
        let t2 = Instant::now();
        let perf_run_us = self.rt.perf_run_us(self.ctx);
        let raw = self.rt.output_bytes(self.ctx, 0)?;
        convert::output_to_chw(&raw, io.output, io.output_layout, io.shape, y)?;
        let t3 = Instant::now();
        Ok(NpuTiming {
            run_s: (t2 - t1).as_secs_f64(),
            perf_run_us,
            io_s: (t1 - t0).as_secs_f64() + (t3 - t2).as_secs_f64(),
        })
    }
}

impl Drop for NpuContext {
    fn drop(&mut self) {
        let _ = self.rt.destroy(self.ctx);
    }
}

/// f applied `steps` times to one image: the images of every step.
type JobResult = Result<Vec<Vec<f32>>>;

struct Job {
    image: Vec<f32>,
    steps: usize,
    reply: Sender<JobResult>,
}

struct Worker {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

fn spawn_worker(mut c: NpuContext, id: usize, stats: Arc<Mutex<NpuStats>>) -> Result<Worker> {
    let (tx, rx) = channel::<Job>();
    let handle = std::thread::Builder::new()
        .name(format!("npu-{id}"))
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                let n = job.image.len();
                let mut outs: Vec<Vec<f32>> = Vec::with_capacity(job.steps);
                let mut r = Ok(());
                for k in 0..job.steps {
                    let mut y = vec![0f32; n];
                    let x = if k == 0 { &job.image } else { &outs[k - 1] };
                    match c.apply(x, &mut y) {
                        Ok(t) => {
                            let mut s = stats.lock().unwrap();
                            s.runs += 1;
                            s.run_s += t.run_s;
                            s.io_s += t.io_s;
                            if let Some(p) = t.perf_run_us {
                                s.perf_run_us += p;
                                s.perf_runs += 1;
                            }
                            s.per_context[id] += 1;
                        }
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                    outs.push(y);
                }
                let _ = job.reply.send(r.map(|_| outs));
            }
        })?;
    Ok(Worker {
        tx: Some(tx),
        handle: Some(handle),
    })
}

/// Options of the NPU backend.
#[derive(Clone, Debug, Default)]
pub struct RknnOptions {
    /// The runtime library (default: `IGN_EDGE_RKNN_LIB`, then the usual places).
    pub lib: Option<PathBuf>,
    pub cores: NpuCores,
    /// Feed int8 models their own int8 tensor (`pass_through`) instead of uint8 pixels.
    pub pass_through: bool,
}

/// The runtime's version, read from the library file (`librknnrt version: X.Y.Z ...`).
fn library_version(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let tag = b"librknnrt version: ";
    let at = bytes.windows(tag.len()).position(|w| w == tag)? + tag.len();
    let v: String = bytes[at..]
        .iter()
        .take(64)
        .take_while(|&&b| b.is_ascii_graphic() || b == b' ')
        .map(|&b| b as char)
        .collect();
    (!v.is_empty()).then(|| v.trim().to_string())
}

/// The toolkit version a compiled model names, if it carries one in plain text.
fn model_toolkit_version(bytes: &[u8]) -> Option<String> {
    for tag in [&b"\"toolkit_version\":"[..], &b"\"version\":"[..]] {
        if let Some(at) = bytes.windows(tag.len()).position(|w| w == tag) {
            let v: String = bytes[at + tag.len()..]
                .iter()
                .take(48)
                .skip_while(|&&b| b == b' ' || b == b'"')
                .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
                .map(|&b| b as char)
                .collect();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

/// `rknn_init` failed: an invalid or unmatched model names both versions and the fix (an
/// older vendor `librknnrt.so` rejects models from rknn-toolkit2 2.x as invalid).
fn init_error(rt: &Runtime, bytes: &[u8], path: &Path, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e}");
    if !(text.contains("RKNN_ERR_MODEL_INVALID") || text.contains("RKNN_ERR_DEVICE_UNMATCH")) {
        return anyhow!("{}: {e}", path.display());
    }
    let runtime = library_version(&rt.path).unwrap_or_else(|| "of unknown version".into());
    let model = model_toolkit_version(bytes)
        .map(|v| format!("compiled by rknn-toolkit2 {v}"))
        .unwrap_or_else(|| "compiled by an unknown rknn-toolkit2".into());
    anyhow!(
        "{}: {e}: the model is {model}, the runtime {} is {runtime}; use the librknnrt.so of the same release as the toolkit (see boards/rk3588/README.md), or recompile the model with the toolkit that matches the board's runtime",
        path.display(),
        rt.path.display()
    )
}

/// Runs a compiled `.rknn` model on the Rockchip NPU.
pub struct RknnBackend {
    runtime: Arc<Runtime>,
    io: IoSpec,
    info: ModelInfo,
    cores: NpuCores,
    workers: Vec<Worker>,
    next: usize,
    pending: VecDeque<Receiver<JobResult>>,
    stats: Arc<Mutex<NpuStats>>,
}

impl RknnBackend {
    /// Load the runtime and create one context per core from the `.rknn` file at `path`.
    pub fn open(path: &Path, opts: &RknnOptions) -> Result<RknnBackend> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "{}: cannot read the model (make one with `ign-edge rknn-prep` and rknn-toolkit2)",
                path.display()
            )
        })?;
        Self::from_bytes(path, &bytes, opts)
    }

    /// Like [`RknnBackend::open`], from the model's bytes (`path` names it in messages).
    pub fn from_bytes(path: &Path, bytes: &[u8], opts: &RknnOptions) -> Result<RknnBackend> {
        let runtime = Arc::new(
            Runtime::load(opts.lib.as_deref()).map_err(|e| anyhow!("{}: {e}", path.display()))?,
        );
        let masks = opts.cores.masks();
        let stats = Arc::new(Mutex::new(NpuStats {
            per_context: vec![0; masks.len()],
            ..Default::default()
        }));
        let contexts = masks
            .iter()
            .map(|&mask| NpuContext::open(&runtime, bytes, mask, path, opts))
            .collect::<Result<Vec<_>>>()?;
        let io = contexts
            .first()
            .map(|c| c.io.clone())
            .ok_or_else(|| anyhow!("--npu-cores gave no core"))?;
        let versions = contexts
            .first()
            .and_then(|c| runtime.sdk_version(c.ctx))
            .unwrap_or_default();
        let info = model_info(path, bytes.len() as u64, &io, &versions);
        let workers = contexts
            .into_iter()
            .enumerate()
            .map(|(i, c)| spawn_worker(c, i, stats.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(RknnBackend {
            runtime,
            io,
            info,
            cores: opts.cores.clone(),
            workers,
            next: 0,
            pending: VecDeque::new(),
            stats,
        })
    }

    /// What the runtime reported about the model, as a [`ModelInfo`].
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's tensors.
    pub fn io(&self) -> &IoSpec {
        &self.io
    }

    /// Where the runtime library was loaded from.
    pub fn library(&self) -> &Path {
        &self.runtime.path
    }

    /// The NPU timings so far.
    pub fn stats(&self) -> NpuStats {
        self.stats.lock().unwrap().clone()
    }

    /// Forget the timings so far.
    pub fn reset_stats(&self) {
        let mut s = self.stats.lock().unwrap();
        let n = s.per_context.len();
        *s = NpuStats {
            per_context: vec![0; n],
            ..Default::default()
        };
    }

    fn check_shape(&self, input: &ImageBatch) -> Result<()> {
        let (c, h, w) = self.io.shape;
        let [_, ic, ih, iw] = input.shape;
        if (ic, ih, iw) != (c, h, w) {
            bail!(
                "{}: the model takes {c}x{h}x{w} images, got {ic}x{ih}x{iw}",
                self.info.path.display()
            );
        }
        Ok(())
    }

    /// Send image `i` of `input` to the next context.
    fn send(&mut self, image: Vec<f32>, steps: usize) -> Result<Receiver<JobResult>> {
        let (tx, rx) = channel();
        let w = &self.workers[self.next % self.workers.len()];
        self.next = self.next.wrapping_add(1);
        w.tx.as_ref()
            .expect("worker alive")
            .send(Job {
                image,
                steps,
                reply: tx,
            })
            .map_err(|_| anyhow!("an NPU worker thread stopped"))?;
        Ok(rx)
    }

    fn wait(rx: Receiver<JobResult>) -> JobResult {
        rx.recv()
            .map_err(|_| anyhow!("an NPU worker thread stopped"))?
    }
}

fn model_info(path: &Path, file_bytes: u64, io: &IoSpec, versions: &(String, String)) -> ModelInfo {
    let mut metadata = BTreeMap::new();
    metadata.insert(
        crate::model::metadata::keys::PRECISION.to_string(),
        io.precision().to_string(),
    );
    metadata.insert("rknn.input".into(), format!("{:?}", io.input));
    metadata.insert("rknn.output".into(), io.output.name().into());
    if !versions.0.is_empty() {
        metadata.insert("rknn.api_version".into(), versions.0.clone());
        metadata.insert("rknn.driver_version".into(), versions.1.clone());
    }
    ModelInfo {
        path: path.to_path_buf(),
        file_bytes,
        input_name: io.input_name.clone(),
        output_name: io.output_name.clone(),
        channels: io.shape.0,
        height: io.shape.1,
        width: io.shape.2,
        fixed_batch: None,
        precision: io.precision(),
        params: 0,
        flops: 0,
        ops: BTreeMap::new(),
        opset: 0,
        producer: "rknn-toolkit2".into(),
        metadata,
    }
}

impl Backend for RknnBackend {
    fn name(&self) -> String {
        format!("rknn-{}-cores-{}", self.io.precision(), self.cores)
    }

    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
        Ok(self
            .project(input, 1)?
            .pop()
            .expect("one step gives one batch"))
    }

    /// The images of the batch go to the contexts round-robin, all in flight at once; each
    /// context applies f `steps` times without a round trip.
    fn project(&mut self, input: &ImageBatch, steps: usize) -> Result<Vec<ImageBatch>> {
        self.check_shape(input)?;
        let steps = steps.max(1);
        let rxs = (0..input.len())
            .map(|i| self.send(input.image(i).to_vec(), steps))
            .collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(input.data.len()); steps];
        for rx in rxs {
            for (k, y) in Self::wait(rx)?.into_iter().enumerate() {
                out[k].extend_from_slice(&y);
            }
        }
        out.into_iter()
            .map(|d| ImageBatch::new(d, input.shape))
            .collect()
    }

    fn depth(&self) -> usize {
        self.workers.len()
    }

    fn submit(&mut self, input: &ImageBatch, steps: usize) -> Result<()> {
        self.check_shape(input)?;
        if input.len() != 1 {
            bail!("submit takes one frame at a time, got {}", input.len());
        }
        let rx = self.send(input.data.clone(), steps.max(1))?;
        self.pending.push_back(rx);
        Ok(())
    }

    fn receive(&mut self) -> Result<Vec<ImageBatch>> {
        let rx = self
            .pending
            .pop_front()
            .ok_or_else(|| anyhow!("receive without a submitted frame"))?;
        let (c, h, w) = self.io.shape;
        Self::wait(rx)?
            .into_iter()
            .map(|d| ImageBatch::new(d, [1, c, h, w]))
            .collect()
    }
}

impl Drop for RknnBackend {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.tx.take();
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}
