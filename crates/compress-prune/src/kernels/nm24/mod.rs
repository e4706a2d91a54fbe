//! `y[m, n] = x[m, k] W^T (+ b)` with `W` `[n, k]` in packed 2:4 form: two kept values per
//! group of four inputs, row by row, and a 4-bit code per group (`p0 | p1 << 2`, the kept
//! positions, two codes per byte, low nibble first).
//!
//! Layout: `x` is copied once per call into `x^T` tiles of 64 tokens (`[k, 64]`, tokens
//! zero-padded to a multiple of 16), so every kept weight is one broadcast multiply-add over
//! a contiguous row of 64 tokens (four AVX-512 vectors, eight AVX2 ones) while the output
//! tile `y^T` stays in registers. The inputs are walked in blocks of about 32 KiB of `x^T`
//! (L1), and each block serves every output row before the next is loaded. The AVX-512
//! kernel keeps four output rows (16 accumulators) in flight, the AVX2 one a single row.
//! The multiply-adds take their `x^T` operand straight from L1, so loads, not arithmetic,
//! bound the kernel: where the groups allow it, each row's codes for eight groups come in
//! one 32-bit load and are decoded in registers (a load per eight groups, not per one or
//! two), which left the value broadcasts as the only loads besides `x^T`.
//!
//! The SIMD paths fuse each multiply-add and the portable one does not, so the paths agree
//! within floating-point tolerance, not bit for bit (each is tested against an `f64` dense
//! reference).

use std::ops::Range;

/// A 2:4 weight as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packed24<'a> {
    /// Output features `n` (rows of `W`).
    pub(crate) rows: usize,
    /// Input features `k` (columns of `W`), a multiple of 4.
    pub(crate) cols: usize,
    /// `rows * cols / 2` kept values, row-major, two per group.
    pub(crate) vals: &'a [f32],
    /// `(rows * cols / 4).div_ceil(2)` bytes of group codes.
    pub(crate) codes: &'a [u8],
}

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// The widest path [`compress_core::Isa::current`] allows.
    pub(crate) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if compress_core::Isa::Avx512.enabled() {
                return Self::Avx512;
            }
            if compress_core::Isa::Avx2.enabled() {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Every path this CPU can run (for tests and benches).
    pub(crate) fn all_available() -> Vec<Self> {
        let mut v = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = compress_core::Isa::detected();
            if cpu >= compress_core::Isa::Avx2 {
                v.push(Self::Avx2);
            }
            if cpu >= compress_core::Isa::Avx512 {
                v.push(Self::Avx512);
            }
        }
        v
    }
}

/// Tokens per tile of `x^T`.
const TILE: usize = 64;
/// Tokens are padded to a multiple of this.
const PAD: usize = 16;
/// Bytes of `x^T` per input block (most of a 48 KiB L1).
const BLOCK_BYTES: usize = 32 * 1024;
/// Products of at least this many multiply-adds run their token tiles on the rayon pool
/// (as `compress_nn::gemm` splits large products).
const PAR_MIN_MACS: usize = 1 << 21;

/// The code of group `q` (row-major over the whole matrix).
#[inline(always)]
fn code(codes: &[u8], q: usize) -> usize {
    usize::from((codes[q >> 1] >> ((q & 1) * 4)) & 15)
}

/// `y = x W^T (+ b)` on `path`; `x` is `[m, k]`, `y` `[m, n]`, both row-major; `scratch`
/// is reused between calls (it grows to `(k + n) * round_up(m, 16) + 16` floats).
///
/// # Panics
///
/// When the slice lengths do not match the shapes (callers build them from a validated
/// matrix), or `path` is not available on this CPU.
#[track_caller]
pub(crate) fn spmm24(
    path: Path,
    w: Packed24<'_>,
    x: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(k.is_multiple_of(4), "k = {k} is not a multiple of 4");
    assert_eq!(w.vals.len(), n * k / 2, "values are not [{n}, {}]", k / 2);
    assert_eq!(w.codes.len(), (n * k / 4).div_ceil(2), "codes length");
    assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
    assert_eq!(y.len(), m * n, "y is not [{m}, {n}]");
    assert!(bias.is_none_or(|b| b.len() == n), "bias is not [{n}]");
    assert!(
        Path::all_available().contains(&path),
        "{path:?} unavailable"
    );
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
    let mp = m.div_ceil(PAD) * PAD;
    let need = (k + n) * mp + PAD;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    // Align the tiles to 64 bytes (a cache line, one AVX-512 vector).
    let skip = scratch.as_ptr().align_offset(64).min(PAD);
    let (xt_all, yt_all) = scratch[skip..skip + (k + n) * mp].split_at_mut(k * mp);
    // One tile of up to 64 tokens: its rows of `x` and `y` and its own scratch, so tiles
    // are independent and large products run them on the rayon pool.
    let tile = |xc: &[f32], xt: &mut [f32], yt: &mut [f32], yc: &mut [f32]| {
        let (real, wt) = (xc.len() / k, xt.len() / k);
        transpose_in(path, xc, k, real, 0..wt, xt);
        let groups = k / 4;
        let block = (BLOCK_BYTES / (16 * wt)).max(1);
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + block).min(groups);
            run_block(path, w, g0..g1, xt, wt, yt, g0 == 0);
            g0 = g1;
        }
        transpose_out(path, yt, wt, n, real, 0, bias, yc);
    };
    let jobs: Vec<_> = x
        .chunks(TILE * k)
        .zip(xt_all.chunks_mut(TILE * k))
        .zip(yt_all.chunks_mut(TILE * n))
        .zip(y.chunks_mut(TILE * n))
        .collect();
    if jobs.len() > 1 && rayon::current_num_threads() > 1 && m * n * k >= PAR_MIN_MACS {
        use rayon::prelude::*;
        jobs.into_par_iter()
            .for_each(|(((xc, xt), yt), yc)| tile(xc, xt, yt, yc));
    } else {
        for (((xc, xt), yt), yc) in jobs {
            tile(xc, xt, yt, yc);
        }
    }
}

/// `xt[c * wt + i] = x[tokens.start + i, c]` (zero for tokens `>= m`), the 16 x 16 blocks
/// on AVX-512 when `path` is it.
fn transpose_in(path: Path, x: &[f32], k: usize, m: usize, tokens: Range<usize>, xt: &mut [f32]) {
    let (start, wt) = (tokens.start, tokens.len());
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (k16, r16) = (k / 16 * 16, wt.min(m - start) / 16 * 16);
        // SAFETY: AVX-512F is available (`spmm24` checked the path); every block read is
        // inside `x` (tokens `start + i + 15 < m`, columns `c + 15 < k`) and every block
        // written inside `xt` (`[k, wt]`, `i + 15 < wt`).
        unsafe { simd::transpose_in(x, k, start, xt, wt, k16, r16) };
        tin_scalar(x, k, m, start, xt, wt, k16..k, 0..wt);
        tin_scalar(x, k, m, start, xt, wt, 0..k16, r16..wt);
        return;
    }
    let _ = path;
    tin_scalar(x, k, m, start, xt, wt, 0..k, 0..wt);
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

/// `y[tok, j] = yt[j * wt + tok - start] (+ b[j])` for the real tokens of the tile, the
/// 16 x 16 blocks on AVX-512 when `path` is it.
#[allow(clippy::too_many_arguments)]
fn transpose_out(
    path: Path,
    yt: &[f32],
    wt: usize,
    n: usize,
    m: usize,
    start: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let real = wt.min(m - start);
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (n16, r16) = (n / 16 * 16, real / 16 * 16);
        // SAFETY: AVX-512F is available; blocks read from `yt` (`[n, wt]`, `j + 15 < n`,
        // `i + 15 < wt`) and written to `y` (`[m, n]`, token `start + i + 15 < m`) are in
        // bounds, as is the bias (`n` entries).
        unsafe { simd::transpose_out(yt, wt, n, start, bias, y, n16, r16) };
        tout_scalar(yt, wt, n, start, bias, y, n16..n, 0..real);
        tout_scalar(yt, wt, n, start, bias, y, 0..n16, r16..real);
        return;
    }
    let _ = path;
    tout_scalar(yt, wt, n, start, bias, y, 0..n, 0..real);
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

/// Adds (or, when `first`, writes) the contribution of groups `groups` of every row to
/// the `y^T` tile `[n, wt]`.
fn run_block(
    path: Path,
    w: Packed24<'_>,
    groups: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    debug_assert!(xt.len() == w.cols * wt && yt.len() == w.rows * wt && wt.is_multiple_of(PAD));
    match path {
        Path::Portable => block_portable(w, groups, xt, wt, yt, first),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            let b = simd::Block::new(w, groups, xt, wt, yt, first);
            // SAFETY: `spmm24` checked that AVX2 + FMA are available (`Path::all_available`);
            // `Block::new` took the pointers from slices whose lengths `spmm24` checked
            // (`xt` is `[k, wt]`, `yt` `[n, wt]`, `wt` a multiple of 16, every code < 4).
            unsafe { simd::avx2(b) }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            let b = simd::Block::new(w, groups, xt, wt, yt, first);
            // SAFETY: as above, with AVX-512F.
            unsafe { simd::avx512(b) }
        }
    }
}

/// The portable block: one output row at a time, the tile row as accumulators.
fn block_portable(
    w: Packed24<'_>,
    groups: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    let gpr = w.cols / 4;
    for (j, acc) in yt.chunks_exact_mut(wt).enumerate() {
        if first {
            acc.fill(0.0);
        }
        for g in groups.clone() {
            let q = j * gpr + g;
            let c = code(w.codes, q);
            let (v0, v1) = (w.vals[2 * q], w.vals[2 * q + 1]);
            let x0 = &xt[(4 * g + (c & 3)) * wt..][..wt];
            let x1 = &xt[(4 * g + (c >> 2)) * wt..][..wt];
            for ((a, &p), &r) in acc.iter_mut().zip(x0).zip(x1) {
                *a = *a + v0 * p + v1 * r;
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
        let w = Packed24 {
            rows: n,
            cols: k,
            vals: &vals,
            codes: &codes,
        };
        for path in Path::all_available() {
            let mut y = vec![f32::NAN; m * n];
            spmm24(path, w, &x, m, b, &mut y, &mut Vec::new());
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|c| f64::from(x[i * k + c]) * dense[j * k + c])
                        .sum::<f64>()
                        + b.map_or(0.0, |b| f64::from(b[j]));
                    let got = f64::from(y[i * n + j]);
                    assert!(
                        (got - want).abs() < 1e-3,
                        "{path:?} [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_products_split_over_tiles_match_the_dense_product() {
        // 200 x 256 x 64: above the parallel threshold, four token tiles (the last partial).
        check_against_dense(200, 256, 64, 5, false);
    }

    #[test]
    fn eight_group_steps_match_the_dense_product_across_blocks_and_tiles() {
        // k = 416 (104 groups, a multiple of 8): token tiles of 64 and 40 (padded to 48),
        // so input blocks of 32 and 42 groups: the eight-group steps start on block
        // boundaries (multiples of 8) or fall back to pairs and single groups (42, 84);
        // 37 outputs run four-row and one-row steps.
        check_against_dense(104, 416, 37, 11, true);
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
            let w = Packed24 { rows: n, cols: k, vals: &vals, codes: &codes };
            let mut scratch = Vec::new();
            for path in Path::all_available() {
                let mut y = vec![f32::NAN; m * n];
                spmm24(path, w, &x, m, b, &mut y, &mut scratch);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|c| f64::from(x[i * k + c]) * dense[j * k + c])
                            .sum::<f64>()
                            + b.map_or(0.0, |b| f64::from(b[j]));
                        let got = f64::from(y[i * n + j]);
                        prop_assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + k as f64).sqrt() * 2.0,
                            "{path:?} m={m} k={k} n={n} y[{i},{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}
