//! Low-rank factorization of tensors: truncated SVD of each weight (seen as
//! `[shape[0], rest]`) into two factors, kept only when they are smaller than the original.

use compress_arch::lowrank::{RankRule, SvdMethod, truncated_svd};
use ndarray::ArrayView2;
use serde_json::{Map, json};

use super::gram::gram_factors;
use crate::decode::Part;
use crate::error::{CheckpointError, Result};
use crate::format::{Encoding, encode_values, part_name};
use crate::pipeline::{Encoder, Outcome, tensor_err};
use crate::reader::TensorInfo;

/// Options of low-rank factorization (the `netcompress lowrank` flags): exactly one of
/// `energy` and `rank`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(
    feature = "clap",
    command(group(clap::ArgGroup::new("rule").required(true).args(["energy", "rank"])))
)]
pub struct LowrankOptions {
    /// Keep the smallest rank whose singular values hold this fraction of the energy
    /// (||W||_F^2), in (0, 1].
    #[cfg_attr(feature = "clap", arg(long))]
    pub energy: Option<f64>,
    /// Use this rank (clamped to min(rows, cols)).
    #[cfg_attr(feature = "clap", arg(long))]
    pub rank: Option<usize>,
    /// Always use the exact SVD (default: exact for small matrices, randomized for large, and
    /// for tall ones of 4M+ values with at most 1,024 columns the eigenvectors of the Gram
    /// matrix `A^T A`, which keeps memory near the tensor's own size).
    #[cfg_attr(feature = "clap", arg(long))]
    pub exact: bool,
}

/// Tensors of at least this many values whose second side is at most [`GRAM_MAX_SIDE`] are
/// factored through their Gram matrix (without `--exact`).
const GRAM_MIN_VALUES: usize = 1 << 22;
/// The largest Gram matrix side used (`cols x cols` f64: 8 MB at 1,024).
const GRAM_MAX_SIDE: usize = 1024;

/// The low-rank encoder.
#[derive(Debug, Clone)]
pub struct LowrankEncoder {
    rule: RankRule,
    method: SvdMethod,
}

impl LowrankEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidOption`] for an energy outside (0, 1] or a zero rank.
    pub fn new(a: &LowrankOptions) -> Result<Self> {
        let rule = match (a.energy, a.rank) {
            (Some(e), None) => RankRule::Energy(e),
            (None, Some(r)) => RankRule::Fixed(r),
            _ => {
                return Err(CheckpointError::option(
                    "--energy/--rank",
                    "give exactly one of them",
                ));
            }
        };
        rule.validate()
            .map_err(|e| CheckpointError::option("--energy/--rank", e.to_string()))?;
        let method = if a.exact {
            SvdMethod::Exact
        } else {
            SvdMethod::Auto
        };
        Ok(Self { rule, method })
    }
}

impl Encoder for LowrankEncoder {
    /// Works from the f32 values alone: the stored bytes are never read a second time.
    fn needs_raw(&self) -> bool {
        false
    }

    fn encode(&mut self, t: &TensorInfo, values: &[f32], _raw: &[u8]) -> Result<Outcome> {
        let m = t.shape[0];
        let cols = values.len() / m;
        if let RankRule::Fixed(r) = self.rule
            && r.min(m).min(cols) * (m + cols) >= m * cols
        {
            return Ok(Outcome::Keep(format!(
                "rank {r} factors would not be smaller"
            )));
        }
        // A large tall matrix (MiniLM's 30,522 x 384 word embeddings) goes through its small
        // Gram matrix, in memory near the matrix itself; the direct SVD would hold f64 copies
        // of it several times over.
        let gram = self.method == SvdMethod::Auto
            && m >= cols
            && cols <= GRAM_MAX_SIDE
            && values.len() >= GRAM_MIN_VALUES;
        let (r, kept, u, v) = if gram {
            let g =
                gram_factors(values, m, cols, self.rule, &t.name).map_err(|e| tensor_err(t, e))?;
            (g.rank, g.kept_energy_fraction, g.u, g.v)
        } else {
            let a = ArrayView2::from_shape((m, cols), values).map_err(|e| tensor_err(t, e))?;
            let svd =
                truncated_svd(a, self.rule, self.method, &t.name).map_err(|e| tensor_err(t, e))?;
            let (u, v) = svd.balanced_factors();
            let flat = |x: ndarray::Array2<f32>| x.iter().copied().collect::<Vec<f32>>();
            (svd.rank(), svd.kept_energy_fraction(), flat(u), flat(v))
        };
        if r * (m + cols) >= m * cols {
            return Ok(Outcome::Keep(format!(
                "rank {r} factors would not be smaller"
            )));
        }
        let mut extra = Map::new();
        extra.insert("rank".into(), json!(r));
        extra.insert("kept_energy".into(), json!(kept));
        extra.insert(
            "svd".into(),
            json!(if gram { "gram (A^T A)" } else { "direct" }),
        );
        let dtype = t.dtype;
        let bytes = |x: Vec<f32>| encode_values(&x, dtype);
        let parts = vec![
            Part::of(&t.name, "u", dtype, vec![m, r], bytes(u)),
            Part::of(&t.name, "v", dtype, vec![r, cols], bytes(v)),
        ];
        let encoding = Encoding::Lowrank {
            rank: r,
            u: part_name(&t.name, "u"),
            v: part_name(&t.name, "v"),
        };
        Ok(Outcome::Encoded {
            encoding,
            parts,
            extra,
        })
    }
}
