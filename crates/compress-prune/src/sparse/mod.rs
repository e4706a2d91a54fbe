//! Sparse storage and inference: CSR with `u16`/`u32` column indices, a CSR x dense kernel,
//! the [`SparseLinear`] layer and Deep Compression's relative-index encoding.

mod csr;
mod linear;
mod relindex;

pub use csr::{ColIndices, Csr, IndexWidth};
pub use linear::{SparseLinear, sparsify_linears};
pub use relindex::{RelativeIndex, relative_index_encode};
