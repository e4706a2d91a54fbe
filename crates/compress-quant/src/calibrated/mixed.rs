//! Per-layer sensitivity and mixed precision: how much each layer alone at each bit width
//! hurts the model's output, and a choice of widths per layer under a byte budget.

use compress_core::surgery::replace_layer;
use compress_core::{CoreError, Layer};

use super::model::QuantizedLinear;
use crate::QuantError;

/// One way to store a layer: its bytes and the output loss it causes alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerOption {
    /// Code width.
    pub bits: u32,
    /// Bytes of the layer stored this way.
    pub bytes: usize,
    /// The model's output loss with only this layer quantized this way (e.g. `1 - mean
    /// cosine` of embeddings); lower is better.
    pub loss: f64,
}

/// The options of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerChoices {
    /// Layer path.
    pub path: String,
    /// Its options (any order).
    pub options: Vec<LayerOption>,
}

/// Measures each layer's sensitivity: for every layer `i` and candidate `j`
/// (`candidates[j][i]`, the same layers in the same order for every `j`), the layer alone
/// is swapped for its quantized kernel in the model `root(target)` (e.g. the BERT model of a
/// sentence encoder), `loss(target)` is measured, and the original layer is put back.
///
/// # Errors
///
/// An invalid-config error when the candidate lists differ in length or order; the errors
/// of `loss` and of the swap (the model is restored first).
pub fn layer_sensitivity<T>(
    target: &mut T,
    root: for<'a> fn(&'a mut T) -> &'a mut dyn Layer<f32>,
    candidates: &[Vec<QuantizedLinear>],
    mut loss: impl FnMut(&mut T) -> compress_core::Result<f64>,
) -> Result<Vec<LayerChoices>, QuantError> {
    let Some(first) = candidates.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(first.len());
    for (i, layer) in first.iter().enumerate() {
        let mut options = Vec::new();
        for c in candidates {
            let q = c.get(i).filter(|q| q.path == layer.path).ok_or_else(|| {
                QuantError::from(CoreError::config(
                    "candidates",
                    format!("every candidate must list `{}` at position {i}", layer.path),
                ))
            })?;
            let kernel = q.layer()?;
            let original = replace_layer(root(target), &q.path, kernel)?;
            let l = loss(target);
            replace_layer(root(target), &q.path, original)?;
            let bits = match q.weight.scheme() {
                crate::QuantScheme::Int(s) => s.bits,
                _ => 16,
            };
            options.push(LayerOption {
                bits,
                bytes: q.size_bytes(),
                loss: l?,
            });
        }
        out.push(LayerChoices {
            path: layer.path.clone(),
            options,
        });
    }
    Ok(out)
}

/// Chooses one option per layer with total bytes at most `budget`, greedily: every layer
/// starts at its smallest option, then the upgrade with the largest loss reduction per extra
/// byte that still fits is taken, until none fits or helps. Returns the chosen option index
/// per layer.
///
/// # Errors
///
/// An invalid-config error naming the budget when even the smallest options exceed it, or
/// a layer without options.
pub fn choose_bits(layers: &[LayerChoices], budget: usize) -> Result<Vec<usize>, QuantError> {
    let mut pick = Vec::with_capacity(layers.len());
    for l in layers {
        let smallest = (0..l.options.len())
            .min_by_key(|&j| (l.options[j].bytes, l.options[j].loss.to_bits()))
            .ok_or_else(|| {
                QuantError::from(CoreError::config(
                    format!("layer `{}`", l.path),
                    "has no options",
                ))
            })?;
        pick.push(smallest);
    }
    let mut total: usize = layers
        .iter()
        .zip(&pick)
        .map(|(l, &j)| l.options[j].bytes)
        .sum();
    if total > budget {
        return Err(CoreError::config(
            "budget",
            format!("{budget} bytes is below the smallest assignment ({total} bytes)"),
        )
        .into());
    }
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for (i, l) in layers.iter().enumerate() {
            let cur = l.options[pick[i]];
            for (j, o) in l.options.iter().enumerate() {
                let gain = cur.loss - o.loss;
                if gain <= 0.0 || o.bytes < cur.bytes {
                    continue;
                }
                let extra = o.bytes - cur.bytes;
                if total + extra > budget {
                    continue;
                }
                let ratio = gain / (extra.max(1) as f64);
                if best.is_none_or(|(r, _, _)| ratio > r) {
                    best = Some((ratio, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        total = total + layers[i].options[j].bytes - layers[i].options[pick[i]].bytes;
        pick[i] = j;
    }
    Ok(pick)
}
