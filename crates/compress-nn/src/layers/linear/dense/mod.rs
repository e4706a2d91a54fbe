//! Hot loop of [`super::Linear`]'s eval path: `y = x W^T + b` for a weight packed once
//! (see [`pack`]), so no per-call packing or transposition is needed, whatever the number
//! of rows.
//!
//! # Layout
//!
//! `W^T` (`[k, np]`, `np` = `n` rounded up to a multiple of [`PAD`], zero-padded) is cut
//! into column panels of [`PANEL`] columns (the last one `np - j0` wide, a multiple of
//! [`PAD`]); the panel starting at column `j0`, `w` wide, is stored row-major `[k, w]` at
//! `wt[j0 * k..(j0 + w) * k]`. A register tile thus reads its weights for consecutive
//! `p` from one contiguous stream instead of one cache line per row of a `[k, np]` matrix
//! (up to 6 KB apart, a new page for almost every `p`).
//!
//! # Kernels and exactness
//!
//! The x86-64 paths hold a tile of rows by 16 to [`PANEL`] columns (AVX-512) or 16
//! (AVX2) in registers and, for each `p`, broadcast `x[i, p]` and fuse-multiply-add it with
//! a row of the panel. The AVX-512 path blocks the inner dimension (a block of the panel
//! stays in L1 while every row tile of a block of rows uses it) and carries the partial
//! sums of a tile through `y` between blocks. Every output is the same chain as in the
//! portable [`dense_scalar`]: `acc = 0; acc = fma(x[i, p], Wt[p, j], acc)` for
//! `p = 0..k`, then `y = acc + b[j]` (no add without bias), so all paths agree bit for bit
//! (tested) and a row's result does not depend on the other rows of its batch.
#![allow(unsafe_code)]

use compress_core::Float;

/// Dispatches a runtime row count `1..=MAX` to a const-generic tile.
macro_rules! by_rows {
    ($rows:expr, $tile:ident, $nv:literal, $args:tt, [$($r:literal),*]) => {
        match $rows {
            $($r => $tile::<$r, $nv> $args,)*
            _ => unreachable!("row count out of the tile range"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Column padding of the transposed weight (one AVX-512 vector of `f32`).
pub(crate) const PAD: usize = 16;

/// Width of the column panels of the packed weight (two AVX-512 vectors).
pub(crate) const PANEL: usize = 32;

/// `n` rounded up to a multiple of [`PAD`].
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(PAD) * PAD
}

/// The panels of a packed weight with `np` padded columns: `(j0, width)` pairs.
fn panels(np: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..np)
        .step_by(PANEL)
        .map(move |j0| (j0, (np - j0).min(PANEL)))
}

/// Packs `W^T` for [`dense_new`]: `w(p, j)` is the weight of input `p` in output `j`
/// (`W[j, p]`), for `p < k`, `j < n`. The result has `k * padded(n)` elements, in the
/// layout of the module docs, zero in the padding columns.
pub(crate) fn pack(k: usize, n: usize, w: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let np = padded(n);
    let mut wt = vec![0.0f32; k * np];
    for (j0, width) in panels(np) {
        let panel = &mut wt[j0 * k..(j0 + width) * k];
        let cols = width.min(n - j0);
        for (p, row) in panel.chunks_exact_mut(width).enumerate() {
            for (jj, v) in row[..cols].iter_mut().enumerate() {
                *v = w(p, j0 + jj);
            }
        }
    }
    wt
}

/// Which implementation of [`dense`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// The portable reference (the path on aarch64, where FMA is part of the base ISA).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    Scalar,
    /// AVX2 + FMA, 6 x 16 tiles.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F, 8 x 32 tiles.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// The fastest SIMD path of this CPU; `None` when it has no vector FMA (the portable
    /// loop would be slower than the layers' own GEMM there).
    pub(crate) fn best() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            // The level `NETCOMPRESS_ISA` allows, within what the CPU has.
            if compress_core::Isa::Avx512.enabled() {
                return Some(Self::Avx512);
            }
            if compress_core::Isa::Avx2.enabled() {
                return Some(Self::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        return Some(Self::Scalar);
        #[allow(unreachable_code)]
        None
    }

    /// Whether this CPU can run the path.
    pub(crate) fn available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => compress_core::Isa::detected() >= compress_core::Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => compress_core::Isa::detected() >= compress_core::Isa::Avx512,
        }
    }
}

/// Checks the slice lengths of a product of `m = x.len() / k` rows writing `y_len`
/// outputs; returns `m`.
///
/// # Panics
///
/// When the lengths do not fit (callers build them from one validated layer).
#[track_caller]
fn rows_of(x: &[f32], k: usize, wt: &[f32], n: usize, bias: Option<&[f32]>, y_len: usize) -> usize {
    assert!(k > 0 && x.len().is_multiple_of(k), "x is not [m, {k}]");
    let m = x.len() / k;
    assert_eq!(wt.len(), k * padded(n), "Wt is not [{k}, {}]", padded(n));
    assert!(
        bias.is_none_or(|b| b.len() == padded(n)),
        "bias is not padded"
    );
    assert_eq!(y_len, m * n, "y is not [{m}, {n}]");
    m
}

/// The portable reference: `y[m, n] = x[m, k] Wt[k, n_pad] (+ b)`, `x` and `y`
/// row-major, `Wt` packed (see [`pack`]).
///
/// # Panics
///
/// When `x` is not a whole number of rows of `k`, `wt` is not `k * padded(n)`, `bias` (if
/// any) is not `padded(n)` long or `y` is not `m * n`.
pub(crate) fn dense_scalar(
    x: &[f32],
    k: usize,
    wt: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    rows_of(x, k, wt, n, bias, y.len());
    let np = padded(n);
    // Row by row, with the output row as the accumulators (the chain of each element is
    // still `p = 0..k` in order; this order streams a panel and vectorizes where FMA is
    // native). `j0 < n` for every panel: `np - n < PAD` and `j0` is a multiple of `PAD`.
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
        yr.fill(0.0);
        for (j0, width) in panels(np) {
            let panel = &wt[j0 * k..(j0 + width) * k];
            let cols = width.min(n - j0);
            let yc = &mut yr[j0..j0 + cols];
            for (&xv, row) in xr.iter().zip(panel.chunks_exact(width)) {
                for (acc, &w) in yc.iter_mut().zip(&row[..cols]) {
                    *acc = xv.mul_add(w, *acc);
                }
            }
        }
        if let Some(b) = bias {
            for (acc, &bv) in yr.iter_mut().zip(b) {
                *acc += bv;
            }
        }
    }
}

/// The product on `path` into a new vector, written once (the SIMD paths store every
/// output, so the buffer is not zero-filled first). `None` unless `F` is `f32`.
///
/// # Panics
///
/// As [`dense_scalar`], and when `path` is not available on this CPU.
pub(crate) fn dense_new<F: Float>(
    path: Path,
    x: &[f32],
    k: usize,
    wt: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Option<Vec<F>> {
    if !F::IS_F32 {
        return None;
    }
    assert!(path.available(), "{path:?} is not available on this CPU");
    let m = rows_of(x, k, wt, n, bias, x.len() / k.max(1) * n);
    let len = m * n;
    let mut y: Vec<F> = Vec::with_capacity(len);
    if path == Path::Scalar {
        y.resize(len, F::zero());
        dense_scalar(x, k, wt, n, bias, F::as_f32_slice_mut(&mut y)?);
        return Some(y);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let kernel: unsafe fn(Args, usize) = if path == Path::Avx2 {
            avx2::dense
        } else {
            avx512::dense
        };
        by_row_blocks(
            x,
            m,
            k,
            n,
            &mut y.spare_capacity_mut()[..len],
            |xb, rows, yb| {
                // SAFETY: `F` is `f32`, so `yb` points to `rows * n` (uninitialised) `f32`s
                // of the capacity; the CPU has the path's instructions (asserted above),
                // the lengths were checked by `rows_of`, and the kernel writes every one of
                // those outputs.
                unsafe { kernel(Args::new(xb, k, wt, n, bias, yb), rows) }
            },
        );
        // SAFETY: every block of the `len` elements was written above.
        unsafe { y.set_len(len) };
    }
    Some(y)
}

/// Pointers and sizes shared by every tile of one product on a SIMD path: `x` `[m, k]`,
/// the packed `Wt` of `n` outputs, the padded bias and `y` `[m, n]`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Args {
    x: *const f32,
    k: usize,
    wt: *const f32,
    bias: Option<*const f32>,
    y: *mut f32,
    n: usize,
}

#[cfg(target_arch = "x86_64")]
impl Args {
    fn new(x: &[f32], k: usize, wt: &[f32], n: usize, bias: Option<&[f32]>, y: *mut f32) -> Self {
        Self {
            x: x.as_ptr(),
            k,
            wt: wt.as_ptr(),
            bias: bias.map(<[f32]>::as_ptr),
            y,
            n,
        }
    }
}

/// Products of at least this many multiply-adds are split into row blocks across the
/// rayon pool (as `crate::gemm` does).
const PAR_MIN_MACS: usize = 1 << 21;

/// Runs `kernel(x_block, rows, y_block)` over blocks of rows of `x` (`[m, k]`) and `y`
/// (`[m, n]`), in parallel on the current rayon pool when the product is large. Rows are
/// independent and each is computed the same way in any block, so the result does not
/// depend on the split.
#[cfg(target_arch = "x86_64")]
fn by_row_blocks<F: Float>(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    y: &mut [std::mem::MaybeUninit<F>],
    kernel: impl Fn(&[f32], usize, *mut f32) + Sync,
) {
    use rayon::prelude::*;

    let threads = rayon::current_num_threads();
    if threads < 2 || m * n * k < PAR_MIN_MACS || m < 16 || n == 0 {
        kernel(x, m, y.as_mut_ptr().cast());
        return;
    }
    let rows = m.div_ceil(threads).next_multiple_of(8);
    y.par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * k))
        .for_each(|(yb, xb)| kernel(xb, xb.len() / k, yb.as_mut_ptr().cast()));
}

#[cfg(test)]
mod tests {
    use super::{Path, dense_new, dense_scalar, pack, padded};
    use proptest::prelude::*;

    /// A random product: `(x, k, w, n, bias)`, `w` the unpacked `[k, n]` weight `W^T`.
    fn product() -> impl Strategy<Value = (Vec<f32>, usize, Vec<f32>, usize, Option<Vec<f32>>)> {
        (0usize..20, 1usize..40, 1usize..70, any::<bool>()).prop_flat_map(|(m, k, n, b)| {
            let val = prop_oneof![
                8 => -4.0f32..4.0,
                1 => Just(0.0f32),
                1 => Just(-0.0f32),
                1 => prop::sample::select(vec![f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e-30]),
            ];
            (
                prop::collection::vec(val.clone(), m * k),
                Just(k),
                prop::collection::vec(-2.0f32..2.0, k * n),
                Just(n),
                prop::collection::vec(-1.0f32..1.0, n),
                Just(b),
            )
                .prop_map(move |(x, k, w, n, bias, b)| (x, k, w, n, b.then_some(bias)))
        })
    }

    /// The bias padded with zeros to `padded(n)`.
    fn padded_bias(bias: Option<&Vec<f32>>, n: usize) -> Option<Vec<f32>> {
        bias.map(|b| {
            let mut v = b.clone();
            v.resize(padded(n), 0.0);
            v
        })
    }

    /// Every available path against the scalar twin, bit for bit, and the scalar twin
    /// against the fused chain of the definition.
    fn check_paths(x: &[f32], k: usize, w: &[f32], n: usize, bias: Option<&Vec<f32>>) {
        let m = x.len() / k;
        let wt = pack(k, n, |p, j| w[p * n + j]);
        let bias = padded_bias(bias, n);
        let mut want = vec![f32::NAN; m * n];
        dense_scalar(x, k, &wt, n, bias.as_deref(), &mut want);
        #[cfg(target_arch = "x86_64")]
        for path in [Path::Avx2, Path::Avx512] {
            if !path.available() {
                continue;
            }
            let got: Vec<f32> = dense_new(path, x, k, &wt, n, bias.as_deref()).unwrap();
            let same = want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{path:?} differs from the scalar twin on {m}x{k}x{n}");
        }
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc = x[i * k + p].mul_add(w[p * n + j], acc);
                }
                let v = bias.as_ref().map_or(acc, |b| acc + b[j]);
                assert_eq!(v.to_bits(), want[i * n + j].to_bits(), "[{i}, {j}]");
            }
        }
    }

    proptest! {
        #[test]
        fn simd_paths_equal_the_scalar_twin_bit_for_bit((x, k, w, n, bias) in product()) {
            check_paths(&x, k, &w, n, bias.as_ref());
        }

        #[test]
        fn a_row_does_not_depend_on_its_batch((x, k, w, n, bias) in product()) {
            let m = x.len() / k;
            let Some(path) = Path::best() else { return Ok(()) };
            let wt = pack(k, n, |p, j| w[p * n + j]);
            let bias = padded_bias(bias.as_ref(), n);
            let all: Vec<f32> = dense_new(path, &x, k, &wt, n, bias.as_deref()).unwrap();
            for i in 0..m {
                let one: Vec<f32> =
                    dense_new(path, &x[i * k..(i + 1) * k], k, &wt, n, bias.as_deref()).unwrap();
                let same = one.iter().zip(&all[i * n..(i + 1) * n]).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same);
            }
        }
    }

    #[test]
    fn blocked_products_keep_one_chain_per_output() {
        // More rows than a row block and more inputs than an inner block of the AVX-512
        // path (partial sums carried through `y`), an edge panel and a partial row tile.
        let (m, k, n) = (300, 700, 50);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 251) as f32 / 64.0 - 2.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 257) as f32 / 128.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
        check_paths(&x, k, &w, n, Some(&bias));
        check_paths(&x[..5 * k], k, &w, n, None);
    }
}
