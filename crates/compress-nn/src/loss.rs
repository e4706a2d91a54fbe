//! Losses with their gradients, and classification helpers.

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, Axis, Ix2};

use crate::{NnError, Result, kernels};

/// Row-wise softmax of `[N, C]` logits (max-subtracted, so any finite logits are safe).
pub fn softmax<F: Float>(logits: &ArrayRef<F, Ix2>) -> Array2<F> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}

/// Row-wise log-softmax of `[N, C]` logits (log-sum-exp with the maximum subtracted).
pub fn log_softmax<F: Float>(logits: &ArrayRef<F, Ix2>) -> Array2<F> {
    let mut out = logits.to_owned();
    let cols = out.ncols();
    if cols > 0
        && let (Some(x), Some(o)) = (logits.as_slice(), out.as_slice_mut())
    {
        kernels::log_softmax_rows(o, x, cols);
        return out;
    }
    for mut row in out.rows_mut() {
        let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
        let lse = row.iter().fold(F::zero(), |a, &v| a + (v - m).exp()).ln() + m;
        row.mapv_inplace(|v| v - lse);
    }
    out
}

fn check_labels<F: Float>(logits: &ArrayRef<F, Ix2>, labels: &[usize]) -> Result<()> {
    if logits.nrows() != labels.len() {
        return Err(CoreError::shape("labels", &[logits.nrows()], &[labels.len()]).into());
    }
    let classes = logits.ncols();
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(NnError::Label {
            index,
            label,
            classes,
        });
    }
    Ok(())
}

/// Mean softmax cross-entropy of `[N, C]` logits against class labels, and its gradient
/// with respect to the logits (`(softmax - onehot) / N`).
///
/// # Errors
///
/// A shape mismatch when `labels.len() != N`, [`NnError::Label`] for a label `>= C`.
///
/// ```
/// use compress_nn::loss::softmax_cross_entropy;
/// use ndarray::array;
/// let (loss, grad) = softmax_cross_entropy(&array![[0.0f64, 0.0]], &[1]).unwrap();
/// assert!((loss - 2f64.ln()).abs() < 1e-12);
/// assert!((grad[[0, 1]] + 0.5).abs() < 1e-12);
/// ```
pub fn softmax_cross_entropy<F: Float>(
    logits: &ArrayRef<F, Ix2>,
    labels: &[usize],
) -> Result<(F, Array2<F>)> {
    check_labels(logits, labels)?;
    let n = logits.nrows();
    if n == 0 {
        return Ok((F::zero(), logits.to_owned()));
    }
    let inv_n = F::one() / F::lit(n as f64);
    if logits.ncols() > 0
        && let Some(x) = logits.as_slice()
    {
        let mut grad = Array2::zeros(logits.raw_dim());
        let mut logp_label = vec![F::zero(); n];
        if let Some(g) = grad.as_slice_mut() {
            kernels::softmax_xent_rows(g, &mut logp_label, x, inv_n, labels);
            let loss = logp_label.iter().fold(F::zero(), |l, &v| l - v);
            return Ok((loss * inv_n, grad));
        }
    }
    let logp = log_softmax(logits);
    let mut loss = F::zero();
    let mut grad = logp.mapv(|v| v.exp());
    for (i, &y) in labels.iter().enumerate() {
        loss -= logp[[i, y]];
        grad[[i, y]] -= F::one();
    }
    grad.mapv_inplace(|g| g * inv_n);
    Ok((loss * inv_n, grad))
}

/// Mean squared error over all elements, and its gradient `2 (pred - target) / len`.
///
/// # Errors
///
/// A shape mismatch when `pred` and `target` differ in shape.
pub fn mse<F: Float, D: ndarray::Dimension>(
    pred: &ArrayRef<F, D>,
    target: &ArrayRef<F, D>,
) -> Result<(F, ndarray::Array<F, D>)> {
    if pred.shape() != target.shape() {
        return Err(CoreError::shape("mse target", pred.shape(), target.shape()).into());
    }
    let n = F::lit(pred.len().max(1) as f64);
    let diff = pred.to_owned() - target;
    let loss = diff.iter().fold(F::zero(), |a, &d| a + d * d) / n;
    Ok((loss, diff.mapv(|d| F::lit(2.0) * d / n)))
}

/// Index of the largest value in each row (first one on ties; NaN never wins).
pub fn argmax_rows<F: Float>(x: &ArrayRef<F, Ix2>) -> Vec<usize> {
    x.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Fraction of `pred` equal to `labels` (0 for empty input).
pub fn accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    pred.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64
}
