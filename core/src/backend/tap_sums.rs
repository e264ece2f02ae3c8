//! The inner step that [`super::direct_conv`] and [`super::direct_deconv`] share: sums of
//! `weight × run` over a list of kernel taps, for four output channels and `L` neighbouring
//! output positions at a time, and what decides where they run.

/// Whether this CPU has a fused multiply-add instruction for `f32::mul_add` (x86-64 with AVX2
/// and FMA, every aarch64); elsewhere `mul_add` is a library call and tract's ops stay.
pub(crate) fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(target_arch = "aarch64")]
    return true;
    #[allow(unreachable_code)]
    false
}

/// Where the steps of `l` positions along a run of `n ≥ l` start: every `l`-th position, and
/// a last step that overlaps the one before it to end at `n` (it recomputes the same sums).
pub(crate) fn step_starts(n: usize, l: usize) -> impl Iterator<Item = usize> {
    (0..n / l)
        .map(move |i| i * l)
        .chain((!n.is_multiple_of(l)).then_some(n - l))
}

/// For four output channels and the `L` positions from `j0`: `bias[c] + Σ_t w[t][c] ×
/// x[at[t] + j0 + l]`. Inlined into its callers, so that it compiles to their CPU features
/// (one load and four broadcast multiply-adds per tap and vector).
#[inline(always)]
pub(crate) fn sum_taps<const L: usize>(
    x: &[f32],
    at: &[usize],
    w: &[[f32; 4]],
    bias: [f32; 4],
    j0: usize,
) -> [[f32; L]; 4] {
    let mut acc = bias.map(|b| [b; L]);
    for (&t, wt) in at.iter().zip(w) {
        let src: &[f32; L] = x[t + j0..][..L].try_into().unwrap();
        for (a, &wc) in acc.iter_mut().zip(wt) {
            for (d, &v) in a.iter_mut().zip(src) {
                *d = wc.mul_add(v, *d);
            }
        }
    }
    acc
}

/// The per-channel values (weights of one tap, or biases) of a block of `n ≤ 4` output
/// channels: `value(j)` for `j < n`, zero for the channels past the block's end.
pub(crate) fn four(n: usize, value: impl Fn(usize) -> f32) -> [f32; 4] {
    std::array::from_fn(|j| if j < n { value(j) } else { 0.0 })
}

/// Whether two float slices hold the same bits (what the ops' `Hash` sees).
pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Hash a float slice by its bits.
pub(crate) fn hash_bits<H: std::hash::Hasher>(v: &[f32], state: &mut H) {
    use std::hash::Hash;
    v.len().hash(state);
    v.iter().for_each(|x| x.to_bits().hash(state));
}
