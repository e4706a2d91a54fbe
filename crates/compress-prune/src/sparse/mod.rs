//! Sparse storage and inference: CSR with `u16`/`u32` column indices, a CSR x dense kernel,
//! the [`SparseLinear`] layer and Deep Compression's relative-index encoding; N:M storage
//! ([`NmMatrix`]) and the 2:4 layer [`Sparse24Linear`] on its own kernel.

/// `Module` for a sparse layer whose parameters are `values` and an optional `bias`.
macro_rules! values_bias_module {
    ($t:ident) => {
        impl<F: Float> Module<F> for $t<F> {
            fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
                path.scoped("values", |p| v.visit(p, &self.values));
                if let Some(b) = &self.bias {
                    path.scoped("bias", |p| v.visit(p, b));
                }
            }
            fn visit_mut(
                &mut self,
                path: &mut ParamPath,
                v: &mut dyn ParamVisitorMut<F>,
            ) -> CoreResult<()> {
                path.scoped("values", |p| v.visit_mut(p, &mut self.values))?;
                if let Some(b) = &mut self.bias {
                    path.scoped("bias", |p| v.visit_mut(p, b))?;
                }
                Ok(())
            }
        }
    };
}

use compress_core::surgery::replace_layers;
use compress_core::{Float, Layer};
use compress_nn::Linear;

mod csr;
mod linear;
mod linear24;
mod nm24;
mod relindex;

pub use csr::{ColIndices, Csr, IndexWidth};
pub use linear::{SparseLinear, sparsify_linears};
pub use linear24::{Sparse24Linear, sparsify_24};
pub use nm24::NmMatrix;
pub use relindex::{RelativeIndex, relative_index_encode};

/// Builds a replacement for every [`Linear`] below `model` that `build` returns one for
/// (`None` leaves the layer alone), then puts each in the slot at its path (replaceable
/// slots only) and returns the paths replaced. Every replacement is built before the first
/// one is made, so on error (the first one `build` returns) the model is unchanged.
fn replace_linears<F: Float, L: Layer<F>>(
    model: &mut dyn Layer<F>,
    mut build: impl FnMut(&str, &Linear<F>) -> Option<crate::Result<L>>,
) -> crate::Result<Vec<String>> {
    replace_layers(model, |path, l| {
        let lin = l.as_any().downcast_ref::<Linear<F>>()?;
        build(path, lin).map(|r| r.map(|layer| Box::new(layer) as Box<dyn Layer<F>>))
    })
}
