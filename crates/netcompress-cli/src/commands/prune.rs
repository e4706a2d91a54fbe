//! `netcompress prune`: magnitude (per tensor or global), N:M, or whole-row pruning, written as
//! sparse tensors (keep bitmask + kept values, or kept rows) so the file really shrinks.

use clap::{Args, ValueEnum};
use compress_prune::{magnitude_mask_into, nm_mask, unit_norms};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Map, json};

use super::pipeline::{Encoder, Outcome, print_summary, run_encode, tensor_err};
use super::{IoArgs, SelectArgs};
use crate::decode::Part;
use crate::error::{CliError, Result};
use crate::format::{Encoding, part_name};
use crate::safetensors_io::{Dtype, TensorInfo};

/// Pruning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodArg {
    /// Smallest |w| (per tensor, or across all selected tensors with --global).
    Magnitude,
    /// N:M along the input dimension (axis 1): keep N = M * (1 - S) of every M.
    Nm,
    /// Whole rows (output channels, axis 0) with the smallest L2 norm.
    Rows,
}

/// Arguments of `prune`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Fraction of weights (or rows) to remove, in [0, 1).
    #[arg(long)]
    pub(crate) sparsity: f64,
    /// Pruning method.
    #[arg(long, value_enum, default_value = "magnitude")]
    pub(crate) method: MethodArg,
    /// One magnitude threshold across all selected tensors (magnitude method only).
    #[arg(long)]
    pub(crate) global: bool,
    /// Group length M for N:M (N = M * (1 - sparsity) must be a whole number).
    #[arg(long, default_value_t = 4)]
    pub(crate) m: usize,
    /// Write pruned tensors dense (zeros in place) instead of sparse.
    #[arg(long)]
    pub(crate) dense: bool,
}

/// `|x|` as an order-preserving integer key (the bits of a non-negative f32 sort like the
/// values).
#[inline]
fn key(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// The exact global magnitude cut over a stream of tensors, in O(total) time and 2 x 256 KiB
/// of memory: two radix-histogram passes (high then low 16 bits of the key) find the key of
/// the k-th smallest |w| and how many entries equal to it are pruned (the first ones in file
/// order, as [`compress_prune::Threshold`] does within one slice). compress-prune's
/// threshold works on one slice in memory; a checkpoint larger than memory needs this
/// streaming form.
#[derive(Debug, Clone)]
struct GlobalCut {
    sparsity: f64,
    round: usize,
    total: u64,
    hist: Vec<u64>,
    high: u32,
    below: u64,
    cut: Option<(u32, u64)>,
}

impl GlobalCut {
    fn new(sparsity: f64) -> Self {
        Self {
            sparsity,
            round: 0,
            total: 0,
            hist: vec![0; 1 << 16],
            high: 0,
            below: 0,
            cut: None,
        }
    }

    fn observe(&mut self, values: &[f32]) {
        for &v in values {
            let k = key(v);
            if self.round == 0 {
                self.hist[(k >> 16) as usize] += 1;
                self.total += 1;
            } else if k >> 16 == self.high {
                self.hist[(k & 0xffff) as usize] += 1;
            }
        }
    }

    /// Ends a round; after round 1 the cut is known.
    fn finish_round(&mut self) {
        let k = ((self.sparsity * self.total as f64).ceil() as u64).min(self.total);
        if k == 0 {
            self.cut = Some((0, 0));
            self.round = 2;
            return;
        }
        let mut below = self.below;
        let mut bin = 0usize;
        while bin + 1 < self.hist.len() && below + self.hist[bin] < k {
            below += self.hist[bin];
            bin += 1;
        }
        if self.round == 0 {
            self.high = bin as u32;
            self.below = below;
            self.hist.iter_mut().for_each(|h| *h = 0);
            self.round = 1;
        } else {
            self.cut = Some(((self.high << 16) | bin as u32, k - below));
            self.round = 2;
        }
    }
}

/// The prune encoder.
#[derive(Debug, Clone)]
pub(crate) struct PruneEncoder {
    args: PruneArgs,
    global: Option<GlobalCut>,
    ties_left: u64,
}

impl PruneEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for a sparsity outside [0, 1), `--global` with a method other
    /// than magnitude, or an N:M pattern that the sparsity does not give.
    pub(crate) fn new(a: &PruneArgs) -> Result<Self> {
        if !(0.0..1.0).contains(&a.sparsity) {
            return Err(CliError::Usage(format!(
                "--sparsity {} must be in [0, 1)",
                a.sparsity
            )));
        }
        if a.global && a.method != MethodArg::Magnitude {
            return Err(CliError::Usage(
                "--global only applies to --method magnitude".into(),
            ));
        }
        if a.method == MethodArg::Nm {
            let n = a.m as f64 * (1.0 - a.sparsity);
            if a.m == 0 || (n - n.round()).abs() > 1e-9 || n.round() < 1.0 {
                return Err(CliError::Usage(format!(
                    "--sparsity {} with --m {} does not give a whole N for N:M (try 0.5 for 2:4)",
                    a.sparsity, a.m
                )));
            }
        }
        Ok(Self {
            args: a.clone(),
            global: a.global.then(|| GlobalCut::new(a.sparsity)),
            ties_left: 0,
        })
    }

    fn keep_mask(&mut self, t: &TensorInfo, values: &[f32]) -> Result<Vec<bool>> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(tensor_err(
                t,
                format!("non-finite value {} at flat index {i}", values[i]),
            ));
        }
        Ok(match self.args.method {
            MethodArg::Magnitude => match &self.global {
                Some(g) => {
                    let (cut, _) = g.cut.unwrap_or((0, 0));
                    values
                        .iter()
                        .map(|&v| {
                            let k = key(v);
                            if k < cut {
                                false
                            } else if k == cut && self.ties_left > 0 {
                                self.ties_left -= 1;
                                false
                            } else {
                                true
                            }
                        })
                        .collect()
                }
                None => {
                    let mut mask = vec![0.0f32; values.len()];
                    magnitude_mask_into(values, self.args.sparsity, &mut mask)
                        .map_err(|e| tensor_err(t, e))?;
                    mask.iter().map(|&m| m != 0.0).collect()
                }
            },
            MethodArg::Nm => {
                let n = (self.args.m as f64 * (1.0 - self.args.sparsity)).round() as usize;
                let w = ArrayD::from_shape_vec(IxDyn(&t.shape), values.to_vec())
                    .map_err(|e| tensor_err(t, e))?;
                let mask =
                    nm_mask(&w, n, self.args.m, None, &t.name).map_err(|e| tensor_err(t, e))?;
                mask.array().iter().map(|&m| m != 0.0).collect()
            }
            MethodArg::Rows => {
                let w = ArrayD::from_shape_vec(IxDyn(&t.shape), values.to_vec())
                    .map_err(|e| tensor_err(t, e))?;
                let norms = unit_norms(&w, 2);
                let mut row_mask = vec![0.0f64; norms.len()];
                magnitude_mask_into(&norms, self.args.sparsity, &mut row_mask)
                    .map_err(|e| tensor_err(t, e))?;
                let inner = values.len() / norms.len();
                row_mask
                    .iter()
                    .flat_map(|&m| std::iter::repeat_n(m != 0.0, inner))
                    .collect()
            }
        })
    }
}

/// Dense bytes of `raw` with the pruned elements set to zero (all-zero bits is +0.0 in every
/// float dtype).
fn zeroed(raw: &[u8], keep: &[bool], size: usize) -> Vec<u8> {
    let mut out = raw.to_vec();
    for (i, &k) in keep.iter().enumerate() {
        if !k {
            out[i * size..(i + 1) * size].fill(0);
        }
    }
    out
}

impl Encoder for PruneEncoder {
    fn prepass_rounds(&self) -> usize {
        if self.global.is_some() { 2 } else { 0 }
    }

    fn observe(&mut self, t: &TensorInfo, values: &[f32]) -> Result<()> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(tensor_err(
                t,
                format!("non-finite value {} at flat index {i}", values[i]),
            ));
        }
        if let Some(g) = &mut self.global {
            g.observe(values);
        }
        Ok(())
    }

    fn finish_prepass(&mut self) -> Result<()> {
        if let Some(g) = &mut self.global {
            g.finish_round();
            if let Some((_, ties)) = g.cut {
                self.ties_left = ties;
            }
        }
        Ok(())
    }

    fn encode(&mut self, t: &TensorInfo, values: &[f32], raw: &[u8]) -> Result<Outcome> {
        let keep = self.keep_mask(t, values)?;
        let n = keep.len();
        let size = t.dtype.size();
        let nnz = keep.iter().filter(|&&k| k).count();
        let mut extra = Map::new();
        extra.insert("sparsity".into(), json!((n - nnz) as f64 / n as f64));
        extra.insert("pruned".into(), json!(n - nnz));
        let u8d = Dtype::Other("U8", 1);
        if self.args.method == MethodArg::Rows && !self.args.dense {
            let inner = n / t.shape[0];
            let rows: Vec<u32> = (0..t.shape[0])
                .filter(|&r| keep[r * inner])
                .map(|r| r as u32)
                .collect();
            let mut vals = Vec::with_capacity(rows.len() * inner * size);
            for &r in &rows {
                let r = r as usize;
                vals.extend_from_slice(&raw[r * inner * size..(r + 1) * inner * size]);
            }
            let mut vshape = t.shape.clone();
            vshape[0] = rows.len();
            let parts = vec![
                Part {
                    name: part_name(&t.name, "rows"),
                    dtype: Dtype::Other("U32", 4),
                    shape: vec![rows.len()],
                    bytes: crate::writer::u32_bytes(&rows),
                },
                Part {
                    name: part_name(&t.name, "values"),
                    dtype: t.dtype,
                    shape: vshape,
                    bytes: vals,
                },
            ];
            let encoding = Encoding::Rows {
                rows: part_name(&t.name, "rows"),
                values: part_name(&t.name, "values"),
            };
            return Ok(Outcome::Encoded {
                encoding,
                parts,
                extra,
            });
        }
        let sparse_bytes = n.div_ceil(8) + nnz * size;
        if self.args.dense || sparse_bytes >= raw.len() {
            let action = if self.args.dense {
                "pruned (dense)"
            } else {
                "pruned (dense: sparse is not smaller)"
            };
            return Ok(Outcome::Dense {
                bytes: zeroed(raw, &keep, size),
                action: action.into(),
                extra,
            });
        }
        let mut mask = vec![0u8; n.div_ceil(8)];
        let mut vals = Vec::with_capacity(nnz * size);
        for (i, &k) in keep.iter().enumerate() {
            if k {
                mask[i / 8] |= 1 << (i % 8);
                vals.extend_from_slice(&raw[i * size..(i + 1) * size]);
            }
        }
        let parts = vec![
            Part {
                name: part_name(&t.name, "mask"),
                dtype: u8d,
                shape: vec![mask.len()],
                bytes: mask,
            },
            Part {
                name: part_name(&t.name, "values"),
                dtype: t.dtype,
                shape: vec![nnz],
                bytes: vals,
            },
        ];
        let encoding = Encoding::Sparse {
            nnz,
            mask: part_name(&t.name, "mask"),
            values: part_name(&t.name, "values"),
        };
        Ok(Outcome::Encoded {
            encoding,
            parts,
            extra,
        })
    }
}

/// Runs `prune`.
///
/// # Errors
///
/// Option, input, pruning and output errors.
pub(crate) fn run(a: &PruneArgs) -> Result<()> {
    let mut enc = PruneEncoder::new(a)?;
    let summary = run_encode("prune", &a.io, &a.select.selector()?, &mut enc)?;
    print_summary(&summary, a.io.json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn global_cut_prunes_exactly_the_smallest(
            chunks in proptest::collection::vec(proptest::collection::vec(-4.0f32..4.0, 1..60), 1..5),
            sparsity in 0.0f64..0.99,
        ) {
            let mut g = GlobalCut::new(sparsity);
            for _ in 0..2 {
                for c in &chunks {
                    g.observe(c);
                }
                g.finish_round();
            }
            let (cut, mut ties) = g.cut.unwrap();
            let all: Vec<f32> = chunks.concat();
            let k = ((sparsity * all.len() as f64).ceil() as usize).min(all.len());
            let pruned: Vec<f32> = all
                .iter()
                .copied()
                .filter(|&v| {
                    let kv = key(v);
                    kv < cut || (kv == cut && ties > 0 && { ties -= 1; true })
                })
                .collect();
            prop_assert_eq!(pruned.len(), k);
            let mut sorted: Vec<f32> = all.iter().map(|v| v.abs()).collect();
            sorted.sort_by(f32::total_cmp);
            let mut got: Vec<f32> = pruned.iter().map(|v| v.abs()).collect();
            got.sort_by(f32::total_cmp);
            prop_assert_eq!(&got[..], &sorted[..k]);
        }
    }
}
