//! Channel decomposition of a convolution: `K x K` conv to `r` channels, then 1x1 to `N`.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result as CoreResult};
use compress_nn::{Conv2d, Conv2dConfig};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use super::config::LowRankConfig;
use super::svd::{TruncatedSvd, truncated_svd};
use crate::Result;

/// `y = pointwise(spatial(x))`: a rank-`r` replacement of a `K x K` convolution `M -> N`.
///
/// The kernel `W [N, M, K, K]`, seen as an `N x (M K^2)` matrix, is factorized by a truncated
/// SVD: `spatial` is a `K x K` convolution `M -> r` (same stride, padding and dilation, no
/// bias) holding `sqrt(S) V^T`, and `pointwise` a 1x1 convolution `r -> N` holding
/// `U sqrt(S)` and the original bias. Weights and MACs: `r (M K^2 + N)` per output pixel
/// instead of `N M K^2`.
///
/// Parameter paths: `spatial.weight`, `pointwise.weight`, `pointwise.bias`.
#[derive(Debug, Clone, Module)]
pub struct LowRankConv2d<F: Float> {
    /// `K x K` convolution `M -> r`.
    pub spatial: Conv2d<F>,
    /// 1x1 convolution `r -> N`.
    pub pointwise: Conv2d<F>,
}

impl<F: Float> LowRankConv2d<F> {
    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.spatial.out_channels()
    }

    /// Builds the pair from the original configuration, a truncated SVD of its kernel
    /// matrix and its bias.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a grouped convolution, shape errors when `svd` does
    /// not come from this configuration's kernel.
    pub fn from_svd(
        config: &Conv2dConfig,
        svd: &TruncatedSvd<F>,
        bias: Option<ArrayD<F>>,
    ) -> CoreResult<Self> {
        check_ungrouped(config, "")?;
        let r = svd.rank();
        let (left, right) = svd.balanced_factors();
        let (kh, kw) = config.kernel;
        let spatial_cfg = Conv2dConfig {
            out_channels: r,
            bias: false,
            ..*config
        };
        let right = right.into_shape_with_order(IxDyn(&[r, config.in_channels, kh, kw]))?;
        let spatial = Conv2d::from_arrays(spatial_cfg, right, None)?;
        let pw_cfg = Conv2dConfig::new(r, config.out_channels, 1).bias(bias.is_some());
        let left = left.into_shape_with_order(IxDyn(&[config.out_channels, r, 1, 1]))?;
        let pointwise = Conv2d::from_arrays(pw_cfg, left, bias)?;
        Ok(Self { spatial, pointwise })
    }
}

/// Factorizes a convolution (groups 1) by `config`; see [`LowRankConv2d`].
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for a grouped convolution, otherwise as
/// [`truncated_svd`] naming `path`.
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_conv2d};
/// use compress_nn::{Conv2d, Conv2dConfig};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let conv = Conv2d::<f32>::new(Conv2dConfig::new(16, 32, 3).padding(1), &mut StdRng::seed_from_u64(0)).unwrap();
/// let (lr, _) = factorize_conv2d(&conv, &LowRankConfig::new(RankRule::Fixed(8)), "conv").unwrap();
/// assert_eq!(lr.rank(), 8);
/// ```
pub fn factorize_conv2d<F: Float>(
    conv: &Conv2d<F>,
    config: &LowRankConfig,
    path: &str,
) -> Result<(LowRankConv2d<F>, TruncatedSvd<F>)> {
    let cfg = conv.config();
    check_ungrouped(&cfg, &format!("`{path}`: "))?;
    let w = conv.weight.effective();
    let n = cfg.out_channels;
    let cols = w.len() / n.max(1);
    let w = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, cols))
        .map_err(CoreError::from)?;
    let svd = truncated_svd(w.view(), config.rule, config.method, path)?;
    let bias = conv.bias.as_ref().map(|b| b.effective().into_owned());
    Ok((LowRankConv2d::from_svd(&cfg, &svd, bias)?, svd))
}

/// [`CoreError::InvalidConfig`] for a grouped convolution (the channel factorization
/// needs one group); `prefix` starts the message.
fn check_ungrouped(config: &Conv2dConfig, prefix: &str) -> CoreResult<()> {
    if config.groups == 1 {
        return Ok(());
    }
    Err(CoreError::config(
        "groups",
        format!(
            "{prefix}channel factorization needs groups = 1, got {}",
            config.groups
        ),
    ))
}

factor_pair_layer!(LowRankConv2d, spatial, pointwise);
