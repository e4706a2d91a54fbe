//! Pruning of tensors (magnitude per tensor or global, N:M, or whole rows), stored as sparse
//! tensors (keep bitmask + kept values, or kept rows) so the file really shrinks.

use compress_prune::{StreamingThreshold, magnitude_mask_into, nm_mask, unit_norms};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Map, json};

use crate::decode::Part;
use crate::error::{CheckpointError, Result};
use crate::format::{Encoding, part_name};
use crate::pipeline::{Encoder, Outcome, tensor_err};
use crate::reader::{Dtype, TensorInfo};

/// Pruning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MethodArg {
    /// Smallest |w| (per tensor, or across all selected tensors with --global).
    #[default]
    Magnitude,
    /// N:M along the input dimension (axis 1): keep N = M * (1 - S) of every M.
    Nm,
    /// Whole rows (output channels, axis 0) with the smallest L2 norm.
    Rows,
}

/// Options of pruning (the `netcompress prune` flags).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct PruneOptions {
    /// Fraction of weights (or rows) to remove, in [0, 1).
    #[cfg_attr(feature = "clap", arg(long))]
    pub sparsity: f64,
    /// Pruning method.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "magnitude"))]
    pub method: MethodArg,
    /// One magnitude threshold across all selected tensors (magnitude method only).
    #[cfg_attr(feature = "clap", arg(long))]
    pub global: bool,
    /// Group length M for N:M (N = M * (1 - sparsity) must be a whole number).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 4))]
    pub m: usize,
    /// Write pruned tensors dense (zeros in place) instead of sparse.
    #[cfg_attr(feature = "clap", arg(long))]
    pub dense: bool,
}

impl PruneOptions {
    /// Magnitude pruning per tensor at `sparsity`, stored sparse (M = 4 for N:M).
    pub fn new(sparsity: f64) -> Self {
        Self {
            sparsity,
            method: MethodArg::Magnitude,
            global: false,
            m: 4,
            dense: false,
        }
    }
}

/// The prune encoder.
#[derive(Debug, Clone)]
pub struct PruneEncoder {
    args: PruneOptions,
    /// The exact global cut, streamed over the selected tensors in two passes (a
    /// checkpoint larger than memory is never held whole).
    global: Option<StreamingThreshold>,
}

impl PruneEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidOption`] for a sparsity outside [0, 1), `--global` with a
    /// method other than magnitude, or an N:M pattern that the sparsity does not give.
    pub fn new(a: &PruneOptions) -> Result<Self> {
        if !(0.0..1.0).contains(&a.sparsity) {
            return Err(CheckpointError::option(
                "--sparsity",
                format!("{} must be in [0, 1)", a.sparsity),
            ));
        }
        if a.global && a.method != MethodArg::Magnitude {
            return Err(CheckpointError::option(
                "--global",
                "only applies to --method magnitude",
            ));
        }
        if a.method == MethodArg::Nm {
            let n = a.m as f64 * (1.0 - a.sparsity);
            if a.m == 0 || (n - n.round()).abs() > 1e-9 || n.round() < 1.0 {
                return Err(CheckpointError::option(
                    "--m",
                    format!(
                        "--sparsity {} with --m {} does not give a whole N for N:M (try 0.5 for 2:4)",
                        a.sparsity, a.m
                    ),
                ));
            }
        }
        let global = if a.global {
            Some(StreamingThreshold::new(a.sparsity)?)
        } else {
            None
        };
        Ok(Self {
            args: a.clone(),
            global,
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
            MethodArg::Magnitude => match &mut self.global {
                Some(g) => g.keep_mask(values).map_err(|e| tensor_err(t, e))?,
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
        if self.global.is_some() {
            StreamingThreshold::PASSES
        } else {
            0
        }
    }

    fn observe(&mut self, t: &TensorInfo, values: &[f32]) -> Result<()> {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(tensor_err(
                t,
                format!("non-finite value {} at flat index {i}", values[i]),
            ));
        }
        if let Some(g) = &mut self.global {
            g.observe(values).map_err(|e| tensor_err(t, e))?;
        }
        Ok(())
    }

    fn finish_prepass(&mut self) -> Result<()> {
        if let Some(g) = &mut self.global {
            g.finish_pass()?;
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
                Part::of(
                    &t.name,
                    "rows",
                    Dtype::Other("U32", 4),
                    vec![rows.len()],
                    crate::writer::u32_bytes(&rows),
                ),
                Part::of(&t.name, "values", t.dtype, vshape, vals),
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
            Part::of(&t.name, "mask", u8d, vec![mask.len()], mask),
            Part::of(&t.name, "values", t.dtype, vec![nnz], vals),
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
