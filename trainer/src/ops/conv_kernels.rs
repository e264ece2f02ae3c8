//! The convolution kernels: im2col/col2im around one matrix product per chunk of images, the
//! chunks spread over rayon's threads, on plain slices ([`crate::ops::fastconv`] wraps them as
//! candle ops).
//!
//! Every op is one of three kernels on a convolution "geometry" ([`Geom`]) that maps a large
//! image (`ci × h × w`) to a small one (`co × oh × ow`) with a `co × ci × k × k` kernel:
//!
//! | op                | forward           | input gradient     | weight gradient          |
//! |-------------------|-------------------|--------------------|--------------------------|
//! | `conv2d`          | `fwd(x, w)`       | `bwd_data(g, w)`   | `bwd_weight(x, g)`       |
//! | `conv_transpose2d`| `bwd_data(x, w)`  | `fwd(g, w)`        | `bwd_weight(g, x)`       |
//!
//! A transposed convolution is the adjoint of the convolution with the same kernel, and its
//! `ci × co × k × k` weight is exactly that convolution's `co' × ci' × k × k` weight.
//! Only groups = 1, dilation = 1 and square kernels (the DCGAN layers) are supported.

use rayon::prelude::*;

/// A float type the kernels run on (f32 for training, f64 for gradient checks).
pub trait Float:
    Copy + Default + Send + Sync + 'static + std::ops::AddAssign + candle_core::WithDType
{
}
impl Float for f32 {}
impl Float for f64 {}

/// Sizes of a convolution from a large image to a small one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub batch: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// Geometry of a convolution of `[b, ci, h, w]` by `co × ci × k × k`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        b: usize,
        ci: usize,
        h: usize,
        w: usize,
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Geom {
            batch: b,
            ci,
            h,
            w,
            co,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        }
    }
    fn cols_rows(&self) -> usize {
        self.ci * self.k * self.k
    }
    fn small(&self) -> usize {
        self.oh * self.ow
    }
    fn big(&self) -> usize {
        self.h * self.w
    }
    fn x_len(&self) -> usize {
        self.batch * self.ci * self.big()
    }
    fn y_len(&self) -> usize {
        self.batch * self.co * self.small()
    }
    fn w_len(&self) -> usize {
        self.co * self.cols_rows()
    }
    /// Panics (in release builds too) unless each operand has exactly the length the
    /// geometry says: the kernels index them without further checks.
    fn check(&self, what: &str, operands: &[(&str, usize, usize)]) {
        assert!(
            self.k > 0
                && self.stride > 0
                && self.h + 2 * self.pad >= self.k
                && self.w + 2 * self.pad >= self.k
                && self.oh == (self.h + 2 * self.pad - self.k) / self.stride + 1
                && self.ow == (self.w + 2 * self.pad - self.k) / self.stride + 1,
            "{what}: invalid geometry {self:?}"
        );
        for &(name, have, want) in operands {
            assert_eq!(
                have, want,
                "{what}: {name} has {have} values, the geometry {self:?} needs {want}"
            );
        }
    }
}

/// `c (m×n) [+]= a (m×kk) · b (kk×n)`, operands given by row and column strides.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    m: usize,
    n: usize,
    kk: usize,
    c: &mut [T],
    accumulate: bool,
    a: &[T],
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_rs: isize,
    b_cs: isize,
) {
    // Checked in release builds too: gemm reads and writes through raw pointers, so the
    // last element each operand's sizes and strides reach must lie inside its slice.
    let reach = |rows: usize, cols: usize, rs: isize, cs: isize| -> Option<usize> {
        if rows == 0 || cols == 0 {
            return Some(0);
        }
        let (rs, cs) = (usize::try_from(rs).ok()?, usize::try_from(cs).ok()?);
        (rows - 1)
            .checked_mul(rs)?
            .checked_add((cols - 1).checked_mul(cs)?)?
            .checked_add(1)
    };
    assert!(
        m.checked_mul(n).is_some_and(|mn| mn <= c.len())
            && reach(m, kk, a_rs, a_cs).is_some_and(|r| r <= a.len())
            && reach(kk, n, b_rs, b_cs).is_some_and(|r| r <= b.len()),
        "matmul {m}x{kk}x{n}: operands of {}, {} and {} values are too short",
        a.len(),
        b.len(),
        c.len()
    );
    // SAFETY: the assertion above keeps every index the sizes and strides reach inside its
    // slice; dst does not alias the inputs (a `&mut` and two `&` slices).
    unsafe {
        gemm::gemm(
            m,
            n,
            kk,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The input of a strided convolution split into stride phases: with `P` the zero-padded image
/// (`(h+2p) × (w+2p)`), phase `(a, b)` of a channel is the plane `Q[i][j] = P[i·s+a][j·s+b]`
/// (`rows × cols` each). Tap `(kh, kw)` of output row `oy` then reads one contiguous run:
/// `Q_(kh%s, kw%s)[oy + kh/s][kw/s .. kw/s + ow]`, so unfolding and folding are plain slice
/// copies and adds, with no border tests or strided access per value.
#[derive(Clone, Copy)]
struct Phases {
    rows: usize,
    cols: usize,
}

impl Phases {
    fn of(g: &Geom) -> Phases {
        Phases {
            rows: (g.h + 2 * g.pad).div_ceil(g.stride),
            cols: (g.w + 2 * g.pad).div_ceil(g.stride),
        }
    }
    /// Values per channel (all `s²` phase planes).
    fn per_channel(&self, g: &Geom) -> usize {
        g.stride * g.stride * self.rows * self.cols
    }
    /// Offset, within a channel, of the run that tap `(kh, kw)` reads for output row `oy`.
    #[inline]
    fn run(&self, g: &Geom, kh: usize, kw: usize, oy: usize) -> usize {
        let s = g.stride;
        ((kh % s) * s + kw % s) * self.rows * self.cols + (oy + kh / s) * self.cols + kw / s
    }
    /// For image row `y`: for each column phase `b`, the first image column `x0` in it and
    /// where, within a channel, the values `x0, x0 + s, ...` of that row start.
    fn row_runs(&self, g: &Geom, y: usize) -> impl Iterator<Item = (usize, usize)> {
        let (s, p, w, cols) = (g.stride, g.pad, g.w, self.cols);
        let (a, i) = ((y + p) % s, (y + p) / s);
        let plane = self.rows * cols;
        (0..s).filter_map(move |b| {
            let x0 = (b + s - p % s) % s;
            (x0 < w).then(|| (x0, (a * s + b) * plane + i * cols + (x0 + p) / s))
        })
    }
}

/// Fill `dst` run by run (`len` values each) from `src(run)`; runs are short (1 to 14 values
/// in the shipped models), so all but the last are copied 16 values at a time (one vector
/// move; the surplus lands in the next run, written right after) instead of calling memmove.
#[inline]
fn copy_runs<'a, T: Float + 'a>(dst: &mut [T], len: usize, src: impl Fn(usize) -> &'a [T]) {
    const W: usize = 16;
    let runs = dst.len() / len;
    for r in 0..runs {
        let from = src(r);
        let at = r * len;
        if len <= W && r + 1 < runs && at + W <= dst.len() && from.len() >= W {
            dst[at..at + W].copy_from_slice(&from[..W]);
        } else {
            dst[at..at + len].copy_from_slice(&from[..len]);
        }
    }
}

/// Split one image `ci × h × w` into its padded stride phases (`q`: `ci` channels of
/// [`Phases::per_channel`] values; padding and unused places zero).
fn to_phases<T: Float>(x: &[T], g: &Geom, ph: Phases, q: &mut [T]) {
    let per = ph.per_channel(g);
    q[..g.ci * per].fill(T::default());
    for ci in 0..g.ci {
        let (plane, qc) = (&x[ci * g.big()..][..g.big()], &mut q[ci * per..][..per]);
        for y in 0..g.h {
            let row = &plane[y * g.w..][..g.w];
            for (x0, at) in ph.row_runs(g, y) {
                for (d, &v) in qc[at..].iter_mut().zip(row[x0..].iter().step_by(g.stride)) {
                    *d = v;
                }
            }
        }
    }
}

/// Unfold one image `ci × h × w` into patches: row `(ci·k + kh)·k + kw` of `cols` (rows
/// `row_stride` apart) holds the `oh·ow` inputs that tap meets (zero padding). `q` is work
/// space for the image's phases.
fn im2col<T: Float>(x: &[T], g: &Geom, cols: &mut [T], row_stride: usize, q: &mut [T]) {
    let (k, ph) = (g.k, Phases::of(g));
    let per = ph.per_channel(g);
    to_phases(x, g, ph, q);
    for ci in 0..g.ci {
        let qc = &q[ci * per..][..per];
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut cols[((ci * k + kh) * k + kw) * row_stride..][..g.small()];
                copy_runs(row, g.ow, |oy| &qc[ph.run(g, kh, kw, oy)..]);
            }
        }
    }
}

/// Fold patches back (rows `row_stride` apart), adding overlapping contributions into `x`
/// (`ci × h × w`, overwritten). `q` is work space for the phases.
fn col2im<T: Float>(cols: &[T], g: &Geom, x: &mut [T], row_stride: usize, q: &mut [T]) {
    let (k, ph) = (g.k, Phases::of(g));
    let per = ph.per_channel(g);
    q[..g.ci * per].fill(T::default());
    for ci in 0..g.ci {
        let qc = &mut q[ci * per..][..per];
        for kh in 0..k {
            for kw in 0..k {
                let row = &cols[((ci * k + kh) * k + kw) * row_stride..][..g.small()];
                for (oy, src) in row.chunks_exact(g.ow).enumerate() {
                    for (d, &v) in qc[ph.run(g, kh, kw, oy)..][..g.ow].iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
        let plane = &mut x[ci * g.big()..][..g.big()];
        for y in 0..g.h {
            let row = &mut plane[y * g.w..][..g.w];
            for (x0, at) in ph.row_runs(g, y) {
                for (d, &v) in row[x0..].iter_mut().step_by(g.stride).zip(&qc[at..]) {
                    *d = v;
                }
            }
        }
    }
}

/// Split `0..batch` into one contiguous range per worker thread.
fn chunks(batch: usize) -> Vec<(usize, usize)> {
    let threads = rayon::current_num_threads().max(1);
    let per = batch.div_ceil(threads).max(1);
    (0..batch)
        .step_by(per)
        .map(|s| (s, (s + per).min(batch)))
        .collect()
}

/// Images per chunk of [`chunks`].
fn per_chunk(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

thread_local! {
    /// Per-thread work buffers, reused from call to call (no allocation, no zeroing).
    static SCRATCH: [std::cell::RefCell<Vec<f64>>; 3] = Default::default();
}

/// Run `f` on this thread's work buffer `slot` holding `n` values of `T`; its contents are
/// whatever an earlier call left, so `f` must write every value before reading it.
fn with_scratch<T: Float, R>(slot: usize, n: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    SCRATCH.with(|slots| {
        let Ok(mut v) = slots[slot].try_borrow_mut() else {
            // re-entered on this thread (not expected): a fresh buffer
            return f(&mut vec![T::default(); n]);
        };
        let words = (n * std::mem::size_of::<T>()).div_ceil(8);
        if v.len() < words {
            v.resize(words, 0.0);
        }
        // SAFETY: the f64 storage is 8-byte aligned, enough for T (f32 or f64), holds at least
        // n·size_of::<T>() bytes, and every bit pattern is a valid f32/f64.
        let buf = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut T, n) };
        f(buf)
    })
}

/// im2col of images `b0..b1` side by side into `wide`: `(ci·k·k) × ((b1−b0)·oh·ow)`.
fn im2col_many<T: Float>(x: &[T], g: &Geom, b0: usize, b1: usize, wide: &mut [T]) {
    let (n, nb) = (g.small(), b1 - b0);
    with_scratch(2, g.ci * Phases::of(g).per_channel(g), |q: &mut [T]| {
        for b in b0..b1 {
            im2col(
                &x[b * g.ci * g.big()..(b + 1) * g.ci * g.big()],
                g,
                &mut wide[(b - b0) * n..],
                nb * n,
                q,
            );
        }
    })
}

/// `[b, c, n]` images `b0..b1` → `out`: `c × ((b1−b0)·n)`.
fn gather_channels<T: Float>(y: &[T], c: usize, n: usize, b0: usize, b1: usize, out: &mut [T]) {
    let nb = b1 - b0;
    for b in b0..b1 {
        for ch in 0..c {
            out[ch * nb * n + (b - b0) * n..][..n].copy_from_slice(&y[(b * c + ch) * n..][..n]);
        }
    }
}

/// The forward product of one chunk of `nb` images: `buf` (co × nb·n) = w (co × r) · cols
/// (r × nb·n), then copied to the images' outputs `ys` (`[nb, co, n]`).
fn forward_chunk<T: Float>(w: &[T], cols: &[T], g: &Geom, nb: usize, buf: &mut [T], ys: &mut [T]) {
    let (r, n) = (g.cols_rows(), g.small());
    matmul(
        g.co,
        nb * n,
        r,
        buf,
        false,
        w,
        r as isize,
        1,
        cols,
        (nb * n) as isize,
        1,
    );
    for b in 0..nb {
        for c in 0..g.co {
            ys[(b * g.co + c) * n..][..n].copy_from_slice(&buf[c * nb * n + b * n..][..n]);
        }
    }
}

/// The weight-gradient product of one chunk into `acc`, laid out as [`WeightGradLayout::of`]
/// says: `co × r` (dyw · colsᵀ) or its transpose `r × co` (cols · dywᵀ).
fn weight_grad_chunk<T: Float>(dyw: &[T], cols: &[T], g: &Geom, nb: usize, acc: &mut [T]) {
    let (r, k) = (g.cols_rows(), nb * g.small());
    match WeightGradLayout::of(g) {
        WeightGradLayout::Plain => matmul(
            g.co, r, k, acc, false, dyw, k as isize, 1, cols, 1, k as isize,
        ),
        WeightGradLayout::Transposed => matmul(
            r, g.co, k, acc, false, cols, k as isize, 1, dyw, 1, k as isize,
        ),
    }
}

/// How [`weight_grad_chunk`] lays out its product. gemm packs the operand that gives the rows
/// of its (column-major) result: in the plain layout that is all of `cols` (r × nb·n, r = 16·ci
/// on the DCGAN layers), in the transposed one only `dyw` (co × nb·n, 8× smaller), but there
/// gemm reads `cols` unpacked once per 64 output channels, so it pays only up to 64 of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WeightGradLayout {
    Plain,
    Transposed,
}

impl WeightGradLayout {
    fn of(g: &Geom) -> Self {
        if g.co <= 64 {
            WeightGradLayout::Transposed
        } else {
            WeightGradLayout::Plain
        }
    }
}

/// Sum the per-chunk weight gradients of [`weight_grad_chunk`] into one `co × r` gradient.
fn sum_parts<T: Float>(parts: Vec<Vec<T>>, g: &Geom) -> Vec<T> {
    let (co, r) = (g.co, g.cols_rows());
    let mut out = vec![T::default(); co * r];
    let transposed = WeightGradLayout::of(g) == WeightGradLayout::Transposed;
    for p in parts {
        if !transposed {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
            continue;
        }
        // in tiles, so that neither the reads nor the strided writes leave the cache
        const TILE: usize = 32;
        for j0 in (0..r).step_by(TILE) {
            for c0 in (0..co).step_by(TILE) {
                for j in j0..(j0 + TILE).min(r) {
                    let row = &p[j * co..(j + 1) * co];
                    for c in c0..(c0 + TILE).min(co) {
                        out[c * r + j] += row[c];
                    }
                }
            }
        }
    }
    out
}

/// Convolution forward: `x [b, ci, h, w]`, `w [co, ci, k, k]` → `[b, co, oh, ow]`.
///
/// Each thread unfolds its images side by side and does one wide matrix product.
pub fn fwd<T: Float>(x: &[T], w: &[T], g: &Geom) -> Vec<T> {
    fwd_keeping(x, w, g, false).0
}

/// [`fwd`], also returning the unfolded input when `keep` is set (the chunks' im2col matrices
/// one after the other), so that the weight gradient ([`bwd_weight_from_cols`]) need not
/// unfold it again.
pub fn fwd_keeping<T: Float>(x: &[T], w: &[T], g: &Geom, keep: bool) -> (Vec<T>, Option<Vec<T>>) {
    g.check(
        "fwd",
        &[("x", x.len(), g.x_len()), ("w", w.len(), g.w_len())],
    );
    let (r, n) = (g.cols_rows(), g.small());
    let per = per_chunk(g.batch);
    let mut y = vec![T::default(); g.batch * g.co * n];
    let body = |ys: &mut [T], (b0, b1): (usize, usize), cols: &mut [T]| {
        let nb = b1 - b0;
        im2col_many(x, g, b0, b1, cols);
        with_scratch(1, g.co * nb * n, |out: &mut [T]| {
            forward_chunk(w, cols, g, nb, out, ys)
        })
    };
    if keep {
        let mut kept = vec![T::default(); r * g.batch * n];
        y.par_chunks_mut(per * g.co * n)
            .zip(kept.par_chunks_mut(per * r * n))
            .zip(chunks(g.batch))
            .for_each(|((ys, cols), c)| body(ys, c, cols));
        return (y, Some(kept));
    }
    y.par_chunks_mut(per * g.co * n)
        .zip(chunks(g.batch))
        .for_each(|(ys, c)| {
            with_scratch(0, r * (c.1 - c.0) * n, |cols: &mut [T]| body(ys, c, cols))
        });
    (y, None)
}

/// Convolution input gradient: `dy [b, co, oh, ow]`, `w [co, ci, k, k]` → `[b, ci, h, w]`.
pub fn bwd_data<T: Float>(dy: &[T], w: &[T], g: &Geom) -> Vec<T> {
    g.check(
        "bwd_data",
        &[("dy", dy.len(), g.y_len()), ("w", w.len(), g.w_len())],
    );
    let (r, n) = (g.cols_rows(), g.small());
    let per = per_chunk(g.batch);
    let mut dx = vec![T::default(); g.batch * g.ci * g.big()];
    dx.par_chunks_mut(per * g.ci * g.big())
        .zip(chunks(g.batch))
        .for_each(|(dxs, (b0, b1))| {
            let nb = b1 - b0;
            with_scratch(1, g.co * nb * n, |dyw: &mut [T]| {
                gather_channels(dy, g.co, n, b0, b1, dyw);
                with_scratch(0, r * nb * n, |cols: &mut [T]| {
                    // cols (r × nb·n) = wᵀ (r × co) · dy (co × nb·n)
                    matmul(
                        r,
                        nb * n,
                        g.co,
                        cols,
                        false,
                        w,
                        1,
                        r as isize,
                        dyw,
                        (nb * n) as isize,
                        1,
                    );
                    with_scratch(2, g.ci * Phases::of(g).per_channel(g), |q: &mut [T]| {
                        for b in 0..nb {
                            col2im(
                                &cols[b * n..],
                                g,
                                &mut dxs[b * g.ci * g.big()..(b + 1) * g.ci * g.big()],
                                nb * n,
                                q,
                            );
                        }
                    })
                })
            })
        });
    dx
}

/// [`bwd_weight`] from the unfolded input that [`fwd_keeping`] kept.
pub fn bwd_weight_from_cols<T: Float>(cols: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    let cols_len = g.cols_rows() * g.batch * g.small();
    g.check(
        "bwd_weight_from_cols",
        &[("cols", cols.len(), cols_len), ("dy", dy.len(), g.y_len())],
    );
    let (r, n) = (g.cols_rows(), g.small());
    let per = per_chunk(g.batch);
    let partial: Vec<Vec<T>> = cols
        .par_chunks(per * r * n)
        .zip(chunks(g.batch))
        .map(|(cols, (b0, b1))| {
            let nb = b1 - b0;
            let mut acc = vec![T::default(); g.co * r];
            with_scratch(1, g.co * nb * n, |dyw: &mut [T]| {
                gather_channels(dy, g.co, n, b0, b1, dyw);
                weight_grad_chunk(dyw, cols, g, nb, &mut acc);
            });
            acc
        })
        .collect();
    sum_parts(partial, g)
}

/// Convolution weight gradient: `x [b, ci, h, w]`, `dy [b, co, oh, ow]` → `[co, ci, k, k]`.
pub fn bwd_weight<T: Float>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    g.check(
        "bwd_weight",
        &[("x", x.len(), g.x_len()), ("dy", dy.len(), g.y_len())],
    );
    let (r, n) = (g.cols_rows(), g.small());
    let partial: Vec<Vec<T>> = chunks(g.batch)
        .into_par_iter()
        .map(|(b0, b1)| {
            let nb = b1 - b0;
            let mut acc = vec![T::default(); g.co * r];
            with_scratch(0, r * nb * n, |cols: &mut [T]| {
                im2col_many(x, g, b0, b1, cols);
                with_scratch(1, g.co * nb * n, |dyw: &mut [T]| {
                    gather_channels(dy, g.co, n, b0, b1, dyw);
                    weight_grad_chunk(dyw, cols, g, nb, &mut acc);
                })
            });
            acc
        })
        .collect();
    sum_parts(partial, g)
}

/// [`fwd`] of `x` and [`bwd_weight`] of `x` with `dy`, sharing one im2col of `x`: a
/// transposed convolution's input gradient (`fwd` of its output gradient) and weight gradient
/// (`bwd_weight` of its output gradient with its input) unfold the same tensor.
pub fn fwd_and_bwd_weight<T: Float>(x: &[T], w: &[T], dy: &[T], g: &Geom) -> (Vec<T>, Vec<T>) {
    g.check(
        "fwd_and_bwd_weight",
        &[
            ("x", x.len(), g.x_len()),
            ("w", w.len(), g.w_len()),
            ("dy", dy.len(), g.y_len()),
        ],
    );
    let (r, n) = (g.cols_rows(), g.small());
    let per = per_chunk(g.batch);
    let mut y = vec![T::default(); g.batch * g.co * n];
    let partial: Vec<Vec<T>> = y
        .par_chunks_mut(per * g.co * n)
        .zip(chunks(g.batch))
        .map(|(ys, (b0, b1))| {
            let nb = b1 - b0;
            let mut acc = vec![T::default(); g.co * r];
            with_scratch(0, r * nb * n, |cols: &mut [T]| {
                im2col_many(x, g, b0, b1, cols);
                with_scratch(1, g.co * nb * n, |buf: &mut [T]| {
                    forward_chunk(w, cols, g, nb, buf, ys);
                    gather_channels(dy, g.co, n, b0, b1, buf);
                    weight_grad_chunk(buf, cols, g, nb, &mut acc);
                })
            });
            acc
        })
        .collect();
    (y, sum_parts(partial, g))
}
