//! k-means weight clustering: fast exact 1-D k-means (linear, density and k-means++
//! initialisation), per-tensor or per-channel codebooks with packed indices and exact byte
//! counts, optional sparsity preservation, and trained clustering (shared-centroid
//! fine-tuning, Han et al. eq. 3) as a [`Parametrization`](compress_core::Parametrization).

mod config;
mod kmeans;
mod packed;
mod sort;
mod tensor;
mod trained;

pub use config::{
    ClusterConfig, ClusterGranularity, ClusterInit, KMeansConfig, MAX_CLUSTERS, index_bits,
};
pub use kmeans::{KMeans1d, kmeans_1d};
pub use packed::PackedIndices;
pub use tensor::{ClusteredTensor, cluster_tensor};
pub use trained::{
    ClusterGradient, ClusterLayerReport, ClusterParametrization, cluster_weights, export_clustered,
};
