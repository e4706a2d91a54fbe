//! Hyperparameters of k-means weight clustering and their validation.

use compress_core::CoreError;

use crate::QuantError;

/// How the k centroids are initialised before Lloyd iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClusterInit {
    /// Evenly spaced between the minimum and maximum value (Han et al.'s best for
    /// Deep Compression: it keeps centroids on the rare large weights).
    #[default]
    Linear,
    /// Quantiles of the value distribution at `(j + 0.5) / k` (TF-MOT's density-based
    /// initialisation: many centroids where many weights are).
    Density,
    /// Greedy k-means++ (D² sampling with `2 + ln k` trials per centroid, as scikit-learn),
    /// done in `O(k² + k log n)` on the sorted values with prefix sums.
    KMeansPlusPlus,
}

/// Configuration of 1-D k-means ([`kmeans_1d`](super::kmeans_1d)).
///
/// Defaults (from [`KMeansConfig::new`]): linear initialisation, at most 300 Lloyd iterations
/// (scikit-learn's default), stop as soon as no point changes cluster, seed 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters `k` (1..=65536).
    pub clusters: usize,
    /// Centroid initialisation.
    pub init: ClusterInit,
    /// Maximum number of Lloyd iterations (0 returns the initial centroids).
    pub max_iter: usize,
    /// Seed for k-means++ sampling.
    pub seed: u64,
}

/// The largest supported number of clusters (16-bit indices).
pub const MAX_CLUSTERS: usize = 1 << 16;

impl KMeansConfig {
    /// `k` clusters with the defaults listed on the type.
    pub fn new(clusters: usize) -> Self {
        Self {
            clusters,
            init: ClusterInit::Linear,
            max_iter: 300,
            seed: 0,
        }
    }

    /// Sets the initialisation.
    #[must_use]
    pub fn init(mut self, init: ClusterInit) -> Self {
        self.init = init;
        self
    }

    /// Sets the maximum number of Lloyd iterations.
    #[must_use]
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Sets the seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the number of clusters.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `clusters` when it is 0 or above [`MAX_CLUSTERS`].
    pub fn validate(&self) -> Result<(), QuantError> {
        if self.clusters == 0 || self.clusters > MAX_CLUSTERS {
            return Err(CoreError::config(
                "clusters",
                format!("must be in 1..={MAX_CLUSTERS}, got {}", self.clusters),
            )
            .into());
        }
        Ok(())
    }
}

/// Whether a tensor shares one codebook or has one per output channel (axis 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClusterGranularity {
    /// One codebook for the whole tensor.
    #[default]
    PerTensor,
    /// One codebook per slice along axis 0 (per output channel of a Linear or Conv weight).
    PerChannel,
}

/// Configuration of tensor clustering ([`cluster_tensor`](super::cluster_tensor)) and of
/// trained clustering ([`cluster_weights`](super::cluster_weights)).
///
/// `kmeans.clusters` is the number of codebook entries, so indices take
/// `ceil(log2(clusters))` bits. With `preserve_sparsity`, entry 0 of every codebook is the
/// exact zero (pinned: fine-tuning never moves it), exact zeros map to it, and the other
/// `clusters - 1` centroids are fitted to the non-zero weights only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterConfig {
    /// The k-means settings; `clusters` counts every codebook entry.
    pub kmeans: KMeansConfig,
    /// Per tensor or per output channel.
    pub granularity: ClusterGranularity,
    /// Keep exact zeros exactly zero (and out of the k-means data).
    pub preserve_sparsity: bool,
}

impl ClusterConfig {
    /// `clusters` codebook entries per tensor, linear init, no sparsity preservation.
    pub fn new(clusters: usize) -> Self {
        Self {
            kmeans: KMeansConfig::new(clusters),
            granularity: ClusterGranularity::PerTensor,
            preserve_sparsity: false,
        }
    }

    /// Sets the initialisation.
    #[must_use]
    pub fn init(mut self, init: ClusterInit) -> Self {
        self.kmeans.init = init;
        self
    }

    /// Sets per-tensor or per-channel codebooks.
    #[must_use]
    pub fn granularity(mut self, granularity: ClusterGranularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// Keeps exact zeros at zero (codebook entry 0).
    #[must_use]
    pub fn preserve_sparsity(mut self, yes: bool) -> Self {
        self.preserve_sparsity = yes;
        self
    }

    /// Sets the maximum number of Lloyd iterations.
    #[must_use]
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.kmeans.max_iter = max_iter;
        self
    }

    /// Sets the k-means++ seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.kmeans.seed = seed;
        self
    }

    /// Bits per index: `ceil(log2(clusters))`, at least 1.
    pub fn index_bits(&self) -> u32 {
        index_bits(self.kmeans.clusters)
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a bad cluster count, or fewer than 2 clusters when
    /// sparsity is preserved (entry 0 is reserved for zero).
    pub fn validate(&self) -> Result<(), QuantError> {
        self.kmeans.validate()?;
        if self.preserve_sparsity && self.kmeans.clusters < 2 {
            return Err(CoreError::config(
                "clusters",
                format!(
                    "must be at least 2 with preserve_sparsity (entry 0 is the zero), got {}",
                    self.kmeans.clusters
                ),
            )
            .into());
        }
        Ok(())
    }
}

/// `ceil(log2(k))`, at least 1: the bits an index into `k` entries needs.
pub fn index_bits(k: usize) -> u32 {
    if k <= 2 {
        1
    } else {
        usize::BITS - (k - 1).leading_zeros()
    }
}
