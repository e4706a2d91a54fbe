//! The 2:4 weight in the order the kernels read it, built once from the row-major form
//! (values row by row, a 4-bit code `p0 | p1 << 2` per group, two codes per byte).
//!
//! # Layout
//!
//! The `gpr = cols / 4` groups of a row are cut into blocks of [`KB`] groups (the last one
//! may be shorter) and the rows into panels of [`PR`] rows (the last one padded with zero
//! rows). Block `b` of panel `p` holds, for each group `g` of the block in order, the two
//! kept values of each of the panel's rows (`[g][r][2]`, eight floats), and one 16-bit
//! code per group (row `r`'s nibble at bits `4 r`). The blocks follow one another
//! (`[b][p]`): a product walks the block of `x^T` that one block of groups reads (in L1)
//! against every panel, so the whole weight is one sequential stream and a kernel decodes
//! four rows of a group (or four groups of a panel) from one load.
//!
//! The values and codes are a permutation of the row-major ones (plus the padding rows):
//! the same bytes, not an expansion.

/// Groups (of four inputs) per block: 128 inputs, 32 KiB of a 64-token `x^T` tile.
pub(crate) const KB: usize = 32;
/// Rows per panel.
pub(crate) const PR: usize = 4;

/// A 2:4 weight `[rows, cols]` in panel order (see the module docs).
#[derive(Clone, PartialEq)]
pub(crate) struct Panels24 {
    rows: usize,
    cols: usize,
    vals: Vec<f32>,
    codes: Vec<u16>,
}

impl std::fmt::Debug for Panels24 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Panels24")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

/// One block of groups of one panel, as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PanelBlock<'a> {
    /// `8 * groups` values, `[g][r][2]`.
    pub(crate) vals: &'a [f32],
    /// `groups` codes, row `r` at bits `4 r`.
    pub(crate) codes: &'a [u16],
}

impl Panels24 {
    /// Packs a row-major 2:4 weight: `vals` `rows * cols / 2` kept values, `codes`
    /// `(rows * cols / 4).div_ceil(2)` bytes of group codes (low nibble first).
    ///
    /// # Panics
    ///
    /// When `cols` is not a multiple of 4 or the lengths do not match (callers pass a
    /// validated matrix).
    #[track_caller]
    pub(crate) fn pack(rows: usize, cols: usize, vals: &[f32], codes: &[u8]) -> Self {
        assert!(
            cols.is_multiple_of(4),
            "cols = {cols} is not a multiple of 4"
        );
        let gpr = cols / 4;
        assert_eq!(
            vals.len(),
            rows * gpr * 2,
            "values are not [{rows}, {}]",
            cols / 2
        );
        assert_eq!(codes.len(), (rows * gpr).div_ceil(2), "codes length");
        let np = rows.div_ceil(PR);
        let mut pv = vec![0.0f32; np * PR * gpr * 2];
        let mut pc = vec![0u16; np * gpr];
        for (b, g0) in (0..gpr).step_by(KB).enumerate() {
            let gb = (gpr - g0).min(KB);
            for p in 0..np {
                let at = np * b * KB + p * gb;
                for h in 0..gb {
                    let mut c16 = 0u16;
                    for r in 0..PR.min(rows - p * PR) {
                        let q = (p * PR + r) * gpr + g0 + h;
                        let c = (codes[q >> 1] >> ((q & 1) * 4)) & 15;
                        c16 |= u16::from(c) << (4 * r);
                        pv[8 * (at + h) + 2 * r..][..2].copy_from_slice(&vals[2 * q..2 * q + 2]);
                    }
                    pc[at + h] = c16;
                }
            }
        }
        Self {
            rows,
            cols,
            vals: pv,
            codes: pc,
        }
    }

    /// The row-major values and codes back (the inverse of [`Panels24::pack`]).
    #[cfg(test)]
    pub(crate) fn unpack(&self) -> (Vec<f32>, Vec<u8>) {
        let (rows, gpr) = (self.rows, self.cols / 4);
        let mut vals = vec![0.0f32; rows * gpr * 2];
        let mut codes = vec![0u8; (rows * gpr).div_ceil(2)];
        for j in 0..rows {
            for g in 0..gpr {
                let blk = self.block(g / KB, j / PR);
                let (h, r) = (g % KB, j % PR);
                let q = j * gpr + g;
                vals[2 * q..2 * q + 2].copy_from_slice(&blk.vals[8 * h + 2 * r..][..2]);
                let c = (blk.codes[h] >> (4 * r)) & 15;
                codes[q >> 1] |= (c as u8) << ((q & 1) * 4);
            }
        }
        (vals, codes)
    }

    /// Output features.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (a multiple of 4).
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Panels (`rows / PR` rounded up).
    pub(crate) fn panels(&self) -> usize {
        self.rows.div_ceil(PR)
    }

    /// Blocks of groups (`cols / 4 / KB` rounded up).
    pub(crate) fn blocks(&self) -> usize {
        (self.cols / 4).div_ceil(KB)
    }

    /// Groups in block `b`.
    pub(crate) fn block_groups(&self, b: usize) -> usize {
        (self.cols / 4 - b * KB).min(KB)
    }

    /// Block `b` of panel `p`.
    ///
    /// # Panics
    ///
    /// When `b` or `p` is out of range.
    pub(crate) fn block(&self, b: usize, p: usize) -> PanelBlock<'_> {
        let gb = self.block_groups(b);
        let at = self.panels() * b * KB + p * gb;
        PanelBlock {
            vals: &self.vals[8 * at..8 * (at + gb)],
            codes: &self.codes[at..at + gb],
        }
    }

    /// Bytes held: the values and codes (with the padding rows of the last panel).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.vals.len() * 4 + self.codes.len() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Random row-major values and valid codes (`p0 < p1`).
    pub(crate) fn random_rowmajor(rows: usize, cols: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let groups = rows * cols / 4;
        let vals = (0..2 * groups)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut codes = vec![0u8; groups.div_ceil(2)];
        for q in 0..groups {
            let p0 = rng.random_range(0..3u8);
            let p1 = rng.random_range(p0 + 1..4u8);
            codes[q / 2] |= (p0 | (p1 << 2)) << ((q % 2) * 4);
        }
        (vals, codes)
    }

    proptest! {
        #[test]
        fn pack_then_unpack_is_the_identity(
            rows in 0usize..23, k4 in 0usize..90, seed in 0u64..1000,
        ) {
            let cols = 4 * k4;
            let (vals, codes) = random_rowmajor(rows, cols, seed);
            let p = Panels24::pack(rows, cols, &vals, &codes);
            let (v2, c2) = p.unpack();
            prop_assert_eq!(v2, vals);
            prop_assert_eq!(c2, codes);
            // Same bytes as the row-major form, up to the zero rows padding the last panel
            // (and the half byte of an odd group count).
            let padded = rows.div_ceil(PR) * PR;
            prop_assert_eq!(p.bytes(), padded * cols / 2 * 4 + padded * cols / 4 / 2);
        }

        #[test]
        fn blocks_cover_every_group_once(rows in 1usize..9, k4 in 1usize..100) {
            let cols = 4 * k4;
            let (vals, codes) = random_rowmajor(rows, cols, 1);
            let p = Panels24::pack(rows, cols, &vals, &codes);
            let total: usize = (0..p.blocks()).map(|b| p.block_groups(b)).sum();
            prop_assert_eq!(total, k4);
            for b in 0..p.blocks() {
                for q in 0..p.panels() {
                    let blk = p.block(b, q);
                    prop_assert_eq!(blk.vals.len(), 8 * p.block_groups(b));
                    prop_assert_eq!(blk.codes.len(), p.block_groups(b));
                }
            }
        }
    }
}
