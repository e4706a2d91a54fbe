//! Trained clustering (Han et al.'s trained quantization): a [`Parametrization`] whose forward
//! uses shared centroids and whose backward sums each cluster's gradients into its centroid.

use compress_core::{
    CoreError, Float, Module, Param, ParamFilter, ParamKind, ParamPath, Parametrization,
    Result as CoreResult,
};
use ndarray::{ArrayD, IxDyn};

use super::config::{ClusterConfig, ClusterGranularity};
use super::tensor::{ClusteredTensor, cluster_tensor, groups_of};
use crate::QuantError;
use crate::ptq::for_selected_mut;

/// Where the gradient of the effective weights goes besides the centroids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClusterGradient {
    /// Only the centroids learn (Han et al.): the stored weights receive a zero gradient.
    #[default]
    CentroidsOnly,
    /// The stored weights also receive the gradient unchanged (straight through), so they
    /// can be re-clustered later; forward still uses the centroids.
    StraightThrough,
}

/// Weight clustering as a parametrization: the effective weight of element `i` is
/// `centroids[group(i)][code[i]]`; the stored value is ignored in forward.
///
/// Backward (Han et al. eq. 3): `dL/dc_k = sum of dL/dW_i over the elements with code k`,
/// times `centroid_lr_scale`, accumulated in [`Parametrization::accumulate_own_grad`] into
/// the centroids, a nested parameter `<weight path>.cluster.centroids` (kind
/// [`ParamKind::Parametrization`](compress_core::ParamKind::Parametrization)) that the
/// model's optimizer updates like any other. With sparsity preserved, code 0 is pinned at
/// exactly zero: its gradient is always zero, so it never moves. What the stored weights
/// receive is chosen by [`ClusterGradient`].
///
/// ```
/// use compress_core::{Module, Param};
/// use compress_nn::{Optimizer, Sgd};
/// use compress_quant::{ClusterConfig, ClusterParametrization};
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let w = ArrayD::from_shape_vec(vec![4], vec![1.0f64, 1.2, 3.0, 3.2])?;
/// let mut p = Param::new(w.clone());
/// p.push_parametrization(Box::new(ClusterParametrization::new(&w, &ClusterConfig::new(2))?))?;
/// assert_eq!(p.effective().as_slice().unwrap(), &[1.1, 1.1, 3.1, 3.1]);
/// // Gradient 1 on every element: each centroid gets the sum over its 2 members.
/// p.accumulate_grad(ArrayD::from_elem(vec![4], 1.0))?;
/// assert_eq!(p.named_params()[1].path, "cluster.centroids");
/// // Any optimizer steps the centroids (here plain SGD, lr 0.1).
/// Optimizer::step(&mut Sgd::new(0.1), &mut p)?;
/// let e = p.effective();
/// assert!((e[0] - 0.9).abs() < 1e-12 && (e[3] - 2.9).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterParametrization<F: Float> {
    shape: Vec<usize>,
    granularity: ClusterGranularity,
    clusters: usize,
    pinned_zero: bool,
    codes: Vec<u32>,
    centroids: Param<F>,
    gradient: ClusterGradient,
    centroid_lr_scale: F,
}

impl<F: Float> ClusterParametrization<F> {
    /// Clusters `weights` per `config` and wraps the result.
    ///
    /// # Errors
    ///
    /// As [`cluster_tensor`].
    pub fn new(weights: &ArrayD<F>, config: &ClusterConfig) -> Result<Self, QuantError> {
        Ok(Self::from_clustered(&cluster_tensor(weights, config)?))
    }

    /// Wraps an already clustered tensor.
    pub fn from_clustered(c: &ClusteredTensor<F>) -> Self {
        Self {
            shape: c.shape().to_vec(),
            granularity: c.granularity(),
            clusters: c.clusters(),
            pinned_zero: c.preserves_sparsity(),
            codes: c.codes(),
            centroids: Param::with_kind(
                ArrayD::from_shape_vec(IxDyn(&[c.codebook().len()]), c.codebook().to_vec())
                    .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0]))),
                ParamKind::Parametrization,
            ),
            gradient: ClusterGradient::CentroidsOnly,
            centroid_lr_scale: F::one(),
        }
    }

    /// Chooses what the stored weights receive in backward.
    #[must_use]
    pub fn gradient(mut self, gradient: ClusterGradient) -> Self {
        self.gradient = gradient;
        self
    }

    /// Multiplies the centroids' gradient (default 1; a cluster's gradient is a sum over its
    /// members, so large clusters may want a smaller scale). With plain SGD this scales the
    /// centroids' learning rate.
    #[must_use]
    pub fn centroid_lr_scale(mut self, scale: F) -> Self {
        self.centroid_lr_scale = scale;
        self
    }

    /// The current centroids, group-major.
    pub fn centroids(&self) -> &[F] {
        self.centroids.value().as_slice().unwrap_or(&[])
    }

    /// The code of every element.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// The current state as a [`ClusteredTensor`] (codebook = fine-tuned centroids).
    ///
    /// # Errors
    ///
    /// Never for a parametrization built by this crate (the parts are consistent).
    pub fn to_clustered(&self) -> Result<ClusteredTensor<F>, QuantError> {
        ClusteredTensor::from_parts(
            &self.shape,
            self.granularity,
            self.clusters,
            self.pinned_zero,
            self.centroids().to_vec(),
            &self.codes,
        )
    }

    fn slot(&self, i: usize, glen: usize) -> usize {
        (i / glen.max(1)) * self.clusters + self.codes[i] as usize
    }
}

impl<F: Float> Parametrization<F> for ClusterParametrization<F> {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn validate(&self, shape: &[usize]) -> CoreResult<()> {
        if shape != self.shape.as_slice() {
            return Err(CoreError::shape("cluster", &self.shape, shape));
        }
        Ok(())
    }

    fn forward(&self, _input: &ArrayD<F>) -> ArrayD<F> {
        let (_, glen) = groups_of(&self.shape, self.granularity);
        let c = self.centroids();
        let v: Vec<F> = (0..self.codes.len())
            .map(|i| c[self.slot(i, glen)])
            .collect();
        ArrayD::from_shape_vec(IxDyn(&self.shape), v)
            .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&self.shape)))
    }

    fn backward(&self, _input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        match self.gradient {
            ClusterGradient::CentroidsOnly => grad_output.mapv_into(|_| F::zero()),
            ClusterGradient::StraightThrough => grad_output,
        }
    }

    fn accumulate_own_grad(&mut self, _input: &ArrayD<F>, grad_output: &ArrayD<F>) {
        let (_, glen) = groups_of(&self.shape, self.granularity);
        let mut grad = ArrayD::<F>::zeros(IxDyn(&[self.centroids.len()]));
        for (i, &g) in grad_output.iter().enumerate().take(self.codes.len()) {
            if self.pinned_zero && self.codes[i] == 0 {
                continue;
            }
            grad[self.slot(i, glen)] += g * self.centroid_lr_scale;
        }
        // The shape is the centroids' own, so this cannot fail.
        let _ = self.centroids.accumulate_grad(grad);
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        vec![("centroids", &self.centroids)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        vec![("centroids", &mut self.centroids)]
    }
}

/// What [`cluster_weights`] did to one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterLayerReport {
    /// Parameter path.
    pub path: String,
    /// Number of weights.
    pub params: usize,
    /// Codebook entries per group.
    pub clusters: usize,
    /// Bits per index.
    pub index_bits: u32,
    /// Exact bytes of codebook(s) + packed indices.
    pub bytes: usize,
    /// k-means inertia of the initial clustering.
    pub inertia: f64,
}

/// Attaches a [`ClusterParametrization`] to every parameter `filter` selects (TF-MOT's
/// `cluster_weights`): each is clustered from its current effective value, so a pruning
/// mask below it is respected (use `preserve_sparsity` to keep its zeros).
///
/// `centroid_lr_scale` is passed to [`ClusterParametrization::centroid_lr_scale`].
///
/// # Errors
///
/// The first clustering error, with the parameter path in the message.
pub fn cluster_weights<F: Float>(
    model: &mut dyn Module<F>,
    filter: &ParamFilter,
    config: &ClusterConfig,
    centroid_lr_scale: F,
) -> Result<Vec<ClusterLayerReport>, QuantError> {
    config.validate()?;
    let mut reports = Vec::new();
    for_selected_mut(model, filter, |name, p| {
        if p.is_empty() {
            return Ok(());
        }
        let c = cluster_tensor(&p.effective().into_owned(), config)?;
        reports.push(ClusterLayerReport {
            path: name.to_string(),
            params: c.len(),
            clusters: c.clusters(),
            index_bits: c.index_bits(),
            bytes: c.bytes(),
            inertia: c.inertia(),
        });
        let cp = ClusterParametrization::from_clustered(&c).centroid_lr_scale(centroid_lr_scale);
        Ok(p.push_parametrization(Box::new(cp))?)
    })?;
    Ok(reports)
}

/// The clustered form of every parameter carrying a [`ClusterParametrization`], by path
/// (centroids as fine-tuned so far).
///
/// # Errors
///
/// Never for parametrizations built by this crate.
pub fn export_clustered<F: Float>(
    model: &dyn Module<F>,
) -> Result<Vec<(String, ClusteredTensor<F>)>, QuantError> {
    let mut out = Vec::new();
    let mut err = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            if let Some(cp) = p.find_parametrization::<ClusterParametrization<F>>() {
                match cp.to_clustered() {
                    Ok(c) => out.push((path.to_string(), c)),
                    Err(e) => err = err.take().or(Some(e)),
                }
            }
        },
    );
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
