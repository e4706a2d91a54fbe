//! Clustering a whole tensor: codebook(s) + packed indices with exact byte counts.

use compress_core::{CoreError, Float, TensorExt};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use super::config::{ClusterConfig, ClusterGranularity, KMeansConfig, index_bits};
use super::kmeans::{kmeans_1d, kmeans_1d_where, nearest};
use super::packed::{IndexPacker, PackedIndices};
use crate::QuantError;

/// A clustered tensor: per group (the whole tensor, or each slice along axis 0) a codebook of
/// `clusters` values, and one packed index per element.
///
/// ```
/// use compress_quant::{ClusterConfig, cluster_tensor};
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let w = ArrayD::from_shape_vec(vec![2, 4], vec![0.1f32, 0.11, -0.5, -0.52, 0.1, 0.9, 0.0, 0.91])?;
/// let c = cluster_tensor(&w, &ClusterConfig::new(4))?;
/// assert_eq!(c.index_bits(), 2);
/// assert_eq!(c.bytes(), 4 * 4 + 2); // codebook of 4 f32 + 8 indices of 2 bits
/// assert!((c.decode()? - &w).iter().all(|e| e.abs() < 0.02));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteredTensor<F: Float> {
    shape: Vec<usize>,
    granularity: ClusterGranularity,
    clusters: usize,
    preserve_sparsity: bool,
    codebook: Vec<F>,
    indices: PackedIndices,
    inertia: f64,
}

/// Number of codebook groups and elements per group for `shape`.
pub(crate) fn groups_of(shape: &[usize], g: ClusterGranularity) -> (usize, usize) {
    let n: usize = shape.iter().product();
    match g {
        ClusterGranularity::PerChannel if !shape.is_empty() && shape[0] > 0 => {
            (shape[0], n / shape[0])
        }
        _ => (1, n),
    }
}

/// Clusters `weights` with k-means per the `config` (per tensor or per output channel,
/// optionally keeping zeros exactly zero).
///
/// # Errors
///
/// [`CoreError::Empty`] for an empty tensor, [`CoreError::NonFinite`] for NaN or infinity
/// (path `"weights"`), [`CoreError::InvalidConfig`] for a bad cluster count.
pub fn cluster_tensor<F: Float>(
    weights: &ArrayRef<F, IxDyn>,
    config: &ClusterConfig,
) -> Result<ClusteredTensor<F>, QuantError> {
    config.validate()?;
    if weights.is_empty() {
        return Err(CoreError::Empty {
            path: "weights".into(),
            shape: weights.shape().to_vec(),
        }
        .into());
    }
    weights.check_finite("weights")?;
    let k = config.kmeans.clusters;
    // A view of the values in row-major order: no copy for a standard-layout tensor.
    let std = weights.as_standard_layout();
    let flat = std
        .as_slice()
        .ok_or_else(|| CoreError::config("weights", "a standard-layout view could not be taken"))?;
    let (groups, glen) = groups_of(weights.shape(), config.granularity);
    let mut codebook = Vec::with_capacity(groups * k);
    let bits = index_bits(k);
    let mut packer = IndexPacker::new(bits, flat.len());
    let mut inertia = 0.0;
    for chunk in flat.chunks(glen) {
        let (centroids, offset) = if config.preserve_sparsity {
            let km = KMeansConfig {
                clusters: k - 1,
                ..config.kmeans
            };
            let c = if chunk.iter().all(|&x| x == F::zero()) {
                vec![0.0; k - 1]
            } else {
                let fit = kmeans_1d_where(chunk, |x| x != F::zero(), &km)?;
                inertia += fit.inertia();
                fit.centroids().to_vec()
            };
            codebook.push(F::zero());
            (c, 1)
        } else {
            let fit = kmeans_1d(chunk, &config.kmeans)?;
            inertia += fit.inertia();
            (fit.centroids().to_vec(), 0)
        };
        codebook.extend(centroids.iter().map(|&c| F::lit(c)));
        for &x in chunk {
            packer.push(if offset == 1 && x == F::zero() {
                0
            } else {
                (nearest(&centroids, x.as_f64()) + offset) as u32
            });
        }
    }
    Ok(ClusteredTensor {
        shape: weights.shape().to_vec(),
        granularity: config.granularity,
        clusters: k,
        preserve_sparsity: config.preserve_sparsity,
        codebook,
        indices: packer.finish()?,
        inertia,
    })
}

impl<F: Float> ClusteredTensor<F> {
    /// Builds a clustered tensor from its parts (e.g. centroids after fine-tuning).
    ///
    /// `codebook` holds `groups * clusters` values, group-major; `codes` one index per
    /// element in row-major order.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when the codebook or the codes have the wrong length,
    /// [`CoreError::InvalidConfig`] when a code is `>= clusters`.
    pub fn from_parts(
        shape: &[usize],
        granularity: ClusterGranularity,
        clusters: usize,
        preserve_sparsity: bool,
        codebook: Vec<F>,
        codes: &[u32],
    ) -> Result<Self, QuantError> {
        let (groups, _) = groups_of(shape, granularity);
        let n: usize = shape.iter().product();
        if codebook.len() != groups * clusters {
            return Err(
                CoreError::shape("codebook", &[groups * clusters], &[codebook.len()]).into(),
            );
        }
        if codes.len() != n {
            return Err(CoreError::shape("codes", &[n], &[codes.len()]).into());
        }
        if let Some(&c) = codes.iter().find(|&&c| c as usize >= clusters) {
            return Err(CoreError::config(
                "codes",
                format!("code {c} is not below {clusters} clusters"),
            )
            .into());
        }
        Ok(Self {
            shape: shape.to_vec(),
            granularity,
            clusters,
            preserve_sparsity,
            codebook,
            indices: PackedIndices::pack(codes, index_bits(clusters))?,
            inertia: f64::NAN,
        })
    }

    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Codebook entries per group.
    pub fn clusters(&self) -> usize {
        self.clusters
    }

    /// Per tensor or per channel.
    pub fn granularity(&self) -> ClusterGranularity {
        self.granularity
    }

    /// Whether entry 0 of each codebook is the pinned exact zero.
    pub fn preserves_sparsity(&self) -> bool {
        self.preserve_sparsity
    }

    /// Number of codebooks (1, or the length of axis 0 per channel).
    pub fn groups(&self) -> usize {
        groups_of(&self.shape, self.granularity).0
    }

    /// All codebooks, group-major (`groups() * clusters()` values).
    pub fn codebook(&self) -> &[F] {
        &self.codebook
    }

    /// The packed indices.
    pub fn indices(&self) -> &PackedIndices {
        &self.indices
    }

    /// The indices, unpacked.
    pub fn codes(&self) -> Vec<u32> {
        self.indices.unpack()
    }

    /// Bits per index.
    pub fn index_bits(&self) -> u32 {
        self.indices.bits()
    }

    /// k-means inertia summed over groups (NaN when built with [`ClusteredTensor::from_parts`]).
    pub fn inertia(&self) -> f64 {
        self.inertia
    }

    /// Exact storage: codebook values at `size_of::<F>()` bytes each plus packed indices.
    pub fn bytes(&self) -> usize {
        self.codebook.len() * std::mem::size_of::<F>() + self.indices.bytes()
    }

    /// The dense tensor with every element replaced by its centroid.
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`] only if the stored shape were inconsistent (it never is when built
    /// through this crate).
    pub fn decode(&self) -> Result<ArrayD<F>, QuantError> {
        let (_, glen) = groups_of(&self.shape, self.granularity);
        let k = self.clusters;
        let values: Vec<F> = self
            .codes()
            .iter()
            .enumerate()
            .map(|(i, &c)| self.codebook[(i / glen.max(1)) * k + c as usize])
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&self.shape), values).map_err(CoreError::from)?)
    }
}
