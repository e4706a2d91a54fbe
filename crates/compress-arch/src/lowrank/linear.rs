//! A `Linear` layer factorized into two thinner ones.

use compress_core::derive::Module;
use compress_core::{Cost, Float, Layer, Mode, Result as CoreResult};
use compress_nn::Linear;
use ndarray::{ArrayD, ArrayRef, Ix2, IxDyn};

use super::config::LowRankConfig;
use super::svd::{TruncatedSvd, truncated_svd};
use crate::Result;

/// `y = up(down(x))`: a rank-`r` replacement of a `Linear(in, out)`.
///
/// `down` is `Linear(in, r)` without bias (weight `sqrt(S) V^T`), `up` is `Linear(r, out)`
/// carrying the original bias (weight `U sqrt(S)`). Parameter paths are `down.weight`,
/// `up.weight` and `up.bias`. Both are ordinary [`Linear`]s, so pruning, quantization or
/// fine-tuning apply to them unchanged.
///
/// # Shapes
///
/// - input: `[batch, in]`, output: `[batch, out]`
/// - `down.weight`: `[r, in]`, `up.weight`: `[out, r]`, `up.bias`: `[out]`
#[derive(Debug, Clone, Module)]
pub struct LowRankLinear<F: Float> {
    /// `Linear(in, r)`, no bias.
    pub down: Linear<F>,
    /// `Linear(r, out)` with the original bias.
    pub up: Linear<F>,
}

impl<F: Float> LowRankLinear<F> {
    /// Builds the two layers from a truncated SVD of a weight `[out, in]` and its bias.
    ///
    /// # Panics
    ///
    /// If `bias` does not have `svd.u.nrows()` elements.
    #[track_caller]
    pub fn from_svd(svd: &TruncatedSvd<F>, bias: Option<ArrayD<F>>) -> Self {
        let (left, right) = svd.balanced_factors();
        Self {
            down: Linear::from_arrays(right.into_dyn(), None),
            up: Linear::from_arrays(left.into_dyn(), bias),
        }
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.down.out_features()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.down.in_features()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.up.out_features()
    }

    /// The effective product `up.weight @ down.weight`, `[out, in]`.
    ///
    /// # Errors
    ///
    /// Never in practice (both weights are 2-D by construction); a shape error otherwise.
    pub fn product(&self) -> CoreResult<ArrayD<F>> {
        let u = self.up.weight.effective();
        let d = self.down.weight.effective();
        let u = u.view().into_dimensionality::<Ix2>()?;
        let d = d.view().into_dimensionality::<Ix2>()?;
        Ok(u.dot(&d).into_dyn())
    }

    /// Merges back into one `Linear(in, out)` (the product of the factors).
    ///
    /// # Errors
    ///
    /// As [`LowRankLinear::product`].
    pub fn merge(&self) -> CoreResult<Linear<F>> {
        let bias = self.up.bias.as_ref().map(|b| b.effective().into_owned());
        Ok(Linear::from_arrays(self.product()?, bias))
    }
}

/// Factorizes a `Linear` (its effective weight `[out, in]`) by `config`.
///
/// # Errors
///
/// As [`truncated_svd`], naming `path` (e.g. `"2.weight"`).
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_linear};
/// use compress_nn::Linear;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let lin = Linear::<f32>::new(64, 32, true, &mut StdRng::seed_from_u64(0));
/// let (lr, svd) = factorize_linear(&lin, &LowRankConfig::new(RankRule::Fixed(8)), "fc").unwrap();
/// assert_eq!((lr.in_features(), lr.rank(), lr.out_features()), (64, 8, 32));
/// assert!(svd.relative_error() < 1.0);
/// ```
pub fn factorize_linear<F: Float>(
    linear: &Linear<F>,
    config: &LowRankConfig,
    path: &str,
) -> Result<(LowRankLinear<F>, TruncatedSvd<F>)> {
    let w = linear.weight.effective();
    let w = w
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(compress_core::CoreError::from)?;
    let svd = truncated_svd(w, config.rule, config.method, path)?;
    let bias = linear.bias.as_ref().map(|b| b.effective().into_owned());
    Ok((LowRankLinear::from_svd(&svd, bias), svd))
}

factor_pair_layer!(LowRankLinear, down, up);
