//! The eval-mode copy of a [`super::Linear`]'s weight, transposed, padded and cut into
//! panels for [`super::dense`], keyed by the [`Param::version`]s it was built from so it is rebuilt
//! whenever the weight, the bias or their parametrizations may have changed.
//!
//! A general GEMM packs (transposes) the whole weight on every call. On a large batch that
//! is a small overhead, but on a few rows or a narrow output it dominates: a 128x128 layer
//! on 3 rows spent ~7 us packing, and dynamic networks run deep layers on the few samples
//! still in flight. Packing once per weight version removes that cost.

use compress_core::{Float, Param};

use super::dense::{self, Path, padded};

/// Largest `in * padded(out)` kept packed (4 MiB of `f32`, e.g. 1024 x 1024 or a
/// transformer's 384 x 1536). Up to it the packed kernel, which never repacks the weight,
/// beats the general GEMM (`crate::gemm`, which packs it on every call) on one thread:
/// 1 x 128 x 128 0.8 us vs 4.2 us, 128 x 384 x 384 146 vs 160 us, 128 x 384 x 1536 592 vs
/// 836 us, 4096 x 384 x 1536 18.7 vs 22.0 ms (CPU time, AVX-512). Beyond it a second copy
/// of the weight costs too much memory.
pub(super) const MAX_PACKED: usize = 1 << 20;

/// With more than this many inputs and at least [`MANY_ROWS`] rows, the general GEMM's
/// cache blocking over `in` wins (4096 x 1536 x 384: 22.1 ms vs 29.0 ms; 256 x 1024 x 1024:
/// 2.8 ms vs 3.4 ms), so such products take it.
const DEEP: usize = 512;

/// See [`DEEP`].
const MANY_ROWS: usize = 256;

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

/// The path a packed product of `m` rows runs on for element type `F` and a `[n, k]`
/// weight; `None` when the weight is not `f32`, is too large or empty, the product is deep
/// and tall enough for the general GEMM to win ([`DEEP`]), or the CPU has no vector FMA
/// (the portable loop would be slower than the general GEMM there).
pub(super) fn eligible<F: Float>(m: usize, n: usize, k: usize) -> Option<Path> {
    if !F::IS_F32 || k == 0 || n == 0 || k * padded(n) > MAX_PACKED {
        return None;
    }
    if k > DEEP && m >= MANY_ROWS {
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
        let w = w.as_standard_layout();
        let ws = w.as_slice().expect("a standard-layout array is contiguous");
        let wt = dense::pack(k, n, |p, j| ws[j * k + p].as_f64() as f32);
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
