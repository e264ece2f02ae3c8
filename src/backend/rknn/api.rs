//! The C API of Rockchip's NPU runtime (`librknnrt.so`, public header `rknn_api.h`), loaded at
//! run time with libloading: nothing of Rockchip's is needed to build, and a machine without the
//! library gets a one-line error instead of a failed start.
//!
//! Only what the backend uses is declared: init/destroy, query, inputs_set, run, outputs_get,
//! outputs_release and set_core_mask, with the structs' layouts as in the header.

use anyhow::{anyhow, bail, Result};
use libloading::Library;
use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};

/// `rknn_context`: a handle (32 bits on 32-bit ARM, 64 bits elsewhere).
#[cfg(target_arch = "arm")]
pub type Context = u32;
/// `rknn_context`: a handle (32 bits on 32-bit ARM, 64 bits elsewhere).
#[cfg(not(target_arch = "arm"))]
pub type Context = u64;

/// `RKNN_MAX_DIMS`
pub const MAX_DIMS: usize = 16;
/// `RKNN_MAX_NAME_LEN`
pub const MAX_NAME_LEN: usize = 256;

/// `rknn_query_cmd` values.
pub mod query {
    pub const IN_OUT_NUM: i32 = 0;
    pub const INPUT_ATTR: i32 = 1;
    pub const OUTPUT_ATTR: i32 = 2;
    pub const PERF_RUN: i32 = 4;
    pub const SDK_VERSION: i32 = 5;
}

pub use super::convert::{format, qnt, tensor_type};

/// `rknn_input_output_num`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InOutNum {
    pub n_input: u32,
    pub n_output: u32,
}

/// `rknn_tensor_attr`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TensorAttr {
    pub index: u32,
    pub n_dims: u32,
    pub dims: [u32; MAX_DIMS],
    pub name: [u8; MAX_NAME_LEN],
    pub n_elems: u32,
    pub size: u32,
    pub fmt: i32,
    pub type_: i32,
    pub qnt_type: i32,
    pub fl: i8,
    pub zp: i32,
    pub scale: f32,
    pub w_stride: u32,
    pub size_with_stride: u32,
    pub pass_through: u8,
    pub h_stride: u32,
}

impl TensorAttr {
    /// An attribute record asking for tensor `index`.
    pub fn for_index(index: u32) -> Self {
        TensorAttr {
            index,
            n_dims: 0,
            dims: [0; MAX_DIMS],
            name: [0; MAX_NAME_LEN],
            n_elems: 0,
            size: 0,
            fmt: 0,
            type_: 0,
            qnt_type: 0,
            fl: 0,
            zp: 0,
            scale: 0.0,
            w_stride: 0,
            size_with_stride: 0,
            pass_through: 0,
            h_stride: 0,
        }
    }

    /// The used dimensions.
    pub fn shape(&self) -> &[u32] {
        &self.dims[..(self.n_dims as usize).min(MAX_DIMS)]
    }

    /// The tensor's name.
    pub fn name(&self) -> String {
        c_string(&self.name)
    }
}

/// A NUL-terminated C string held in a fixed array.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `rknn_input`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Input {
    pub index: u32,
    pub buf: *mut c_void,
    pub size: u32,
    pub pass_through: u8,
    pub type_: i32,
    pub fmt: i32,
}

/// `rknn_output`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub want_float: u8,
    pub is_prealloc: u8,
    pub index: u32,
    pub buf: *mut c_void,
    pub size: u32,
}

/// `rknn_perf_run`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PerfRun {
    /// Microseconds of the last `rknn_run`.
    pub run_duration: i64,
}

/// `rknn_sdk_version`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SdkVersion {
    pub api_version: [u8; 256],
    pub drv_version: [u8; 256],
}

/// The name and meaning of an `RKNN_ERR_*` code.
pub fn error_name(code: i32) -> &'static str {
    match code {
        -1 => "RKNN_ERR_FAIL (execution failed)",
        -2 => "RKNN_ERR_TIMEOUT (the NPU did not answer in time)",
        -3 => "RKNN_ERR_DEVICE_UNAVAILABLE (no NPU: is the rknpu driver loaded?)",
        -4 => "RKNN_ERR_MALLOC_FAIL (out of memory)",
        -5 => "RKNN_ERR_PARAM_INVALID (invalid parameter)",
        -6 => "RKNN_ERR_MODEL_INVALID (not a valid .rknn model)",
        -7 => "RKNN_ERR_CTX_INVALID (invalid context)",
        -8 => "RKNN_ERR_INPUT_INVALID (invalid input)",
        -9 => "RKNN_ERR_OUTPUT_INVALID (invalid output)",
        -10 => "RKNN_ERR_DEVICE_UNMATCH (the model was compiled for another runtime version)",
        -11 => "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL (pre-compiled model incompatible with this driver)",
        -12 => "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION (recompile the model with this toolkit version)",
        -13 => "RKNN_ERR_TARGET_PLATFORM_UNMATCH (the model was compiled for another chip: use target_platform='rk3588')",
        _ => "unknown error code",
    }
}

type InitFn = unsafe extern "C" fn(*mut Context, *mut c_void, u32, u32, *mut c_void) -> c_int;
type DestroyFn = unsafe extern "C" fn(Context) -> c_int;
type QueryFn = unsafe extern "C" fn(Context, c_int, *mut c_void, u32) -> c_int;
type InputsSetFn = unsafe extern "C" fn(Context, u32, *mut Input) -> c_int;
type RunFn = unsafe extern "C" fn(Context, *mut c_void) -> c_int;
type OutputsGetFn = unsafe extern "C" fn(Context, u32, *mut Output, *mut c_void) -> c_int;
type OutputsReleaseFn = unsafe extern "C" fn(Context, u32, *mut Output) -> c_int;
type SetCoreMaskFn = unsafe extern "C" fn(Context, c_int) -> c_int;

/// The environment variable naming the runtime library to load.
pub const LIB_ENV: &str = "IGN_EDGE_RKNN_LIB";

/// Where the runtime is looked for when neither `--rknn-lib` nor `IGN_EDGE_RKNN_LIB` is set:
/// the loader's search path first, then the places Rockchip's images and rknpu2 install it.
pub const DEFAULT_CANDIDATES: &[&str] = &[
    "librknnrt.so",
    "/usr/lib/librknnrt.so",
    "/usr/lib/aarch64-linux-gnu/librknnrt.so",
    "/usr/lib64/librknnrt.so",
    "/usr/local/lib/librknnrt.so",
];

/// The loaded runtime: the library and its entry points.
pub struct Runtime {
    /// Where it was loaded from.
    pub path: PathBuf,
    init: InitFn,
    destroy: DestroyFn,
    query: QueryFn,
    inputs_set: InputsSetFn,
    run: RunFn,
    outputs_get: OutputsGetFn,
    outputs_release: OutputsReleaseFn,
    set_core_mask: Option<SetCoreMaskFn>,
    // Last: the function pointers above stay valid while the library is loaded.
    _lib: Library,
}

// The entry points are plain C functions; the runtime allows one context per thread.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

fn check(code: c_int, what: &str) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        bail!("{what} failed: {code} {}", error_name(code))
    }
}

impl Runtime {
    /// Load the runtime from `path`, or from `IGN_EDGE_RKNN_LIB`, or from the default places.
    pub fn load(path: Option<&Path>) -> Result<Runtime> {
        let candidates: Vec<PathBuf> = match path {
            Some(p) => vec![p.to_path_buf()],
            None => match std::env::var_os(LIB_ENV) {
                Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
                _ => DEFAULT_CANDIDATES.iter().map(PathBuf::from).collect(),
            },
        };
        let mut last_err = String::new();
        for c in &candidates {
            // SAFETY: loading a shared library runs its initialisers; librknnrt's are benign.
            match unsafe { Library::new(c) } {
                Ok(lib) => return Self::from_library(lib, c.clone()),
                Err(e) => last_err = e.to_string(),
            }
        }
        let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        bail!(
            "cannot load the Rockchip NPU runtime (tried {}): {last_err}; install librknnrt.so from \
             Rockchip's rknn-toolkit2 (rknpu2/runtime/Linux/librknn_api/aarch64, see \
             boards/rk3588/README.md) or point {LIB_ENV} / --rknn-lib at it",
            tried.join(", ")
        )
    }

    fn from_library(lib: Library, path: PathBuf) -> Result<Runtime> {
        {
            // SAFETY (inside): the symbol types are those of rknn_api.h.
            fn sym<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T> {
                let s = unsafe { lib.get::<T>(name.as_bytes()) }.map_err(|e| {
                    anyhow!(
                        "{}: not a Rockchip NPU runtime ({name} missing: {e})",
                        path.display()
                    )
                })?;
                Ok(*s)
            }
            Ok(Runtime {
                init: sym(&lib, &path, "rknn_init")?,
                destroy: sym(&lib, &path, "rknn_destroy")?,
                query: sym(&lib, &path, "rknn_query")?,
                inputs_set: sym(&lib, &path, "rknn_inputs_set")?,
                run: sym(&lib, &path, "rknn_run")?,
                outputs_get: sym(&lib, &path, "rknn_outputs_get")?,
                outputs_release: sym(&lib, &path, "rknn_outputs_release")?,
                // older runtimes (RK356x) have no core mask
                set_core_mask: sym(&lib, &path, "rknn_set_core_mask").ok(),
                path,
                _lib: lib,
            })
        }
    }

    /// `rknn_init` from the model's bytes.
    pub fn init(&self, model: &[u8]) -> Result<Context> {
        let mut ctx: Context = 0;
        let mut bytes = model.to_vec();
        // SAFETY: the runtime reads `size` bytes of the model; ctx is written on success.
        let code = unsafe {
            (self.init)(
                &mut ctx,
                bytes.as_mut_ptr().cast(),
                bytes.len() as u32,
                0,
                std::ptr::null_mut(),
            )
        };
        check(code, "rknn_init")?;
        Ok(ctx)
    }

    /// `rknn_destroy`
    pub fn destroy(&self, ctx: Context) -> Result<()> {
        // SAFETY: ctx came from init.
        check(unsafe { (self.destroy)(ctx) }, "rknn_destroy")
    }

    /// `rknn_query` into a plain struct.
    ///
    /// # Safety
    /// `T` must be the struct that `cmd` fills in.
    pub unsafe fn query<T>(&self, ctx: Context, cmd: i32, info: &mut T) -> Result<()> {
        let code = unsafe {
            (self.query)(
                ctx,
                cmd,
                (info as *mut T).cast(),
                std::mem::size_of::<T>() as u32,
            )
        };
        check(code, &format!("rknn_query({cmd})"))
    }

    /// Number of inputs and outputs.
    pub fn in_out_num(&self, ctx: Context) -> Result<InOutNum> {
        let mut n = InOutNum::default();
        // SAFETY: IN_OUT_NUM fills rknn_input_output_num.
        unsafe { self.query(ctx, query::IN_OUT_NUM, &mut n)? };
        Ok(n)
    }

    /// Attributes of input (`output == false`) or output tensor `index`.
    pub fn tensor_attr(&self, ctx: Context, index: u32, output: bool) -> Result<TensorAttr> {
        let mut a = TensorAttr::for_index(index);
        let cmd = if output {
            query::OUTPUT_ATTR
        } else {
            query::INPUT_ATTR
        };
        // SAFETY: INPUT_ATTR/OUTPUT_ATTR fill rknn_tensor_attr.
        unsafe { self.query(ctx, cmd, &mut a)? };
        Ok(a)
    }

    /// Microseconds of the last run as the runtime measured it, when it reports it.
    pub fn perf_run_us(&self, ctx: Context) -> Option<i64> {
        let mut p = PerfRun::default();
        // SAFETY: PERF_RUN fills rknn_perf_run.
        unsafe { self.query(ctx, query::PERF_RUN, &mut p) }.ok()?;
        Some(p.run_duration)
    }

    /// API and driver versions.
    pub fn sdk_version(&self, ctx: Context) -> Option<(String, String)> {
        let mut v = SdkVersion {
            api_version: [0; 256],
            drv_version: [0; 256],
        };
        // SAFETY: SDK_VERSION fills rknn_sdk_version.
        unsafe { self.query(ctx, query::SDK_VERSION, &mut v) }.ok()?;
        let s = |b: &[u8]| c_string(b).trim().to_string();
        Some((s(&v.api_version), s(&v.drv_version)))
    }

    /// `rknn_set_core_mask`; an error when the runtime has none and a mask other than auto is asked.
    pub fn set_core_mask(&self, ctx: Context, mask: i32) -> Result<()> {
        match self.set_core_mask {
            // SAFETY: ctx came from init.
            Some(f) => check(unsafe { f(ctx, mask) }, "rknn_set_core_mask"),
            None if mask == 0 => Ok(()),
            None => bail!(
                "{}: this runtime has no rknn_set_core_mask (not an RK3588 runtime?); use --npu-cores auto",
                self.path.display()
            ),
        }
    }

    /// `rknn_inputs_set` with one input buffer.
    pub fn set_input(&self, ctx: Context, input: &mut Input) -> Result<()> {
        // SAFETY: the buffer outlives the call; the runtime copies it.
        check(
            unsafe { (self.inputs_set)(ctx, 1, input) },
            "rknn_inputs_set",
        )
    }

    /// `rknn_run`
    pub fn run(&self, ctx: Context) -> Result<()> {
        // SAFETY: ctx came from init.
        check(unsafe { (self.run)(ctx, std::ptr::null_mut()) }, "rknn_run")
    }

    /// `rknn_outputs_get` of output 0 in its native type, copied out, then released.
    pub fn output_bytes(&self, ctx: Context, index: u32) -> Result<Vec<u8>> {
        let mut out = Output {
            want_float: 0,
            is_prealloc: 0,
            index,
            buf: std::ptr::null_mut(),
            size: 0,
        };
        // SAFETY: the runtime allocates the buffer and fills `out`.
        check(
            unsafe { (self.outputs_get)(ctx, 1, &mut out, std::ptr::null_mut()) },
            "rknn_outputs_get",
        )?;
        if out.buf.is_null() {
            bail!("rknn_outputs_get returned no buffer");
        }
        // SAFETY: buf holds `size` bytes until released.
        let bytes =
            unsafe { std::slice::from_raw_parts(out.buf as *const u8, out.size as usize) }.to_vec();
        // SAFETY: releases what outputs_get allocated.
        check(
            unsafe { (self.outputs_release)(ctx, 1, &mut out) },
            "rknn_outputs_release",
        )?;
        Ok(bytes)
    }
}
