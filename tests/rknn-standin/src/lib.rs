//! A **stand-in** for Rockchip's `librknnrt.so`, for testing ign-edge's NPU backend on machines
//! without an RK3588. It exports the functions of the public `rknn_api.h` that ign-edge calls,
//! with the header's struct layouts and error codes, and computes with ign-edge's CPU backend.
//! It is not an NPU and not Rockchip's code.
//!
//! Its "`.rknn`" files are [`fake_model`]s: a tag, the input and output tensor types the real
//! compiler would produce (int8 with a zero point, uint8, fp16, float32), and an ONNX model.
//! What the real runtime does that matters to a caller is modelled: the uint8 input with
//! mean/std 127.5 applied by the runtime, the int8 `pass_through` input, NHWC inputs, NCHW
//! outputs in their native type or as float, runtime-allocated and preallocated output
//! buffers, core masks, the perf query, and error codes for every misuse. Test hooks
//! (`rknn_standin_*`) slow a core down, count runs per core and count live contexts.

use ign_edge::backend::cpu::CpuBackend;
use ign_edge::backend::Backend;
use ign_edge::model::Model;
use ign_edge::tensor::ImageBatch;
use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

// rknn_api.h, as published by Rockchip
const SUCC: c_int = 0;
const ERR_DEVICE_UNAVAILABLE: c_int = -3;
const ERR_PARAM_INVALID: c_int = -5;
const ERR_MODEL_INVALID: c_int = -6;
const ERR_CTX_INVALID: c_int = -7;
const ERR_INPUT_INVALID: c_int = -8;
const ERR_OUTPUT_INVALID: c_int = -9;

const QUERY_IN_OUT_NUM: c_int = 0;
const QUERY_INPUT_ATTR: c_int = 1;
const QUERY_OUTPUT_ATTR: c_int = 2;
const QUERY_PERF_RUN: c_int = 4;
const QUERY_SDK_VERSION: c_int = 5;

/// `RKNN_TENSOR_FLOAT32`
pub const FLOAT32: i32 = 0;
/// `RKNN_TENSOR_FLOAT16`
pub const FLOAT16: i32 = 1;
/// `RKNN_TENSOR_INT8`
pub const INT8: i32 = 2;
/// `RKNN_TENSOR_UINT8`
pub const UINT8: i32 = 3;
const NCHW: i32 = 0;
const NHWC: i32 = 1;
const QNT_NONE: i32 = 0;
const QNT_AFFINE: i32 = 2;

#[cfg(target_arch = "arm")]
type RknnContext = u32;
#[cfg(not(target_arch = "arm"))]
type RknnContext = u64;

#[repr(C)]
struct InOutNum {
    n_input: u32,
    n_output: u32,
}

#[repr(C)]
struct TensorAttr {
    index: u32,
    n_dims: u32,
    dims: [u32; 16],
    name: [u8; 256],
    n_elems: u32,
    size: u32,
    fmt: i32,
    type_: i32,
    qnt_type: i32,
    fl: i8,
    zp: i32,
    scale: f32,
    w_stride: u32,
    size_with_stride: u32,
    pass_through: u8,
    h_stride: u32,
}

/// `rknn_input` / `rknn_output` of the header.
#[repr(C)]
pub struct Input {
    index: u32,
    buf: *mut c_void,
    size: u32,
    pass_through: u8,
    type_: i32,
    fmt: i32,
}

/// `rknn_input` / `rknn_output` of the header.
#[repr(C)]
pub struct Output {
    want_float: u8,
    is_prealloc: u8,
    index: u32,
    buf: *mut c_void,
    size: u32,
}

#[repr(C)]
struct PerfRun {
    run_duration: i64,
}

#[repr(C)]
struct SdkVersion {
    api_version: [u8; 256],
    drv_version: [u8; 256],
}

const TAG: &[u8; 12] = b"RKNNSTANDIN\0";

/// A "`.rknn`" file for this stand-in: `input` and `output` are the tensor types (`INT8`,
/// `UINT8`, `FLOAT16`, `FLOAT32`) the compiled model would report, `onnx` the network.
pub fn fake_model(onnx: &[u8], input: i32, output: i32) -> Vec<u8> {
    let mut v = TAG.to_vec();
    v.extend_from_slice(&input.to_le_bytes());
    v.extend_from_slice(&output.to_le_bytes());
    v.extend_from_slice(onnx);
    v
}

/// Quantization of a tensor type in this stand-in: (qnt type, scale, zero point).
fn quant(type_: i32, output: bool) -> (i32, f32, i32) {
    match (type_, output) {
        (INT8, false) => (QNT_AFFINE, 2.0 / 255.0, -1),
        (INT8, true) => (QNT_AFFINE, 1.0 / 120.0, 3),
        (UINT8, false) => (QNT_AFFINE, 2.0 / 255.0, 128),
        (UINT8, true) => (QNT_AFFINE, 2.0 / 255.0, 128),
        _ => (QNT_NONE, 1.0, 0),
    }
}

fn elem_size(type_: i32) -> usize {
    match type_ {
        FLOAT32 => 4,
        FLOAT16 => 2,
        _ => 1,
    }
}

struct Ctx {
    backend: CpuBackend,
    shape: (usize, usize, usize),
    in_type: i32,
    out_type: i32,
    core_mask: i32,
    input: Option<Vec<f32>>,
    output: Option<Vec<f32>>,
    /// Buffers handed out by outputs_get, kept until outputs_release.
    handed_out: Vec<Vec<u8>>,
    last_run_us: i64,
}

static CONTEXTS: Mutex<BTreeMap<u64, Arc<Mutex<Ctx>>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Runs per core mask, and a delay per core mask (test hooks).
static RUNS: Mutex<BTreeMap<i32, u64>> = Mutex::new(BTreeMap::new());
static DELAY_US: Mutex<BTreeMap<i32, u64>> = Mutex::new(BTreeMap::new());

/// The map key of a context handle (u32 on 32-bit ARM).
#[allow(clippy::unnecessary_cast)]
fn key(ctx: RknnContext) -> u64 {
    ctx as u64
}

fn get(ctx: RknnContext) -> Option<Arc<Mutex<Ctx>>> {
    CONTEXTS.lock().unwrap().get(&key(ctx)).cloned()
}

/// # Safety
/// `ctx` must point to a context handle, `model` to `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rknn_init(
    ctx: *mut RknnContext,
    model: *mut c_void,
    size: u32,
    _flag: u32,
    _extend: *mut c_void,
) -> c_int {
    if ctx.is_null() || model.is_null() {
        return ERR_PARAM_INVALID;
    }
    if std::env::var_os("RKNN_STANDIN_NO_NPU").is_some() {
        return ERR_DEVICE_UNAVAILABLE;
    }
    let bytes = unsafe { std::slice::from_raw_parts(model as *const u8, size as usize) };
    if bytes.len() < 20 || &bytes[..12] != TAG {
        return ERR_MODEL_INVALID;
    }
    let in_type = i32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let out_type = i32::from_le_bytes(bytes[16..20].try_into().unwrap());
    let Ok(m) = Model::from_bytes(Path::new("<rknn stand-in>"), &bytes[20..]) else {
        return ERR_MODEL_INVALID;
    };
    let Ok(backend) = CpuBackend::new(&m, None) else {
        return ERR_MODEL_INVALID;
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    CONTEXTS.lock().unwrap().insert(
        id,
        Arc::new(Mutex::new(Ctx {
            backend,
            shape: (m.info.channels, m.info.height, m.info.width),
            in_type,
            out_type,
            core_mask: 0,
            input: None,
            output: None,
            handed_out: Vec::new(),
            last_run_us: 0,
        })),
    );
    unsafe { *ctx = id as RknnContext };
    SUCC
}

#[no_mangle]
pub extern "C" fn rknn_destroy(ctx: RknnContext) -> c_int {
    match CONTEXTS.lock().unwrap().remove(&key(ctx)) {
        Some(_) => SUCC,
        None => ERR_CTX_INVALID,
    }
}

fn attr(c: &Ctx, output: bool) -> TensorAttr {
    let (ch, h, w) = c.shape;
    let type_ = if output { c.out_type } else { c.in_type };
    let (qnt_type, scale, zp) = quant(type_, output);
    let (fmt, dims) = if output {
        (NCHW, [1, ch, h, w])
    } else {
        (NHWC, [1, h, w, ch])
    };
    let mut a = TensorAttr {
        index: 0,
        n_dims: 4,
        dims: [0; 16],
        name: [0; 256],
        n_elems: (ch * h * w) as u32,
        size: (ch * h * w * elem_size(type_)) as u32,
        fmt,
        type_,
        qnt_type,
        fl: 0,
        zp,
        scale,
        w_stride: w as u32,
        size_with_stride: (ch * h * w * elem_size(type_)) as u32,
        pass_through: 0,
        h_stride: 0,
    };
    for (d, v) in a.dims.iter_mut().zip(dims) {
        *d = v as u32;
    }
    let name: &[u8] = if output { b"output" } else { b"input" };
    a.name[..name.len()].copy_from_slice(name);
    a
}

/// # Safety
/// `info` must point to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rknn_query(
    ctx: RknnContext,
    cmd: c_int,
    info: *mut c_void,
    size: u32,
) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    let c = c.lock().unwrap();
    unsafe fn put<T>(info: *mut c_void, size: u32, v: T) -> c_int {
        if info.is_null() || size as usize != std::mem::size_of::<T>() {
            return ERR_PARAM_INVALID;
        }
        unsafe { std::ptr::write(info as *mut T, v) };
        SUCC
    }
    match cmd {
        QUERY_IN_OUT_NUM => unsafe {
            put(
                info,
                size,
                InOutNum {
                    n_input: 1,
                    n_output: 1,
                },
            )
        },
        QUERY_INPUT_ATTR | QUERY_OUTPUT_ATTR => {
            if info.is_null() || size as usize != std::mem::size_of::<TensorAttr>() {
                return ERR_PARAM_INVALID;
            }
            // the caller says which tensor in `index`
            if unsafe { (*(info as *const TensorAttr)).index } != 0 {
                return ERR_PARAM_INVALID;
            }
            unsafe { put(info, size, attr(&c, cmd == QUERY_OUTPUT_ATTR)) }
        }
        QUERY_PERF_RUN => unsafe {
            put(
                info,
                size,
                PerfRun {
                    run_duration: c.last_run_us,
                },
            )
        },
        QUERY_SDK_VERSION => {
            let mut v = SdkVersion {
                api_version: [0; 256],
                drv_version: [0; 256],
            };
            let a = b"stand-in 1.0 (ign-edge tests, CPU)";
            v.api_version[..a.len()].copy_from_slice(a);
            v.drv_version[..3].copy_from_slice(b"cpu");
            unsafe { put(info, size, v) }
        }
        _ => ERR_PARAM_INVALID,
    }
}

/// # Safety
/// `inputs` must point to `n` inputs whose buffers hold `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rknn_inputs_set(ctx: RknnContext, n: u32, inputs: *mut Input) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    let mut c = c.lock().unwrap();
    if n != 1 || inputs.is_null() {
        return ERR_PARAM_INVALID;
    }
    let inp = unsafe { &*inputs };
    if inp.index != 0 || inp.buf.is_null() {
        return ERR_INPUT_INVALID;
    }
    let (ch, h, w) = c.shape;
    let count = ch * h * w;
    let (pass, ty, fmt) = (inp.pass_through != 0, inp.type_, inp.fmt);
    let bytes = unsafe { std::slice::from_raw_parts(inp.buf as *const u8, inp.size as usize) };
    // pass_through: the model's own tensor (type and NHWC layout of its input attribute);
    // otherwise the runtime normalizes (mean/std) 4-D images in NHWC only, as the real one
    if fmt != NHWC || (pass && ty != c.in_type) {
        return ERR_INPUT_INVALID;
    }
    if bytes.len() != count * elem_size(ty) {
        return ERR_INPUT_INVALID;
    }
    let value = |i: usize| -> Option<f32> {
        let raw = match ty {
            UINT8 => bytes[i] as f32,
            INT8 => bytes[i] as i8 as f32,
            FLOAT32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()),
            _ => return None,
        };
        Some(if pass {
            let (_, scale, zp) = quant(c.in_type, false);
            (raw - zp as f32) * scale
        } else {
            // the runtime applies the mean/std the model was compiled with
            (raw - 127.5) / 127.5
        })
    };
    let mut x = vec![0f32; count];
    for ci in 0..ch {
        for y in 0..h {
            for xx in 0..w {
                let src = if fmt == NHWC {
                    (y * w + xx) * ch + ci
                } else {
                    (ci * h + y) * w + xx
                };
                match value(src) {
                    Some(v) => x[(ci * h + y) * w + xx] = v,
                    None => return ERR_INPUT_INVALID,
                }
            }
        }
    }
    c.input = Some(x);
    SUCC
}

/// The version string the real runtime carries in its file (read by ign-edge's errors).
#[used]
#[no_mangle]
pub static RKNN_STANDIN_VERSION: [u8; 40] = *b"librknnrt version: 0.0.0 (ign stand-in)\0";

#[no_mangle]
pub extern "C" fn rknn_run(ctx: RknnContext, _extend: *mut c_void) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    let mut c = c.lock().unwrap();
    let Some(x) = c.input.clone() else {
        return ERR_INPUT_INVALID;
    };
    let t = Instant::now();
    let (ch, h, w) = c.shape;
    let Ok(batch) = ImageBatch::new(x, [1, ch, h, w]) else {
        return ERR_INPUT_INVALID;
    };
    let y = match c.backend.run(&batch) {
        Ok(y) => y,
        Err(_) => return -1,
    };
    let delay = DELAY_US
        .lock()
        .unwrap()
        .get(&c.core_mask)
        .copied()
        .unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_micros(delay));
    c.output = Some(y.data);
    c.last_run_us = t.elapsed().as_micros() as i64;
    *RUNS.lock().unwrap().entry(c.core_mask).or_default() += 1;
    SUCC
}

fn encode(y: &[f32], type_: i32) -> Vec<u8> {
    let (_, scale, zp) = quant(type_, true);
    match type_ {
        FLOAT32 => y.iter().flat_map(|v| v.to_le_bytes()).collect(),
        FLOAT16 => y
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        INT8 => y
            .iter()
            .map(|v| ((v / scale).round() as i32 + zp).clamp(-128, 127) as i8 as u8)
            .collect(),
        _ => y
            .iter()
            .map(|v| ((v / scale).round() as i32 + zp).clamp(0, 255) as u8)
            .collect(),
    }
}

/// # Safety
/// `outputs` must point to `n` outputs; preallocated buffers must hold `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn rknn_outputs_get(
    ctx: RknnContext,
    n: u32,
    outputs: *mut Output,
    _extend: *mut c_void,
) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    let mut c = c.lock().unwrap();
    if n != 1 || outputs.is_null() {
        return ERR_PARAM_INVALID;
    }
    let out = unsafe { &mut *outputs };
    if out.index != 0 {
        return ERR_OUTPUT_INVALID;
    }
    let Some(y) = c.output.as_ref() else {
        return ERR_OUTPUT_INVALID;
    };
    let bytes = encode(
        y,
        if out.want_float != 0 {
            FLOAT32
        } else {
            c.out_type
        },
    );
    if out.is_prealloc != 0 {
        if out.buf.is_null() || (out.size as usize) < bytes.len() {
            return ERR_OUTPUT_INVALID;
        }
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.buf as *mut u8, bytes.len()) };
    } else {
        let mut b = bytes;
        out.buf = b.as_mut_ptr().cast();
        out.size = b.len() as u32;
        c.handed_out.push(b);
    }
    SUCC
}

/// # Safety
/// `outputs` must point to `n` outputs returned by `rknn_outputs_get`.
#[no_mangle]
pub unsafe extern "C" fn rknn_outputs_release(
    ctx: RknnContext,
    n: u32,
    outputs: *mut Output,
) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    let mut c = c.lock().unwrap();
    if outputs.is_null() {
        return ERR_PARAM_INVALID;
    }
    let outs = unsafe { std::slice::from_raw_parts_mut(outputs, n as usize) };
    for o in outs {
        if o.is_prealloc != 0 {
            continue;
        }
        match c
            .handed_out
            .iter()
            .position(|b| b.as_ptr() as *mut c_void == o.buf)
        {
            Some(i) => {
                c.handed_out.swap_remove(i);
                o.buf = std::ptr::null_mut();
            }
            None => return ERR_PARAM_INVALID,
        }
    }
    SUCC
}

#[no_mangle]
pub extern "C" fn rknn_set_core_mask(ctx: RknnContext, mask: c_int) -> c_int {
    let Some(c) = get(ctx) else {
        return ERR_CTX_INVALID;
    };
    // RKNN_NPU_CORE_AUTO, _0, _1, _2, _0_1, _0_1_2, _ALL
    if ![0, 1, 2, 4, 3, 7, 0xffff].contains(&mask) {
        return ERR_PARAM_INVALID;
    }
    c.lock().unwrap().core_mask = mask;
    SUCC
}

/// Test hook: slow every run on contexts with this core mask by `us` microseconds.
#[no_mangle]
pub extern "C" fn rknn_standin_set_delay_us(mask: c_int, us: u64) {
    DELAY_US.lock().unwrap().insert(mask, us);
}

/// Test hook: runs done so far by contexts with this core mask.
#[no_mangle]
pub extern "C" fn rknn_standin_runs(mask: c_int) -> u64 {
    RUNS.lock().unwrap().get(&mask).copied().unwrap_or(0)
}

/// Test hook: contexts created and not yet destroyed.
#[no_mangle]
pub extern "C" fn rknn_standin_live_contexts() -> u64 {
    CONTEXTS.lock().unwrap().len() as u64
}

/// Test hook: outputs handed out and not yet released, over all contexts.
#[no_mangle]
pub extern "C" fn rknn_standin_unreleased_outputs() -> u64 {
    let all: Vec<_> = CONTEXTS.lock().unwrap().values().cloned().collect();
    all.iter()
        .map(|c| c.lock().unwrap().handed_out.len() as u64)
        .sum()
}
