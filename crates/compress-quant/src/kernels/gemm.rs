//! Exact int8 GEMM: `C[m, n] (i32) = A[m, k] x B[k, n]` with B (the weights) `i8` and A either
//! `i8` ([`gemm_i8`]) or `u8` ([`gemm_u8i8`]).
//!
//! B is packed once ([`PackedB`]) into panels of [`NR`] columns; within a panel, each group of
//! four consecutive `k` (a *quad*) stores the four bytes of every column side by side, so that
//! one 64-byte load feeds `vpdpbusd` 16 columns x 4 `k` and the four A bytes of a quad are one
//! broadcast `i32`. `vpdpbusd` multiplies unsigned by signed bytes: signed activations are
//! shifted by +128 (`a ^ 0x80`) and `128 x` the column sums of B, stored with the packing, are
//! subtracted at the end. The products `(a + 128) b` are at most `255 x 128` in magnitude and
//! the `i32` sums wrap (`vpdpbusd`, not `vpdpbusds`), so the result is exact modulo `2^32`,
//! hence exact whenever the true `A B` fits `i32`: always for `k <= 131_071`.
//!
//! Blocking: rows run in blocks whose A (over all of `k`) fits [`A_BLOCK_BYTES`] of L2; for
//! each row block and panel, `k` runs in blocks of [`KC_QUADS`] quads (the panel's block,
//! 24 KiB, stays in L1 while the row tiles pass) and the panel's strip of C stays in cache
//! across them. The micro-kernels are in `micro.rs`.

use super::epilogue::{Dequant, Out, OutLayout};
pub use super::micro::{MR, NR};
use super::micro::{QUAD_BYTES, Tile, TileOut, tile_portable};

/// Quads of `k` per cache block (512 values of `k`).
const KC_QUADS: usize = 128;
/// Bytes of A per row block (kept in L2 across all panels).
const A_BLOCK_BYTES: usize = 384 << 10;
/// Most rows per row block.
const MC_MAX: usize = 1024;

/// B packed for [`gemm_i8`] / [`gemm_u8i8`]: `ceil(n / NR)` panels of `ceil(k / 4)` quads,
/// zero-padded, and the column sums of B.
///
/// ```
/// use compress_quant::kernels::{PackedB, gemm_i8};
/// // W is [n = 2, k = 3] (a Linear weight [out, in]); C = A W^T.
/// let w: Vec<i8> = vec![1, 2, 3, -1, 0, 1];
/// let b = PackedB::from_nk(&w, 2, 3);
/// let a: Vec<i8> = vec![1, 1, 1, 2, 0, -1];
/// let mut c = vec![0i32; 4];
/// gemm_i8(&a, 2, &b, &mut c);
/// assert_eq!(c, vec![6, 0, -1, -3]);
/// assert_eq!(b.to_nk(), w);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedB {
    n: usize,
    k: usize,
    quads: usize,
    data: Vec<i8>,
    col_sums: Vec<i32>,
}

impl PackedB {
    /// Packs `w` given as `[n, k]` row-major (the layout of a Linear weight `[out, in]`),
    /// so that the GEMM computes `A W^T`.
    ///
    /// # Panics
    ///
    /// If `w.len() != n * k`.
    #[track_caller]
    pub fn from_nk(w: &[i8], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight length must be n * k");
        let mut p = Self::empty(n, k);
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (panel, jj) = (j / NR, j % NR);
            let base = panel * p.quads * QUAD_BYTES + 4 * jj;
            for (kk, &v) in row.iter().enumerate() {
                p.data[base + (kk / 4) * QUAD_BYTES + kk % 4] = v;
            }
            p.col_sums[j] = row.iter().map(|&v| i32::from(v)).sum();
        }
        p
    }

    /// Packs `b` given as `[k, n]` row-major (a plain right-hand matrix).
    ///
    /// # Panics
    ///
    /// If `b.len() != k * n`.
    #[track_caller]
    pub fn from_kn(b: &[i8], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "matrix length must be k * n");
        let mut p = Self::empty(n, k);
        for (kk, row) in b.chunks_exact(n.max(1)).enumerate().take(k) {
            let off = (kk / 4) * QUAD_BYTES + kk % 4;
            for (j, &v) in row.iter().enumerate() {
                p.data[(j / NR) * p.quads * QUAD_BYTES + off + 4 * (j % NR)] = v;
                p.col_sums[j] += i32::from(v);
            }
        }
        p
    }

    fn empty(n: usize, k: usize) -> Self {
        let quads = k.div_ceil(4);
        Self {
            n,
            k,
            quads,
            data: vec![0; n.div_ceil(NR) * quads * QUAD_BYTES],
            col_sums: vec![0; n],
        }
    }

    /// The packed matrix back in `[n, k]` row-major order (the Linear weight layout).
    pub fn to_nk(&self) -> Vec<i8> {
        let mut w = vec![0i8; self.n * self.k];
        for (j, row) in w.chunks_exact_mut(self.k.max(1)).enumerate().take(self.n) {
            let base = (j / NR) * self.quads * QUAD_BYTES + 4 * (j % NR);
            for (kk, v) in row.iter_mut().enumerate() {
                *v = self.data[base + (kk / 4) * QUAD_BYTES + kk % 4];
            }
        }
        w
    }

    /// Number of columns `n` (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension `k` (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The row stride a `u8` A needs for [`gemm_u8i8`]: `k` rounded up to a multiple of 4.
    pub fn lda(&self) -> usize {
        4 * self.quads
    }

    /// Sum of each column of B (for zero-point corrections).
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes of packed storage (padding included) and column sums.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 4 * self.col_sums.len()
    }
}

/// The name of the micro-kernel [`gemm_i8`] uses on this CPU: `"avx512-vnni"`, `"avx-vnni"`,
/// `"avx2"` or `"portable"`.
pub fn gemm_i8_kernel() -> &'static str {
    match GemmKernel::best() {
        GemmKernel::Portable => "portable",
        GemmKernel::Avx2 => "avx2",
        GemmKernel::AvxVnni => "avx-vnni",
        GemmKernel::Avx512Vnni => "avx512-vnni",
    }
}

fn tile(kernel: GemmKernel, t: Tile<'_>) {
    match kernel {
        GemmKernel::Portable => tile_portable(t),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only run after a runtime AVX2 check (`is_available`).
        GemmKernel::Avx2 => unsafe { super::micro::tile_avx2(t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `AvxVnni` is only run after runtime AVX2 and AVX-VNNI checks.
        GemmKernel::AvxVnni => unsafe { super::micro::tile_avxvnni(t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512Vnni` is only run after runtime AVX-512F/BW/VNNI checks.
        GemmKernel::Avx512Vnni => unsafe { super::micro::tile_avx512(t) },
        // Never available off x86-64.
        #[cfg(not(target_arch = "x86_64"))]
        _ => tile_portable(t),
    }
}

/// Where [`run_u8`] puts the product.
pub(crate) enum Sink<'a> {
    /// The `i32` product into `c` `[m, ldc]` (overwritten).
    I32 {
        /// The output.
        c: &'a mut [i32],
        /// Its row stride.
        ldc: usize,
    },
    /// The product dequantized into `out` by the epilogue; `partial` is scratch for the
    /// partial sums of one row block when `k` spans several cache blocks.
    F32 {
        /// Factors and layout (rows counted from this call's row 0).
        dq: Dequant<'a>,
        /// The output.
        out: &'a mut [Out],
        /// Scratch for partial sums (grown as needed).
        partial: &'a mut Vec<i32>,
    },
}

/// `a b` over rows `0..m`, `a` `u8` `[m, lda]`, into `sink`.
pub(crate) fn run_u8(
    path: GemmKernel,
    a: &[u8],
    lda: usize,
    m: usize,
    b: &PackedB,
    sink: Sink<'_>,
) {
    let (n, quads) = (b.n, b.quads);
    if m == 0 || n == 0 {
        return;
    }
    let (c, ldc, mut f32_out) = match sink {
        Sink::I32 { c, ldc } => (c, ldc, None),
        Sink::F32 { dq, out, partial } => {
            dq.check(m, n, out);
            (&mut [][..], n, Some((dq, out, partial)))
        }
    };
    // Rows per block: the block of A over the whole of `k` stays in L2 while every panel
    // passes, and each panel's column strip of C stays in cache across the `k` blocks.
    let mc = ((A_BLOCK_BYTES / lda.max(1)) / MR * MR).clamp(MR, MC_MAX);
    if let Some((_, _, partial)) = &mut f32_out
        && quads > KC_QUADS
        && partial.len() < mc.min(m) * n
    {
        partial.resize(mc.min(m) * n, 0);
    }
    let panels = n.div_ceil(NR);
    let zero_quad = [0i8; QUAD_BYTES];
    for m0 in (0..m).step_by(mc) {
        let m1 = (m0 + mc).min(m);
        for p in 0..panels {
            let cols = NR.min(n - p * NR);
            // `k = 0` still needs one (empty) block to store zeros or run the epilogue.
            for k0 in (0..quads.max(1)).step_by(KC_QUADS) {
                let kc = KC_QUADS.min(quads - k0.min(quads));
                let last = k0 + KC_QUADS >= quads;
                let start = (p * quads + k0) * QUAD_BYTES;
                let bs = if kc == 0 {
                    &zero_quad[..]
                } else {
                    &b.data[start..start + kc * QUAD_BYTES]
                };
                for r0 in (m0..m1).step_by(MR) {
                    let rows = MR.min(m1 - r0);
                    let (cs, out) = match &mut f32_out {
                        None => (&mut c[r0 * ldc + p * NR..], None),
                        Some((dq, out, partial)) => {
                            let cs = if quads > KC_QUADS {
                                &mut partial[(r0 - m0) * n + p * NR..]
                            } else {
                                &mut [][..]
                            };
                            let out = last.then(|| TileOut {
                                dq,
                                out,
                                row0: r0,
                                col0: p * NR,
                            });
                            (cs, out)
                        }
                    };
                    tile(
                        path,
                        Tile {
                            a: &a[r0 * lda + 4 * k0.min(quads)..],
                            lda,
                            rows,
                            b: bs,
                            quads: kc,
                            c: cs,
                            ldc,
                            cols,
                            accumulate: k0 > 0,
                            out,
                        },
                    );
                }
            }
        }
    }
}

/// `C = A B` in wrapping `i32` arithmetic with `A` unsigned: `a` is `[m, lda]` row-major `u8`
/// (`lda >= b.lda()`; the bytes of each row beyond `k` are ignored), `c` is `[m, n]`
/// row-major (overwritten). For a zero point `z`, `sum_k (a - z) b = C - z * col_sums`.
///
/// ```
/// use compress_quant::kernels::{PackedB, gemm_u8i8};
/// let b = PackedB::from_nk(&[1, -2, 3], 1, 3); // one column
/// let a = [200u8, 100, 0, 0]; // one row, k = 3, lda = 4
/// let mut c = [0i32; 1];
/// gemm_u8i8(&a, 4, 1, &b, &mut c);
/// assert_eq!(c, [0]);
/// ```
///
/// # Panics
///
/// If `lda < b.lda()`, `a.len() < m * lda` or `c.len() != m * n`.
#[track_caller]
pub fn gemm_u8i8(a: &[u8], lda: usize, m: usize, b: &PackedB, c: &mut [i32]) {
    check_u8(a, lda, m, b, c);
    run_u8(GemmKernel::best(), a, lda, m, b, Sink::I32 { c, ldc: b.n });
}

#[track_caller]
fn check_u8(a: &[u8], lda: usize, m: usize, b: &PackedB, c: &[i32]) {
    assert!(lda >= b.lda(), "lda {lda} must be at least {}", b.lda());
    assert!(a.len() >= m * lda, "A must hold m * lda bytes");
    assert_eq!(c.len(), m * b.n, "C must be m * n");
}

/// An output the epilogue writes: initialised `f32`s, or spare capacity.
pub(crate) trait EpilogueOut {
    /// The output seen as epilogue output (which writes initialised values and never
    /// `MaybeUninit::uninit()`).
    fn as_out(&mut self) -> &mut [Out];
}

impl EpilogueOut for [f32] {
    fn as_out(&mut self) -> &mut [Out] {
        // SAFETY: `[f32]` and `[MaybeUninit<f32>]` have the same layout; the view only
        // reaches the epilogue, which writes initialised values, so `self` stays initialised.
        unsafe { &mut *(std::ptr::from_mut::<[f32]>(self) as *mut [Out]) }
    }
}

impl EpilogueOut for [Out] {
    fn as_out(&mut self) -> &mut [Out] {
        self
    }
}

/// [`gemm_u8i8_dequant_par`] into a new `Vec` (`[m, n]` row-major, `dq.layout` must be
/// [`OutLayout::RowMajor`]), never zero-filled first.
pub(crate) fn gemm_u8i8_dequant_vec(
    a: &[u8],
    lda: usize,
    m: usize,
    b: &PackedB,
    dq: Dequant<'_>,
    partial: &mut Vec<i32>,
) -> Vec<f32> {
    assert_eq!(dq.layout, OutLayout::RowMajor, "a new output is row-major");
    let len = m * b.n;
    let mut y = Vec::with_capacity(len);
    gemm_u8i8_dequant_par(
        a,
        lda,
        m,
        b,
        dq,
        &mut y.spare_capacity_mut()[..len],
        partial,
    );
    // SAFETY: in the row-major layout the epilogue wrote every `(row, column)` of the
    // `[m, n]` product, i.e. all `len` elements (the capacity is at least `len`).
    unsafe { y.set_len(len) };
    y
}

/// `a b` dequantized by `dq` into `out` (see [`super::epilogue`]), over row blocks in
/// parallel when rayon has more than one thread and the work is large enough. `partial` is
/// scratch reused across calls.
pub(crate) fn gemm_u8i8_dequant_par<O: EpilogueOut + ?Sized>(
    a: &[u8],
    lda: usize,
    m: usize,
    b: &PackedB,
    dq: Dequant<'_>,
    out: &mut O,
    partial: &mut Vec<i32>,
) {
    use rayon::prelude::*;
    let out = out.as_out();
    assert!(lda >= b.lda(), "lda {lda} must be at least {}", b.lda());
    assert!(a.len() >= m * lda, "A must hold m * lda bytes");
    let path = GemmKernel::best();
    let threads = rayon::current_num_threads();
    if threads < 2 || m < 2 * MR || m * b.n * b.k < (1 << 22) {
        run_u8(path, a, lda, m, b, Sink::F32 { dq, out, partial });
        return;
    }
    // Rows per chunk, and the output values each chunk owns.
    let (rows, out_per_row) = match dq.layout {
        OutLayout::RowMajor => (m.div_ceil(threads).div_ceil(MR) * MR, b.n),
        OutLayout::Nchw {
            positions,
            channels,
            ..
        } => (
            m.div_ceil(threads).div_ceil(positions) * positions,
            channels,
        ),
    };
    dq.check(m, b.n, out);
    out.par_chunks_mut(rows * out_per_row)
        .zip(a.par_chunks(rows * lda))
        .enumerate()
        .for_each(|(i, (oc, ac))| {
            let r0 = i * rows;
            let m = rows.min(m.saturating_sub(r0));
            let dq = Dequant {
                row_scales: &dq.row_scales[r0..],
                row_zps: &dq.row_zps[r0..],
                ..dq
            };
            let mut partial = Vec::new();
            let sink = Sink::F32 {
                dq,
                out: oc,
                partial: &mut partial,
            };
            run_u8(path, ac, lda, m, b, sink);
        });
}

fn run(a: &[i8], m: usize, b: &PackedB, c: &mut [i32], path: GemmKernel) {
    let (n, k) = (b.n, b.k);
    assert_eq!(a.len(), m * k, "A must be m * k");
    assert_eq!(c.len(), m * n, "C must be m * n");
    let lda = b.lda();
    let mut au = vec![0u8; m * lda];
    for (dst, src) in au
        .chunks_exact_mut(lda.max(1))
        .zip(a.chunks_exact(k.max(1)))
    {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s as u8) ^ 0x80;
        }
    }
    run_u8(path, &au, lda, m, b, Sink::I32 { c, ldc: n });
    for row in c.chunks_exact_mut(n.max(1)) {
        for (v, &s) in row.iter_mut().zip(&b.col_sums) {
            *v = v.wrapping_sub(s.wrapping_mul(128));
        }
    }
}

/// `C = A B` with `A` `[m, k]` row-major `i8`, `B` packed, `C` `[m, n]` row-major
/// (overwritten). Uses the widest kernel the CPU has (see [`gemm_i8_kernel`]); all give
/// identical results.
///
/// # Panics
///
/// If `a.len() != m * k` or `c.len() != m * n`.
#[track_caller]
pub fn gemm_i8(a: &[i8], m: usize, b: &PackedB, c: &mut [i32]) {
    run(a, m, b, c, GemmKernel::best());
}

/// A micro-kernel choice for [`gemm_i8_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GemmKernel {
    /// Scalar Rust.
    Portable,
    /// AVX2: `vpdpbusd` emulated exactly with `vpmaddwd` on widened bytes.
    Avx2,
    /// AVX-VNNI `vpdpbusd` on `ymm`.
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd` on `zmm`.
    Avx512Vnni,
}

impl GemmKernel {
    /// Whether the running CPU supports this kernel.
    pub fn is_available(self) -> bool {
        use compress_core::{CpuFeature, Isa};
        match self {
            Self::Portable => true,
            Self::Avx2 => Isa::detected() >= Isa::Avx2,
            Self::AvxVnni => CpuFeature::AvxVnni.detected(),
            Self::Avx512Vnni => CpuFeature::Avx512Vnni.detected(),
        }
    }

    /// The fastest kernel this CPU supports under the `NETCOMPRESS_ISA` cap.
    pub(crate) fn best() -> Self {
        use compress_core::Isa;
        if Isa::Avx512.enabled() && Self::Avx512Vnni.is_available() {
            Self::Avx512Vnni
        } else if Isa::uncapped() && Self::AvxVnni.is_available() {
            Self::AvxVnni
        } else if Isa::Avx2.enabled() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }
}

/// [`gemm_i8`] with an explicit micro-kernel (for benchmarks and tests); every kernel gives
/// the same bits.
///
/// # Errors
///
/// An invalid-config error if the CPU does not support `kernel`.
///
/// # Panics
///
/// As [`gemm_i8`].
#[track_caller]
pub fn gemm_i8_with(
    kernel: GemmKernel,
    a: &[i8],
    m: usize,
    b: &PackedB,
    c: &mut [i32],
) -> Result<(), crate::QuantError> {
    if !kernel.is_available() {
        return Err(compress_core::CoreError::config(
            "kernel",
            format!("{kernel:?} is not supported by this CPU"),
        )
        .into());
    }
    run(a, m, b, c, kernel);
    Ok(())
}

/// The portable twin of [`gemm_i8`] (scalar Rust, no `unsafe`).
///
/// # Panics
///
/// As [`gemm_i8`].
#[track_caller]
pub fn gemm_i8_portable(a: &[i8], m: usize, b: &PackedB, c: &mut [i32]) {
    run(a, m, b, c, GemmKernel::Portable);
}

#[cfg(test)]
mod tests;
