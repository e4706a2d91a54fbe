//! How a granularity splits a tensor into blocks that share quantization parameters.

use compress_core::CoreError;

use crate::{Granularity, QuantError};

/// A row-major tensor seen as consecutive blocks of `block_len` elements; block `b` uses
/// parameter set `param(b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLayout {
    /// Elements per block.
    pub(crate) block_len: usize,
    /// Number of blocks.
    pub(crate) blocks: usize,
    /// Number of parameter sets (scales).
    pub(crate) params: usize,
    /// Parameter sets cycle with this period over blocks (per-channel), or `0` when block
    /// `b` has its own set (per-tensor, per-group).
    period: usize,
}

impl BlockLayout {
    /// The parameter set of block `b`.
    #[inline]
    pub(crate) fn param(&self, b: usize) -> usize {
        if self.period == 0 { b } else { b % self.period }
    }

    /// Splits `shape` by `granularity`; `path` names the tensor in errors.
    pub(crate) fn new(
        shape: &[usize],
        granularity: Granularity,
        path: &str,
    ) -> Result<Self, QuantError> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(CoreError::Empty {
                path: path.to_string(),
                shape: shape.to_vec(),
            }
            .into());
        }
        Ok(match granularity {
            Granularity::PerTensor => Self {
                block_len: n,
                blocks: 1,
                params: 1,
                period: 0,
            },
            Granularity::PerChannel { axis } => {
                if axis >= shape.len() {
                    return Err(CoreError::config(
                        "axis",
                        format!("channel axis {axis} out of range for `{path}` of shape {shape:?}"),
                    )
                    .into());
                }
                let inner: usize = shape[axis + 1..].iter().product();
                Self {
                    block_len: inner,
                    blocks: n / inner,
                    params: shape[axis],
                    period: shape[axis],
                }
            }
            Granularity::PerGroup { group_size } => {
                let Some(&last) = shape.last() else {
                    return Err(CoreError::config(
                        "granularity",
                        format!("per-group quantization needs at least one axis at `{path}`"),
                    )
                    .into());
                };
                if group_size == 0 || last % group_size != 0 {
                    return Err(QuantError::GroupSize {
                        path: path.to_string(),
                        group_size,
                        dim: shape.len() - 1,
                        len: last,
                    });
                }
                Self {
                    block_len: group_size,
                    blocks: n / group_size,
                    params: n / group_size,
                    period: 0,
                }
            }
        })
    }
}
