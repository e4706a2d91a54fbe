//! Decoding in blocks of rows, so a tensor whose decoded size dwarfs its parts (low rank:
//! `u @ v`; row pruning: a few kept rows of a tall tensor) never needs its whole dense form in
//! memory at once.

use ndarray::{ArrayView2, ArrayViewMut2, linalg::general_mat_mul};

use super::{FLOATS, PartSource, U32, decode, fetch, numel};
use crate::format::{Encoding, TensorMeta};
use crate::reader::bytes_to_f32;

/// Checked low-rank factors: `x.reshape(m, cols) = u @ v`.
pub(super) struct Factors {
    m: usize,
    cols: usize,
    rank: usize,
    u: Vec<f32>,
    v: Vec<f32>,
}

impl Factors {
    /// Fetches and checks the factors of a low-rank description of `shape` with rank `rank`.
    pub(super) fn fetch(
        shape: &[usize],
        rank: usize,
        u: &str,
        v: &str,
        src: &mut dyn PartSource,
    ) -> Result<Self, String> {
        let n = numel(shape)?;
        if shape.len() < 2 || rank == 0 {
            return Err("low-rank tensors need >= 2 dimensions and rank >= 1".into());
        }
        let (m, cols) = (shape[0], n / shape[0]);
        let factors = m
            .checked_add(cols)
            .and_then(|s| s.checked_mul(rank))
            .ok_or_else(|| format!("rank {rank} overflows"))?;
        if factors >= n {
            // The writer only stores factors smaller than the tensor; anything else is a
            // tampered file expanding tiny parts into a huge output.
            return Err(format!(
                "rank {rank} factors of {m} x {cols} ({factors} values) are not smaller than the tensor ({n} values)"
            ));
        }
        let up = fetch(src, u, &FLOATS, &[m, rank])?;
        let u = bytes_to_f32(&up.bytes, up.dtype);
        let vp = fetch(src, v, &FLOATS, &[rank, cols])?;
        let v = bytes_to_f32(&vp.bytes, vp.dtype);
        Ok(Self {
            m,
            cols,
            rank,
            u,
            v,
        })
    }

    /// Rows `r0..r1` of `u @ v`, row-major, into `out` (`(r1 - r0) * cols` values).
    pub(super) fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) -> Result<(), String> {
        let u = ArrayView2::from_shape(
            (r1 - r0, self.rank),
            &self.u[r0 * self.rank..r1 * self.rank],
        )
        .map_err(|e| e.to_string())?;
        let v =
            ArrayView2::from_shape((self.rank, self.cols), &self.v).map_err(|e| e.to_string())?;
        let mut o =
            ArrayViewMut2::from_shape((r1 - r0, self.cols), out).map_err(|e| e.to_string())?;
        general_mat_mul(1.0, &u, &v, 0.0, &mut o);
        Ok(())
    }

    /// Rows of the tensor.
    pub(super) fn rows(&self) -> usize {
        self.m
    }

    /// Values per row.
    pub(super) fn cols(&self) -> usize {
        self.cols
    }
}

/// Checked kept rows of a row-pruned tensor: every other row is zero.
pub(super) struct KeptRows {
    rows0: usize,
    inner: usize,
    idx: Vec<usize>,
    vals: Vec<f32>,
}

impl KeptRows {
    /// Fetches and checks the kept row indices and their values for `shape`.
    pub(super) fn fetch(
        shape: &[usize],
        rows: &str,
        values: &str,
        src: &mut dyn PartSource,
    ) -> Result<Self, String> {
        let n = numel(shape)?;
        let Some(&rows0) = shape.first() else {
            return Err("row pruning needs at least one dimension (shape is [])".into());
        };
        let r = src.part(rows)?;
        if r.dtype != U32 || r.shape.len() != 1 {
            return Err(format!("part `{rows}` must be a 1-D U32 tensor"));
        }
        let idx: Vec<usize> = r
            .bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if idx.windows(2).any(|w| w[0] >= w[1]) || idx.last().is_some_and(|&l| l >= rows0) {
            return Err(format!(
                "part `{rows}` is not strictly increasing below {rows0}"
            ));
        }
        let inner = n / rows0;
        let mut vshape = shape.to_vec();
        vshape[0] = idx.len();
        let v = fetch(src, values, &FLOATS, &vshape)?;
        let vals = bytes_to_f32(&v.bytes, v.dtype);
        Ok(Self {
            rows0,
            inner,
            idx,
            vals,
        })
    }

    /// Rows `r0..r1` into `out` (`(r1 - r0) * inner` values): kept rows copied, others zero.
    pub(super) fn rows_into(&self, r0: usize, r1: usize, out: &mut [f32]) {
        out.fill(0.0);
        let first = self.idx.partition_point(|&r| r < r0);
        for (k, &row) in self.idx.iter().enumerate().skip(first) {
            if row >= r1 {
                break;
            }
            let o = (row - r0) * self.inner;
            out[o..o + self.inner]
                .copy_from_slice(&self.vals[k * self.inner..(k + 1) * self.inner]);
        }
    }

    /// Rows of the tensor.
    pub(super) fn rows(&self) -> usize {
        self.rows0
    }
}

/// A tensor computed row block by row block.
enum Rowwise {
    Lowrank(Factors),
    Kept(KeptRows),
}

/// Decodes the tensor described by `meta` in blocks of whole rows (of axis 0) holding at most
/// `block_values` values (at least one row), handing each block to `sink` in order.
///
/// Low-rank and row-pruned tensors are computed block by block from their parts, so memory
/// stays at the parts plus one block however large the described shape; other encodings
/// (whose parts are a fixed fraction of the tensor: at least one bit per element) are decoded
/// whole and handed over in one call. The
/// concatenated blocks equal [`decode`]'s output.
///
/// # Errors
///
/// As [`decode`], and whatever `sink` returns (which stops the decoding).
pub fn decode_blocks(
    meta: &TensorMeta,
    src: &mut dyn PartSource,
    block_values: usize,
    sink: &mut dyn FnMut(&[f32]) -> Result<(), String>,
) -> Result<(), String> {
    let src = match &meta.encoding {
        Encoding::Lowrank { rank, u, v } => {
            Rowwise::Lowrank(Factors::fetch(&meta.shape, *rank, u, v, src)?)
        }
        Encoding::Rows { rows, values } => {
            Rowwise::Kept(KeptRows::fetch(&meta.shape, rows, values, src)?)
        }
        _ => return sink(&decode(meta, src)?),
    };
    let (rows, cols) = match &src {
        Rowwise::Lowrank(f) => (f.rows(), f.cols()),
        Rowwise::Kept(k) => (k.rows(), k.inner),
    };
    let step = (block_values / cols.max(1)).clamp(1, rows);
    let mut buf = Vec::new();
    buf.try_reserve_exact(step * cols)
        .map_err(|_| format!("cannot allocate a block of {step} rows of {cols} values"))?;
    buf.resize(step * cols, 0.0);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        let out = &mut buf[..(r1 - r0) * cols];
        match &src {
            Rowwise::Lowrank(f) => f.rows_into(r0, r1, out)?,
            Rowwise::Kept(k) => k.rows_into(r0, r1, out),
        }
        sink(out)?;
        r0 = r1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Part;
    use crate::format::encode_values;
    use crate::reader::Dtype;
    use proptest::prelude::*;

    fn lowrank(m: usize, cols: usize, rank: usize, seed: u32) -> (TensorMeta, Vec<Part>) {
        let val = |i: usize| {
            (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 250.0 - 2.0
        };
        let u: Vec<f32> = (0..m * rank).map(val).collect();
        let v: Vec<f32> = (0..rank * cols).map(|i| val(i + 7)).collect();
        let meta = TensorMeta {
            dtype: "F32".into(),
            shape: vec![m, cols],
            encoding: Encoding::Lowrank {
                rank,
                u: "w.__u".into(),
                v: "w.__v".into(),
            },
        };
        let parts = vec![
            Part {
                name: "w.__u".into(),
                dtype: Dtype::F32,
                shape: vec![m, rank],
                bytes: encode_values(&u, Dtype::F32),
            },
            Part {
                name: "w.__v".into(),
                dtype: Dtype::F32,
                shape: vec![rank, cols],
                bytes: encode_values(&v, Dtype::F32),
            },
        ];
        (meta, parts)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The blocks, concatenated, are exactly the whole decode, for any block size; every
        /// block but the last holds the same whole number of rows.
        #[test]
        fn blocks_concatenate_to_the_whole_decode(
            m in 8usize..40,
            cols in 8usize..40,
            rank in 1usize..3,
            block in 0usize..300,
            seed in any::<u32>(),
        ) {
            let (meta, parts) = lowrank(m, cols, rank, seed);
            let whole = decode(&meta, &mut parts.as_slice()).unwrap();
            let mut joined = Vec::new();
            let mut sizes = Vec::new();
            decode_blocks(&meta, &mut parts.as_slice(), block, &mut |b| {
                joined.extend_from_slice(b);
                sizes.push(b.len());
                Ok(())
            })
            .unwrap();
            prop_assert_eq!(joined, whole);
            let rows = (block / cols).clamp(1, m);
            prop_assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == rows * cols));
        }
    }

    #[test]
    fn a_failing_sink_stops_the_decoding() {
        let (meta, parts) = lowrank(10, 8, 1, 3);
        let mut calls = 0;
        let e = decode_blocks(&meta, &mut parts.as_slice(), 16, &mut |_| {
            calls += 1;
            Err("full".into())
        })
        .unwrap_err();
        assert_eq!((e.as_str(), calls), ("full", 1));
    }
}
