//! The dequantization fused into the last `k` block of the `u8 x i8` GEMM: each finished
//! tile of exact `i32` sums becomes `f32` while it is still in registers or L1, so the
//! integer product is never written to memory and read back.
//!
//! For row `r` (a token, or an output position of a convolution) with scale `s_r` and zero
//! point `z_r` (the `u8` code of zero), and column `j` (an output channel) with weight scale
//! `w_j`, weight column sum `cs_j` and bias `b_j`:
//! `y[r][j] = (acc[r][j] - z_r cs_j) as f32 * (s_r w_j) + b_j`, in wrapping `i32` and then
//! two separate float operations (never contracted to an FMA), so every path gives the same
//! bits.

use super::micro::{MR, NR};

/// An output element, written once by the epilogue (the output may start uninitialised:
/// the epilogue writes every element of its layout and never reads one).
pub(crate) type Out = std::mem::MaybeUninit<f32>;

/// Where the dequantized product goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutLayout {
    /// `[m, n]` row-major.
    RowMajor,
    /// A convolution's `NCHW` output: GEMM row `r` is output position `r % positions` of
    /// image `r / positions`, GEMM column `j` is channel `first + j` of `channels`.
    Nchw {
        /// Output positions per image (`oh * ow`).
        positions: usize,
        /// Output channels of the whole layer.
        channels: usize,
        /// Channel of GEMM column 0 (the group's first output channel).
        first: usize,
    },
}

/// Per-row and per-column factors of a fused dequantizing GEMM (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dequant<'a> {
    /// `s_r`, one per GEMM row.
    pub(crate) row_scales: &'a [f32],
    /// `z_r`, one per GEMM row.
    pub(crate) row_zps: &'a [i32],
    /// `cs_j`, the weight column sums ([`super::PackedB::col_sums`]).
    pub(crate) col_sums: &'a [i32],
    /// `w_j`, one per GEMM column.
    pub(crate) col_scales: &'a [f32],
    /// `b_j`, one per GEMM column (zeros for no bias).
    pub(crate) bias: &'a [f32],
    /// Output layout.
    pub(crate) layout: OutLayout,
}

impl Dequant<'_> {
    /// Checks that the factors cover an `m x n` product and `out` holds its output.
    #[track_caller]
    pub(crate) fn check(&self, m: usize, n: usize, out: &[Out]) {
        assert!(
            self.row_scales.len() >= m && self.row_zps.len() >= m,
            "row factors"
        );
        assert!(
            self.col_sums.len() == n && self.col_scales.len() == n && self.bias.len() == n,
            "column factors"
        );
        let need = match self.layout {
            OutLayout::RowMajor => m * n,
            OutLayout::Nchw {
                positions,
                channels,
                first,
            } => {
                assert!(positions > 0 && first + n <= channels, "NCHW layout");
                m.div_ceil(positions) * channels * positions
            }
        };
        assert!(
            out.len() >= need,
            "output holds {} of {need} values",
            out.len()
        );
    }

    /// Dequantizes the sums of row `r`, columns `col0..col0 + sums.len()`, into `out`.
    #[inline(always)]
    pub(crate) fn row(&self, r: usize, col0: usize, sums: &[i32], out: &mut [Out]) {
        let (s, z) = (self.row_scales[r], self.row_zps[r]);
        let n = sums.len();
        let cs = &self.col_sums[col0..col0 + n];
        let ws = &self.col_scales[col0..col0 + n];
        let b = &self.bias[col0..col0 + n];
        match self.layout {
            OutLayout::RowMajor => {
                let width = self.col_sums.len();
                let o = &mut out[r * width + col0..r * width + col0 + n];
                dequant_row(sums, s, z, cs, ws, b, o);
            }
            OutLayout::Nchw {
                positions,
                channels,
                first,
            } => {
                let (img, pos) = (r / positions, r % positions);
                let base = (img * channels + first + col0) * positions + pos;
                for (j, &a) in sums.iter().enumerate() {
                    out[base + j * positions]
                        .write(a.wrapping_sub(z.wrapping_mul(cs[j])) as f32 * (s * ws[j]) + b[j]);
                }
            }
        }
    }
}

impl Dequant<'_> {
    /// Dequantizes a finished micro-tile: rows `row0..row0 + rows`, columns
    /// `col0..col0 + cols` of the product, `sums[r][j]` for tile row `r` and column `j`.
    /// In the NCHW layout a tile whose rows are consecutive positions of one image is
    /// written channel by channel, each channel's `rows` outputs being contiguous.
    #[inline(always)]
    pub(crate) fn tile(
        &self,
        row0: usize,
        rows: usize,
        col0: usize,
        cols: usize,
        sums: &[[i32; NR]; MR],
        out: &mut [Out],
    ) {
        if let OutLayout::Nchw {
            positions,
            channels,
            first,
        } = self.layout
        {
            let (img, pos) = (row0 / positions, row0 % positions);
            if pos + rows <= positions {
                let s = &self.row_scales[row0..row0 + rows];
                let z = &self.row_zps[row0..row0 + rows];
                for (j, c) in (col0..col0 + cols).enumerate() {
                    let (cs, ws, b) = (self.col_sums[c], self.col_scales[c], self.bias[c]);
                    let base = (img * channels + first + c) * positions + pos;
                    let o = &mut out[base..base + rows];
                    for (r, ((o, &s), &z)) in o.iter_mut().zip(s).zip(z).enumerate() {
                        o.write(sums[r][j].wrapping_sub(z.wrapping_mul(cs)) as f32 * (s * ws) + b);
                    }
                }
                return;
            }
        }
        for (r, row) in sums.iter().enumerate().take(rows) {
            self.row(row0 + r, col0, &row[..cols], out);
        }
    }
}

/// `o[j] = (a[j] - z cs[j]) as f32 * (s ws[j]) + b[j]` (wrapping `i32`, no FMA).
#[inline(always)]
pub(crate) fn dequant_row(
    a: &[i32],
    s: f32,
    z: i32,
    cs: &[i32],
    ws: &[f32],
    b: &[f32],
    o: &mut [Out],
) {
    for ((o, &a), ((&cs, &ws), &b)) in o.iter_mut().zip(a).zip(cs.iter().zip(ws).zip(b)) {
        o.write(a.wrapping_sub(z.wrapping_mul(cs)) as f32 * (s * ws) + b);
    }
}
