//! Low-rank factorization: truncated SVD (exact or randomized) of `Linear` weights into two
//! thinner layers, with the rank chosen by kept energy, a parameter budget or given.
//!
//! By Eckart-Young the truncated SVD is the best rank-`r` approximation in the Frobenius
//! norm, with error `sqrt(sum of the dropped s_i^2)`. A `Linear(in, out)` of rank `r` costs
//! `r * (in + out)` weights and MACs instead of `in * out`; a `K x K` convolution `M -> N`
//! becomes a `K x K` convolution `M -> r` and a 1x1 convolution `r -> N`
//! (`r (M K^2 + N)` instead of `N M K^2` per output pixel).

/// `Layer` of a factor pair run one after the other (`$first`, then `$second`): forward
/// through both, backward in reverse, and the cost of the first followed by the second.
macro_rules! factor_pair_layer {
    ($ty:ident, $first:ident, $second:ident) => {
        impl<F: Float> Layer<F> for $ty<F> {
            fn name(&self) -> &'static str {
                stringify!($ty)
            }

            fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> CoreResult<ArrayD<F>> {
                let h = self.$first.forward(x, mode)?;
                self.$second.forward(&h, mode)
            }

            fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> CoreResult<ArrayD<F>> {
                let g = self.$second.backward(grad)?;
                self.$first.backward(&g)
            }

            fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
                let c = self.$first.cost(input_shape)?;
                let shape = c.output_shape.clone();
                Ok(c.then(self.$second.cost(&shape)?))
            }
        }
    };
}

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
