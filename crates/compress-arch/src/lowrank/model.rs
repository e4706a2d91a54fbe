//! Model-level factorization: by path in any model, or by index in a `Sequential`.

use compress_core::surgery::{find_layer, replace_layer, with_layer_mut};
use compress_core::{CoreError, Float, Layer};
use compress_nn::{Conv2d, Linear, Sequential};

use super::config::LowRankConfig;
use super::conv::factorize_conv2d;
use super::linear::factorize_linear;
use crate::{ArchError, Result};

/// What happened to one layer of a model-level factorization.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorizedLayer {
    /// Index in the `Sequential` ([`factorize_sequential`]) or position in the list of paths
    /// ([`factorize_layers`]).
    pub index: usize,
    /// Path of the layer in the model (`"2"` in a `Sequential`, `"block.fc1"` in a struct).
    pub path: String,
    /// Layer type before (`"Linear"`, `"Conv2d"`).
    pub kind: &'static str,
    /// Rows of the factorized matrix (output features or channels).
    pub rows: usize,
    /// Columns of the factorized matrix (input features, or `in_channels * kh * kw`).
    pub cols: usize,
    /// Chosen rank.
    pub rank: usize,
    /// Weights before (`rows * cols`; biases are unchanged and not counted).
    pub weights_before: usize,
    /// Weights after (`rank * (rows + cols)`, or `weights_before` when skipped).
    pub weights_after: usize,
    /// Fraction of `||W||_F^2` kept by the rank-`r` factors.
    pub kept_energy: f64,
    /// `||W - W_r||_F / ||W||_F`.
    pub relative_error: f64,
    /// `true` when the layer was left alone because the factors would not be smaller.
    pub skipped: bool,
}

/// Indices of the [`Linear`] layers of `model`, in order.
pub fn linear_indices<F: Float>(model: &Sequential<F>) -> Vec<usize> {
    (0..model.len())
        .filter(|&i| model.get::<Linear<F>>(i).is_some())
        .collect()
}

/// Indices of the `k` [`Linear`] layers with the most weights (ties: the earlier first),
/// returned in increasing index order.
pub fn largest_linears<F: Float>(model: &Sequential<F>, k: usize) -> Vec<usize> {
    let mut idx = linear_indices(model);
    idx.sort_by_key(|&i| {
        let n = model.get::<Linear<F>>(i).map_or(0, |l| l.weight.len());
        (std::cmp::Reverse(n), i)
    });
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

/// Replaces each [`Linear`] at `indices` by a [`LowRankLinear`](super::LowRankLinear) and
/// each [`Conv2d`] (groups 1) by a [`LowRankConv2d`](super::LowRankConv2d), with the rank
/// chosen by `config`, in place (the layer keeps its index, so paths become
/// `i.down.weight`, `i.up.weight`, `i.up.bias`, or `i.spatial.weight`, `i.pointwise.*`).
///
/// Every layer is factorized before any is replaced, so on error the model is unchanged.
/// Fine-tune afterwards with any optimizer: the factors are ordinary `Linear`s.
///
/// # Errors
///
/// [`ArchError::LayerIndex`] / [`ArchError::WrongLayer`] for an index that is out of range
/// or neither a `Linear` nor a `Conv2d`; [`CoreError::InvalidConfig`](compress_core::CoreError)
/// for a grouped convolution; SVD errors as [`truncated_svd`](super::truncated_svd), naming
/// `"{index}.weight"`.
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_sequential, largest_linears};
/// use compress_core::Module;
/// use compress_nn::models::mlp;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 128, 64, 10], &mut StdRng::seed_from_u64(0));
/// let before = net.num_params();
/// let targets = largest_linears(&net, 2);
/// assert_eq!(targets, vec![0, 2]);
/// let report = factorize_sequential(&mut net, &targets,
///     &LowRankConfig::new(RankRule::ParamsFraction(0.5))).unwrap();
/// assert!(report.iter().all(|r| !r.skipped));
/// assert!(net.num_params() < before);
/// ```
pub fn factorize_sequential<F: Float>(
    model: &mut Sequential<F>,
    indices: &[usize],
    config: &LowRankConfig,
) -> Result<Vec<FactorizedLayer>> {
    config.rule.validate()?;
    let mut paths = Vec::with_capacity(indices.len());
    for &index in indices {
        let layer = model.layers().get(index).ok_or(ArchError::LayerIndex {
            index,
            len: model.len(),
        })?;
        if factorizable(layer.as_ref()).is_none() {
            return Err(ArchError::WrongLayer {
                index,
                expected: "Linear or Conv2d",
                found: layer.name(),
            });
        }
        paths.push(index.to_string());
    }
    let mut out = factorize_layers(model, &paths, config)?;
    for (info, &index) in out.iter_mut().zip(indices) {
        info.index = index;
    }
    Ok(out)
}

/// `"Linear"` or `"Conv2d"` when `layer` is one that can be factorized.
fn factorizable<F: Float>(layer: &dyn Layer<F>) -> Option<&'static str> {
    let any = layer.as_any();
    if any.is::<Linear<F>>() {
        Some("Linear")
    } else if any.is::<Conv2d<F>>() {
        Some("Conv2d")
    } else {
        None
    }
}

/// A layer's replacement (`None` when skipped) and its report.
type Planned<F> = (Option<Box<dyn Layer<F>>>, FactorizedLayer);

/// The factorization of one layer.
fn factorize_one<F: Float>(
    layer: &dyn Layer<F>,
    path: &str,
    index: usize,
    config: &LowRankConfig,
) -> Result<Planned<F>> {
    let any = layer.as_any();
    let wpath = format!("{path}.weight");
    let (kind, rows, cols, replacement, svd): (_, _, _, Box<dyn Layer<F>>, _) =
        if let Some(lin) = any.downcast_ref::<Linear<F>>() {
            let (lr, svd) = factorize_linear(lin, config, &wpath)?;
            (
                "Linear",
                lin.out_features(),
                lin.in_features(),
                Box::new(lr),
                svd,
            )
        } else if let Some(conv) = any.downcast_ref::<Conv2d<F>>() {
            let (lr, svd) = factorize_conv2d(conv, config, &wpath)?;
            let rows = conv.out_channels();
            ("Conv2d", rows, conv.weight.len() / rows, Box::new(lr), svd)
        } else {
            return Err(ArchError::WrongLayerAt {
                path: path.to_string(),
                expected: "Linear or Conv2d",
                found: layer.name(),
            });
        };
    let rank = svd.rank();
    let before = rows * cols;
    let after = rank * (rows + cols);
    let skipped = config.only_if_smaller && after >= before;
    let info = FactorizedLayer {
        index,
        path: path.to_string(),
        kind,
        rows,
        cols,
        rank,
        weights_before: before,
        weights_after: if skipped { before } else { after },
        kept_energy: svd.kept_energy_fraction(),
        relative_error: svd.relative_error(),
        skipped,
    };
    Ok(((!skipped).then_some(replacement), info))
}

/// Replaces the [`Linear`] or [`Conv2d`] (groups 1) at each of `paths` below `model` (any
/// model that lists its children, see [`compress_core::surgery`]) by its low-rank pair,
/// as [`factorize_sequential`] does by index. The reports' `index` is the position in
/// `paths`.
///
/// Every layer is factorized before any is replaced, so on error the model is unchanged.
///
/// # Errors
///
/// [`CoreError::MissingParam`](compress_core::CoreError::MissingParam) for a path with no
/// layer; [`ArchError::WrongLayerAt`] for a layer that is neither a `Linear` nor a
/// `Conv2d`; [`CoreError::InvalidState`](compress_core::CoreError::InvalidState) for a layer
/// stored as a concrete field (it cannot change type); SVD errors as in
/// [`factorize_sequential`].
///
/// ```
/// use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_layers};
/// use compress_core::Module;
/// use compress_nn::models::mlp;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 128, 10], &mut StdRng::seed_from_u64(0));
/// let r = factorize_layers(&mut net, &["0"], &LowRankConfig::new(RankRule::Fixed(8))).unwrap();
/// assert_eq!((r[0].path.as_str(), r[0].rank), ("0", 8));
/// assert_eq!(net.named_params()[0].path, "0.down.weight");
/// ```
pub fn factorize_layers<F: Float, S: AsRef<str>>(
    model: &mut dyn Layer<F>,
    paths: &[S],
    config: &LowRankConfig,
) -> Result<Vec<FactorizedLayer>> {
    config.rule.validate()?;
    let mut planned = Vec::with_capacity(paths.len());
    for (index, path) in paths.iter().enumerate() {
        let path = path.as_ref();
        let layer = find_layer(&*model, path).ok_or_else(|| CoreError::MissingParam {
            path: path.to_string(),
        })?;
        planned.push(factorize_one(layer, path, index, config)?);
        with_layer_mut(&mut *model, path, |slot| {
            if slot.is_replaceable() {
                Ok(())
            } else {
                Err(CoreError::InvalidState {
                    layer: path.to_string(),
                    reason: "is stored as a concrete type and cannot be replaced by its \
                             low-rank factors"
                        .to_string(),
                })
            }
        })?;
    }
    let mut out = Vec::with_capacity(planned.len());
    for (lr, info) in planned {
        if let Some(lr) = lr {
            replace_layer(&mut *model, &info.path, lr)?;
        }
        out.push(info);
    }
    Ok(out)
}
