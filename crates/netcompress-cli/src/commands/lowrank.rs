//! `netcompress lowrank`: truncated SVD of each weight (seen as `[shape[0], rest]`) into two
//! factors, kept only when they are smaller than the original.

use clap::Args;
use compress_arch::lowrank::{RankRule, SvdMethod, truncated_svd};
use ndarray::ArrayView2;
use serde_json::{Map, json};

use super::pipeline::{Encoder, Outcome, print_summary, run_encode, tensor_err};
use super::{IoArgs, SelectArgs};
use crate::decode::Part;
use crate::error::{CliError, Result};
use crate::format::{Encoding, encode_values, part_name};
use crate::safetensors_io::TensorInfo;

/// Arguments of `lowrank`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["energy", "rank"])))]
pub(crate) struct LowrankArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Keep the smallest rank whose singular values hold this fraction of the energy
    /// (||W||_F^2), in (0, 1].
    #[arg(long)]
    pub(crate) energy: Option<f64>,
    /// Use this rank (clamped to min(rows, cols)).
    #[arg(long)]
    pub(crate) rank: Option<usize>,
    /// Always use the exact SVD (default: exact for small matrices, randomized for large).
    #[arg(long)]
    pub(crate) exact: bool,
}

/// The low-rank encoder.
#[derive(Debug, Clone)]
pub(crate) struct LowrankEncoder {
    rule: RankRule,
    method: SvdMethod,
}

impl LowrankEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for an energy outside (0, 1] or a zero rank.
    pub(crate) fn new(a: &LowrankArgs) -> Result<Self> {
        let rule = match (a.energy, a.rank) {
            (Some(e), None) => RankRule::Energy(e),
            (None, Some(r)) => RankRule::Fixed(r),
            _ => {
                return Err(CliError::Usage(
                    "give exactly one of --energy and --rank".into(),
                ));
            }
        };
        rule.validate()
            .map_err(|e| CliError::Usage(format!("lowrank: {e}")))?;
        let method = if a.exact {
            SvdMethod::Exact
        } else {
            SvdMethod::Auto
        };
        Ok(Self { rule, method })
    }
}

impl Encoder for LowrankEncoder {
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

/// Runs `lowrank`.
///
/// # Errors
///
/// Option, input, SVD and output errors.
pub(crate) fn run(a: &LowrankArgs) -> Result<()> {
    let mut enc = LowrankEncoder::new(a)?;
    let summary = run_encode("lowrank", &a.io, &a.select.selector()?, &mut enc)?;
    print_summary(&summary, a.io.json)
}
