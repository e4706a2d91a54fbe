//! Low-rank factorization: truncated SVD (exact or randomized) of `Linear` weights into two
//! thinner layers, with the rank chosen by kept energy, a parameter budget or given.
//!
//! By Eckart-Young the truncated SVD is the best rank-`r` approximation in the Frobenius
//! norm, with error `sqrt(sum of the dropped s_i^2)`. A `Linear(in, out)` of rank `r` costs
//! `r * (in + out)` weights and MACs instead of `in * out`; a `K x K` convolution `M -> N`
//! becomes a `K x K` convolution `M -> r` and a 1x1 convolution `r -> N`
//! (`r (M K^2 + N)` instead of `N M K^2` per output pixel).

mod config;
mod conv;
mod linear;
mod model;
mod svd;

pub use config::{LowRankConfig, RankRule, SvdMethod};
pub use conv::{LowRankConv2d, factorize_conv2d};
pub use linear::{LowRankLinear, factorize_linear};
pub use model::{
    FactorizedLayer, factorize_layers, factorize_sequential, largest_linears, linear_indices,
};
pub use svd::{TruncatedSvd, randomized_svd, singular_values, svd_exact, truncated_svd};
