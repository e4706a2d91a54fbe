//! The AVX-512 path of [`super::dense_new`]: `8 x 32` register tiles (16 columns wide at
//! the right edge) over blocks of at most [`KC`] inputs and [`MC`] rows.
//!
//! Loop order: blocks of rows, blocks of the inner dimension, panels, row tiles. The block
//! of a panel the tiles read (at most `384 x 32` floats, 48 KB, one contiguous stream in
//! the packed layout) is reused by every row tile of the row block from L1/L2, and the row
//! block of `x` stays in L2 across the panels. A tile starts from zero in the first inner
//! block and from its partial sums, read back from `y`, in the others, so each output is
//! one unbroken FMA chain.
//!
//! The weights of a transformer (tens of MB) do not stay in cache from one forward to the
//! next, and a block streamed from memory only when its first tile needs it stalls that
//! tile: each tile therefore prefetches into L2 its share of the block the next step
//! reads (one cache line per row of its own loop), so the weights arrive while the
//! current block computes. On MiniLM's six products per layer (128 rows, 42 MB of weights
//! over six layers, one Zen 5 core) this and the packed layout took the products from
//! 13.4 ms to 10.7 ms per forward (CPU time).

use std::arch::x86_64::{
    __m512, _MM_HINT_T1, _mm_prefetch, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

use super::{Args, padded, panels};

/// Rows per register tile (12 measured the same on MiniLM's shapes; 8 divides the usual
/// row counts).
const MR: usize = 8;
/// Inputs per block of the inner dimension (the blocks are equal: 1536 inputs make four of
/// 384; 192 was slower, as it stores and reloads partial sums twice as often).
const KC: usize = 384;
/// Rows per row block.
const MC: usize = 256;

/// The inner-dimension block of a tile: inputs `k0..k1`, whether it is the first (start
/// from zero) and the last (add the bias).
#[derive(Clone, Copy)]
struct KBlock {
    k0: usize,
    k1: usize,
    first: bool,
    last: bool,
}

/// Cache lines a tile prefetches into L2: `lines` lines from `start`, a share of the
/// weight block the next (block, panel) step reads, so that block streams from memory
/// while this one computes.
#[derive(Clone, Copy)]
struct Prefetch {
    start: *const f32,
    lines: usize,
}

/// `y = x Wt (+ b)` for a packed `Wt` (see the parent module).
///
/// # Safety
///
/// AVX-512F must be available; `a.x` holds `m * k`, `a.wt` `k * padded(n)` and `a.bias`
/// (if any) `padded(n)` elements, and `a.y` is valid for writes of `m * n` (every one of which
/// is written, so `y` may start uninitialised; partial sums are written before they are
/// read back).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dense(a: Args, m: usize) {
    let (k, n) = (a.k, a.n);
    // Equal inner blocks of at most KC.
    let kblocks = k.div_ceil(KC).max(1);
    let kc = k.div_ceil(kblocks);
    let np = padded(n);
    // The (inner block, panel) steps in order, with the offset and length of the weight
    // block each reads.
    let steps: Vec<(KBlock, usize, usize)> = (0..k)
        .step_by(kc)
        .flat_map(|k0| {
            let kb = KBlock {
                k0,
                k1: (k0 + kc).min(k),
                first: k0 == 0,
                last: k0 + kc >= k,
            };
            panels(np).map(move |(j0, width)| (kb, j0, width))
        })
        .collect();
    for ib in (0..m).step_by(MC) {
        let iend = (ib + MC).min(m);
        let tiles = (iend - ib).div_ceil(MR);
        for (s, &(kb, j0, width)) in steps.iter().enumerate() {
            // The block the next step reads (the first one again for the next row block),
            // split evenly over this step's tiles.
            let (nkb, nj0, nwidth) = steps[(s + 1) % steps.len()];
            let next = a.wt.wrapping_add(nj0 * a.k + nkb.k0 * nwidth);
            let next_lines = ((nkb.k1 - nkb.k0) * nwidth).div_ceil(16);
            let mut i0 = ib;
            let mut t = 0;
            while i0 < iend {
                let rows = (iend - i0).min(MR);
                let (l0, l1) = (next_lines * t / tiles, next_lines * (t + 1) / tiles);
                let pf = Prefetch {
                    start: next.wrapping_add(16 * l0),
                    lines: l1 - l0,
                };
                // SAFETY: `i0 + rows <= m`, `j0 + width <= padded(n)` and
                // `kb.k1 <= k`, the bounds `tile` needs, with the caller's lengths;
                // blocks after the first read partial sums the first one wrote.
                unsafe {
                    if width == 32 {
                        by_rows!(rows, tile, 2, (a, i0, j0, kb, pf), [1, 2, 3, 4, 5, 6, 7, 8]);
                    } else {
                        by_rows!(rows, tile, 1, (a, i0, j0, kb, pf), [1, 2, 3, 4, 5, 6, 7, 8]);
                    }
                }
                i0 += rows;
                t += 1;
            }
        }
    }
}

/// The store mask of the 16 columns from `col` (`col < n`).
#[inline(always)]
fn mask(col: usize, n: usize) -> u16 {
    if col + 16 <= n {
        u16::MAX
    } else {
        (1u16 << (n - col)) - 1
    }
}

/// Rows `i0..i0 + R`, columns `j0..j0 + 16 NV` (the whole panel at `j0`, stores clipped
/// to `n`), inputs `kb.k0..kb.k1`.
///
/// # Safety
///
/// As [`dense`], with `i0 + R <= m`, a panel of width `16 NV` at `j0` and
/// `kb.k1 <= k`; unless `kb.first`, the tile's outputs hold its partial sums.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const NV: usize>(
    a: Args,
    i0: usize,
    j0: usize,
    kb: KBlock,
    pf: Prefetch,
) {
    let width = 16 * NV;
    let mut acc: [[__m512; NV]; R] = [[_mm512_setzero_ps(); NV]; R];
    if !kb.first {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for (v, acc_rv) in acc_r.iter_mut().enumerate() {
                let col = j0 + 16 * v;
                if col < a.n {
                    // SAFETY: row `i0 + r < m`, columns `col..` masked to `< n`: in `y`,
                    // written by the previous block.
                    *acc_rv = unsafe {
                        _mm512_maskz_loadu_ps(mask(col, a.n), a.y.add((i0 + r) * a.n + col))
                    };
                }
            }
        }
    }
    // SAFETY: the panel at `j0` is `k * width` floats from `j0 * k`; row `k0` of it is in
    // bounds and the loop below reads rows `k0..k1`.
    let mut wp = unsafe { a.wt.add(j0 * a.k + kb.k0 * width) };
    // SAFETY: row `i0 < m` of x.
    let xp = unsafe { a.x.add(i0 * a.k) };
    // One row of the panel into the accumulators.
    let step = |acc: &mut [[__m512; NV]; R], wp: *const f32, p: usize| {
        // SAFETY: row `p < k` of the panel, `width` floats.
        let w: [__m512; NV] = std::array::from_fn(|v| unsafe { _mm512_loadu_ps(wp.add(16 * v)) });
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: row `i0 + r < m`, column `p < k` of x.
            let xb = _mm512_set1_ps(unsafe { *xp.add(r * a.k + p) });
            for (acc_rv, &wv) in acc_r.iter_mut().zip(&w) {
                *acc_rv = _mm512_fmadd_ps(xb, wv, *acc_rv);
            }
        }
    };
    // The prefetches (hints, which never fault): one with each of the first rows of the
    // block, the excess (more lines than rows, on a few rows) up front.
    let iters = kb.k1 - kb.k0;
    let ahead = pf.lines.saturating_sub(iters);
    for l in 0..ahead {
        _mm_prefetch::<_MM_HINT_T1>(pf.start.wrapping_add(16 * l).cast());
    }
    let mut pfp = pf.start.wrapping_add(16 * ahead);
    let with_pf = pf.lines - ahead;
    for p in kb.k0..kb.k0 + with_pf {
        _mm_prefetch::<_MM_HINT_T1>(pfp.cast());
        pfp = pfp.wrapping_add(16);
        step(&mut acc, wp, p);
        wp = wp.wrapping_add(width);
    }
    for p in kb.k0 + with_pf..kb.k1 {
        step(&mut acc, wp, p);
        wp = wp.wrapping_add(width);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, &o) in acc_r.iter().enumerate() {
            let col = j0 + 16 * v;
            if col >= a.n {
                continue;
            }
            let o = match a.bias {
                // SAFETY: `col + 16 <= padded(n)`, the padded bias length.
                Some(b) if kb.last => _mm512_add_ps(o, unsafe { _mm512_loadu_ps(b.add(col)) }),
                _ => o,
            };
            // SAFETY: row `i0 + r < m`; the store covers columns `col .. min(col + 16, n)`
            // of y, which has `m * n` elements.
            unsafe {
                let dst = a.y.add((i0 + r) * a.n + col);
                if col + 16 <= a.n {
                    _mm512_storeu_ps(dst, o);
                } else {
                    _mm512_mask_storeu_ps(dst, mask(col, a.n), o);
                }
            }
        }
    }
}
