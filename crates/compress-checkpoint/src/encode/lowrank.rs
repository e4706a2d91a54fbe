//! Low-rank factorization of tensors: truncated SVD of each weight (seen as
//! `[shape[0], rest]`) into two factors, kept only when they are smaller than the original.

use compress_arch::lowrank::{RankRule, SvdMethod, truncated_svd};
use ndarray::ArrayView2;
use serde_json::{Map, json};

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
    /// Always use the exact SVD (default: exact for small matrices, randomized for large).
    #[cfg_attr(feature = "clap", arg(long))]
    pub exact: bool,
}

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
        let a = ArrayView2::from_shape((m, cols), values).map_err(|e| tensor_err(t, e))?;
        let svd =
            truncated_svd(a, self.rule, self.method, &t.name).map_err(|e| tensor_err(t, e))?;
        let r = svd.rank();
        if r * (m + cols) >= m * cols {
            return Ok(Outcome::Keep(format!(
                "rank {r} factors would not be smaller"
            )));
        }
        let (u, v) = svd.balanced_factors();
        let mut extra = Map::new();
        extra.insert("rank".into(), json!(r));
        extra.insert("kept_energy".into(), json!(svd.kept_energy_fraction()));
        let dtype = t.dtype;
        let bytes = |x: ndarray::Array2<f32>| {
            let v: Vec<f32> = x.iter().copied().collect();
            encode_values(&v, dtype)
        };
        let parts = vec![
            Part {
                name: part_name(&t.name, "u"),
                dtype,
                shape: vec![m, r],
                bytes: bytes(u),
            },
            Part {
                name: part_name(&t.name, "v"),
                dtype,
                shape: vec![r, cols],
                bytes: bytes(v),
            },
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
