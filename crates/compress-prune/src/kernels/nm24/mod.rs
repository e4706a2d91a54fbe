//! `y[m, n] = x[m, k] W^T (+ b)` with `W` `[n, k]` 2:4 sparse, read from its panel form
//! ([`Panels24`]: blocks of 32 groups of four inputs by panels of four rows, two kept values
//! and a 4-bit code `p0 | p1 << 2` per row and group), built once per weight.
//!
//! Layout: `x` is copied once per call into `x^T` tiles of 64 tokens (`[k, 64]`, the
//! tokens of a short tile zero-padded to a multiple of 16 and the rest of each row unused,
//! so an input's row is always 256 bytes from the previous one). Every kept weight is one
//! broadcast multiply-add over a row of up to 64 tokens (four AVX-512 vectors, eight AVX2
//! ones) while the output tile `y^T` stays in registers. One block of groups of `x^T`
//! (128 inputs, 32 KiB: L1) serves every panel before the next block is read, so the
//! weight streams once, in order, per tile. The AVX-512 kernel keeps a panel's four
//! output rows (16 accumulators) in flight and decodes the panel's codes of four groups
//! from one 64-bit load: each position becomes a byte offset with a shift and a mask and
//! the offset goes straight into the multiply-add's address, so a kept weight costs one
//! broadcast, two integer operations and one multiply-add with its `x^T` operand from L1
//! per vector. The AVX2 kernel walks the panel's rows one at a time.
//!
//! The SIMD paths fuse each multiply-add and the portable one does not, so the paths agree
//! within floating-point tolerance, not bit for bit (each is tested against an `f64` dense
//! reference).

use std::ops::Range;

mod panels;
pub(crate) use panels::Panels24;
use panels::{KB, PR};

/// Which implementation runs: the portable loops, or the AVX2 + FMA or AVX-512F kernels
/// (x86-64).
pub(crate) use compress_core::Isa as Path;

/// Every path this CPU can run (for tests and benches).
pub(crate) fn all_available() -> Vec<Path> {
    [Path::Portable, Path::Avx2, Path::Avx512]
        .into_iter()
        .filter(|&p| p <= Path::detected())
        .collect()
}

/// Tokens per tile of `x^T`, and the row stride of `x^T` in floats.
const TILE: usize = 64;
/// Tokens are padded to a multiple of this.
const PAD: usize = 16;
/// Panels of the last block computed before their outputs are transposed into `y` (16
/// outputs: one 16 x 16 transpose per 16 tokens).
const OUT_PANELS: usize = 16 / PR;
/// Products of at least this many multiply-adds run their token tiles on the rayon pool
/// (as `compress_nn::gemm` splits large products).
const PAR_MIN_MACS: usize = 1 << 21;

/// `y = x W^T (+ b)` on `path`; `x` is `[m, k]`, `y` `[m, n]`, both row-major; `scratch`
/// is reused between calls (it grows to `(k + n + 3) * 64` floats per tile of 64 tokens).
///
/// # Panics
///
/// When the slice lengths do not match the shapes (callers build them from a validated
/// matrix), or `path` is not available on this CPU.
#[track_caller]
pub(crate) fn spmm24(
    path: Path,
    w: &Panels24,
    x: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
    assert_eq!(y.len(), m * n, "y is not [{m}, {n}]");
    assert!(bias.is_none_or(|b| b.len() == n), "bias is not [{n}]");
    assert!(all_available().contains(&path), "{path:?} unavailable");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in y.chunks_exact_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
        }
        return;
    }
    let np = w.panels() * PR;
    let per = (k + np) * TILE;
    let need = m.div_ceil(TILE) * per + PAD;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    // Align the tiles to 64 bytes (a cache line, one AVX-512 vector).
    let skip = scratch.as_ptr().align_offset(64).min(PAD);
    // One tile of up to 64 tokens: its rows of `x` and `y` and its own scratch, so tiles
    // are independent and large products run them on the rayon pool.
    let tile = |xc: &[f32], s: &mut [f32], yc: &mut [f32]| {
        let real = xc.len() / k;
        let wt = real.div_ceil(PAD) * PAD;
        let (xt, yt) = s.split_at_mut(k * TILE);
        let yt = &mut yt[..np * wt];
        transpose_in(path, xc, k, real, wt, xt);
        let xb = |b: usize| &xt[4 * b * KB * TILE..][..4 * w.block_groups(b) * TILE];
        let last = w.blocks() - 1;
        for b in 0..last {
            run_block(path, w, b, xb(b), wt, yt, 0..w.panels(), b == 0);
        }
        // The last block a few panels at a time, each group of outputs transposed into `y`
        // while its rows of `y^T` are still in L1.
        for p0 in (0..w.panels()).step_by(OUT_PANELS) {
            let p1 = (p0 + OUT_PANELS).min(w.panels());
            run_block(path, w, last, xb(last), wt, yt, p0..p1, last == 0);
            transpose_out(path, yt, wt, n, real, p0 * PR..(p1 * PR).min(n), bias, yc);
        }
    };
    let jobs: Vec<_> = x
        .chunks(TILE * k)
        .zip(scratch[skip..].chunks_mut(per))
        .zip(y.chunks_mut(TILE * n))
        .collect();
    if jobs.len() > 1 && rayon::current_num_threads() > 1 && m * n * k >= PAR_MIN_MACS {
        use rayon::prelude::*;
        jobs.into_par_iter()
            .for_each(|((xc, s), yc)| tile(xc, s, yc));
    } else {
        for ((xc, s), yc) in jobs {
            tile(xc, s, yc);
        }
    }
}

/// `xt[c * TILE + i] = x[i, c]` for the `wt` tokens of a tile (zero for tokens `>= real`,
/// the rows `real` of `x`), the 16 x 16 blocks on AVX-512 when `path` is it.
fn transpose_in(path: Path, x: &[f32], k: usize, real: usize, wt: usize, xt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (k16, r16) = (k / 16 * 16, real / 16 * 16);
        // SAFETY: AVX-512F is available (`spmm24` checked the path); every block read is
        // inside `x` (tokens `i + 15 < real`, columns `c + 15 < k`) and every block
        // written inside `xt` (`[k, TILE]`, `i + 15 < wt <= TILE`).
        unsafe { simd::transpose_in(x, k, 0, xt, TILE, k16, r16) };
        tin_scalar(x, k, real, 0, xt, TILE, k16..k, 0..wt);
        tin_scalar(x, k, real, 0, xt, TILE, 0..k16, r16..wt);
        return;
    }
    let _ = path;
    tin_scalar(x, k, real, 0, xt, TILE, 0..k, 0..wt);
}

/// The scalar part of [`transpose_in`] for columns `cols` and tile tokens `toks`.
#[allow(clippy::too_many_arguments)]
fn tin_scalar(
    x: &[f32],
    k: usize,
    m: usize,
    start: usize,
    xt: &mut [f32],
    wt: usize,
    cols: Range<usize>,
    toks: Range<usize>,
) {
    const B: usize = 16;
    for c0 in cols.clone().step_by(B) {
        let c1 = (c0 + B).min(cols.end);
        for i in toks.clone() {
            let tok = start + i;
            if tok < m {
                for (c, &v) in (c0..c1).zip(&x[tok * k + c0..tok * k + c1]) {
                    xt[c * wt + i] = v;
                }
            } else {
                for c in c0..c1 {
                    xt[c * wt + i] = 0.0;
                }
            }
        }
    }
}

/// `y[i, j] = yt[j * wt + i] (+ b[j])` for the `real` tokens of the tile and outputs
/// `outs` (starting on a multiple of 16), the 16 x 16 blocks on AVX-512 when `path` is it.
#[allow(clippy::too_many_arguments)]
fn transpose_out(
    path: Path,
    yt: &[f32],
    wt: usize,
    n: usize,
    real: usize,
    outs: Range<usize>,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (j16, r16) = (outs.start + outs.len() / 16 * 16, real / 16 * 16);
        // SAFETY: AVX-512F is available; blocks read from `yt` (`[n, wt]`, `j + 15 < j16
        // <= n`, `i + 15 < r16 <= wt`) and written to `y` (`[real, n]`) are in bounds, as
        // is the bias (`n` entries).
        unsafe { simd::transpose_out(yt, wt, n, bias, y, outs.start..j16, r16) };
        tout_scalar(yt, wt, n, 0, bias, y, j16..outs.end, 0..real);
        tout_scalar(yt, wt, n, 0, bias, y, outs.start..j16, r16..real);
        return;
    }
    let _ = path;
    tout_scalar(yt, wt, n, 0, bias, y, outs, 0..real);
}

/// The scalar part of [`transpose_out`] for outputs `outs` and tile tokens `toks`.
#[allow(clippy::too_many_arguments)]
fn tout_scalar(
    yt: &[f32],
    wt: usize,
    n: usize,
    start: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    outs: Range<usize>,
    toks: Range<usize>,
) {
    const B: usize = 16;
    for j0 in outs.clone().step_by(B) {
        let j1 = (j0 + B).min(outs.end);
        for i in toks.clone() {
            let row = &mut y[(start + i) * n + j0..(start + i) * n + j1];
            for (j, o) in (j0..j1).zip(row.iter_mut()) {
                *o = yt[j * wt + i] + bias.map_or(0.0, |b| b[j]);
            }
        }
    }
}

/// Adds (or, when `first`, writes) the contribution of block `b` of panels `panels` to
/// the `y^T` tile `yt` (`[panels * PR, wt]`, all of them); `xt` is the block's rows of
/// `x^T` (stride [`TILE`]).
#[allow(clippy::too_many_arguments)]
fn run_block(
    path: Path,
    w: &Panels24,
    b: usize,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    panels: Range<usize>,
    first: bool,
) {
    let gb = w.block_groups(b);
    assert!(xt.len() == 4 * gb * TILE && yt.len() == w.panels() * PR * wt);
    assert!(panels.end <= w.panels());
    let yt = &mut yt[panels.start * PR * wt..panels.end * PR * wt];
    assert!(wt.is_multiple_of(PAD) && (PAD..=TILE).contains(&wt));
    match path {
        Path::Portable => {
            for (p, yp) in panels.zip(yt.chunks_exact_mut(PR * wt)) {
                block_portable(w.block(b, p), xt, wt, yp, first);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            // SAFETY: `spmm24` checked that AVX2 + FMA are available
            // (`all_available`); the lengths were checked above (`xt` holds the `4 gb`
            // rows of `TILE` of the block's groups, `yt` every panel's `PR` rows of `wt`).
            unsafe { simd::avx2(w, b, panels, xt, wt, yt, first) }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            // SAFETY: as above, with AVX-512F.
            unsafe { simd::avx512(w, b, panels, xt, wt, yt, first) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the portable path is available off x86-64"),
    }
}

/// The portable block: one panel, one output row at a time, the tile row as
/// accumulators.
fn block_portable(blk: panels::PanelBlock<'_>, xt: &[f32], wt: usize, yp: &mut [f32], first: bool) {
    for (r, acc) in yp.chunks_exact_mut(wt).enumerate() {
        if first {
            acc.fill(0.0);
        }
        for (h, (&c16, v)) in blk.codes.iter().zip(blk.vals.chunks_exact(8)).enumerate() {
            let c = usize::from(c16 >> (4 * r));
            let (v0, v1) = (v[2 * r], v[2 * r + 1]);
            let x0 = &xt[(4 * h + (c & 3)) * TILE..][..wt];
            let x1 = &xt[(4 * h + (c >> 2 & 3)) * TILE..][..wt];
            for ((a, &p), &q) in acc.iter_mut().zip(x0).zip(x1) {
                *a = *a + v0 * p + v1 * q;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A random 2:4 matrix: values and codes, plus its dense twin.
    fn random24(n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<u8>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let groups = n * k / 4;
        let mut vals = Vec::with_capacity(2 * groups);
        let mut codes = vec![0u8; groups.div_ceil(2)];
        let mut dense = vec![0.0f64; n * k];
        for q in 0..groups {
            let p0 = rng.random_range(0..3usize);
            let p1 = rng.random_range(p0 + 1..4usize);
            let (a, b) = (
                rng.random_range(-1.0f32..1.0),
                rng.random_range(-1.0f32..1.0),
            );
            vals.extend([a, b]);
            codes[q / 2] |= ((p0 | (p1 << 2)) as u8) << ((q % 2) * 4);
            dense[q * 4 + p0] = f64::from(a);
            dense[q * 4 + p1] = f64::from(b);
        }
        (vals, codes, dense)
    }

    /// Runs `m x k x n` (a fixed `x`, a random 2:4 weight, a bias when `bias`) on every
    /// path and checks each output against the `f64` dense product.
    fn check_against_dense(m: usize, k: usize, n: usize, seed: u64, bias: bool) {
        let (vals, codes, dense) = random24(n, k, seed);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 40.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 10.0 - 1.0).collect();
        let b = bias.then_some(&b[..]);
        let w = Panels24::pack(n, k, &vals, &codes);
        let want = dense_product(&x, &dense, b, (m, k, n));
        for path in all_available() {
            let mut y = vec![f32::NAN; m * n];
            spmm24(path, &w, &x, m, b, &mut y, &mut Vec::new());
            let (at, err) = worst(&y, &want);
            assert!(
                err < 1e-3,
                "{path:?} y[{at}] = {}, want {}",
                y[at],
                want[at]
            );
        }
    }

    /// The `f64` dense product `x dense^T (+ b)`, `m x n`, of `x` `[m, k]` and `dense`
    /// `[n, k]`.
    fn dense_product(
        x: &[f32],
        dense: &[f64],
        b: Option<&[f32]>,
        (m, k, n): (usize, usize, usize),
    ) -> Vec<f64> {
        let mut want = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|c| f64::from(x[i * k + c]) * dense[j * k + c])
                    .sum();
                want.push(dot + b.map_or(0.0, |b| f64::from(b[j])));
            }
        }
        want
    }

    /// The flat index and absolute error of the output farthest from `want` (a NaN output
    /// is the farthest of all; `(0, 0.0)` when there are none).
    fn worst(y: &[f32], want: &[f64]) -> (usize, f64) {
        let mut far = (0, 0.0);
        for (i, (&got, &w)) in y.iter().zip(want).enumerate() {
            let err = (f64::from(got) - w).abs();
            if err.is_nan() || err > far.1 {
                far = (i, err);
                if err.is_nan() {
                    break;
                }
            }
        }
        far
    }

    #[test]
    fn large_products_split_over_tiles_match_the_dense_product() {
        // 200 x 256 x 64: above the parallel threshold, four token tiles (the last partial).
        check_against_dense(200, 256, 64, 5, false);
    }

    #[test]
    fn ragged_blocks_panels_and_tiles_match_the_dense_product() {
        // k = 416: blocks of 32, 32, 32 and 8 groups (four-group steps only); k = 284:
        // 32, 32 and 7 (four-group steps, then three single groups); 37 and 6 outputs
        // leave the last panel with one and two real rows; 104 tokens make tiles of 64
        // and 40 (padded to 48), 5 tokens one tile of 16.
        check_against_dense(104, 416, 37, 11, true);
        check_against_dense(5, 284, 6, 12, false);
        check_against_dense(70, 284, 37, 13, true);
    }

    proptest! {
        #[test]
        fn every_path_matches_the_dense_product(
            m in 0usize..150, k4 in 0usize..70, n in 0usize..40,
            bias in any::<bool>(), seed in 0u64..1000,
        ) {
            let k = 4 * k4;
            let (vals, codes, dense) = random24(n, k, seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 7);
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let b = bias.then_some(&b[..]);
            let w = Panels24::pack(n, k, &vals, &codes);
            let want = dense_product(&x, &dense, b, (m, k, n));
            let mut scratch = Vec::new();
            for path in all_available() {
                let mut y = vec![f32::NAN; m * n];
                spmm24(path, &w, &x, m, b, &mut y, &mut scratch);
                let (at, err) = worst(&y, &want);
                prop_assert!(
                    err <= 1e-4 * (1.0 + k as f64).sqrt() * 2.0,
                    "{path:?} m={m} k={k} n={n} y[{at}] = {}, want {}", y[at], want[at]
                );
            }
        }
    }
}
