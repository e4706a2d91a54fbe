//! The eval-mode copy of a [`super::Linear`]'s weight, transposed and padded for
//! [`super::dense`], keyed by the [`Param::version`]s it was built from so it is rebuilt
//! whenever the weight, the bias or their parametrizations may have changed.
//!
//! A general GEMM packs (transposes) the whole weight on every call. On a large batch that
//! is a small overhead, but on a few rows or a narrow output it dominates: a 128x128 layer
//! on 3 rows spent ~7 us packing, and dynamic networks run deep layers on the few samples
//! still in flight. Packing once per weight version removes that cost.

use compress_core::{Float, Param};

use super::dense::{self, Path, padded};

/// Largest `in * padded(out)` kept packed (1 MiB of `f32`, e.g. 512 x 512). Up to it the
/// packed kernel beats the general GEMM at every batch size measured (`nn/linear_eval` vs
/// `nn/linear_gemm`: 8x on one row of 128 x 128, 1.7x on 64 rows of 512 x 512); at
/// 1024 x 1024 on 256 rows the GEMM's cache blocking wins (2.9 ms vs 3.5 ms), and a second
/// copy of a large weight costs real memory.
pub(super) const MAX_PACKED: usize = 1 << 18;

/// `W^T` `[k, padded(n)]` and the bias padded to `padded(n)`.
#[derive(Clone)]
pub(super) struct Packed {
    weight_version: u64,
    bias_version: Option<u64>,
    k: usize,
    n: usize,
    wt: Vec<f32>,
    bias: Option<Vec<f32>>,
    path: Path,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("in", &self.k)
            .field("out", &self.n)
            .field("bias", &self.bias.is_some())
            .field("path", &self.path)
            .finish()
    }
}

/// The path packed products run on for element type `F` and a `[n, k]` weight; `None` when
/// the weight is not `f32`, is too large or empty, or the CPU has no vector FMA (the
/// portable loop would be slower than the general GEMM there).
pub(super) fn eligible<F: Float>(n: usize, k: usize) -> Option<Path> {
    if !F::IS_F32 || k == 0 || n == 0 || k * padded(n) > MAX_PACKED {
        return None;
    }
    Path::best()
}

impl Packed {
    /// Whether this copy was built from the current `weight` and `bias`.
    pub(super) fn is_current<F: Float>(&self, weight: &Param<F>, bias: Option<&Param<F>>) -> bool {
        self.weight_version == weight.version() && self.bias_version == bias.map(Param::version)
    }

    /// Packs the effective `weight` `[n, k]` and `bias` `[n]` (`F` must be `f32`: see
    /// [`eligible`]).
    pub(super) fn new<F: Float>(weight: &Param<F>, bias: Option<&Param<F>>, path: Path) -> Self {
        let w = weight.effective();
        let (n, k) = (w.shape()[0], w.shape()[1]);
        let np = padded(n);
        let mut wt = vec![0.0f32; k * np];
        for (ix, &v) in w.indexed_iter() {
            wt[ix[1] * np + ix[0]] = v.as_f64() as f32;
        }
        let packed_bias = bias.map(|b| {
            let mut v: Vec<f32> = b.effective().iter().map(|&x| x.as_f64() as f32).collect();
            v.resize(np, 0.0);
            v
        });
        Self {
            weight_version: weight.version(),
            bias_version: bias.map(Param::version),
            k,
            n,
            wt,
            bias: packed_bias,
            path,
        }
    }

    /// `y = x W^T (+ b)` for a row-major `x` of `m * k` elements: `m * n` outputs (`None`
    /// unless `F` is `f32`).
    pub(super) fn forward<F: Float>(&self, x: &[f32]) -> Option<Vec<F>> {
        dense::dense_new(self.path, x, self.k, &self.wt, self.n, self.bias.as_deref())
    }
}
