//! Embedding distillation for encoders (CLIP-style): cosine, MSE and a contrastive
//! (InfoNCE) relational loss between student and teacher embeddings of a batch.
//!
//! Every loss takes `[N, D]` student and teacher embeddings (row `i` of both embeds the
//! same input), returns a batch-mean loss and its gradient with respect to the
//! **student** embeddings (the teacher is fixed). When the widths differ, project the
//! student first (e.g. with the regressor of a [`HintLoss`](crate::HintLoss) or your
//! own `Linear`).

use compress_core::{Float, TensorExt};
use ndarray::{Array2, ArrayRef, Axis, Ix2};

use crate::Result;
use crate::softmax::{check_pair, check_temperature};
use compress_core::softmax::RowSoftmax;

/// Norms below this are clamped (as PyTorch's `cosine_similarity` `eps`), so a zero
/// embedding gives a finite loss and gradient.
pub const NORM_EPS: f64 = 1e-8;

/// Row-normalised copy of `x` and the (clamped) row norms.
fn normalize_rows<F: Float>(x: &ArrayRef<F, Ix2>) -> (Array2<F>, Vec<F>) {
    let eps = F::lit(NORM_EPS);
    let mut out = x.to_owned();
    let mut norms = Vec::with_capacity(x.nrows());
    for mut row in out.rows_mut() {
        let n = row.l2_norm().max(eps);
        row.mapv_inplace(|v| v / n);
        norms.push(n);
    }
    (out, norms)
}

/// Back-propagates `g` (gradient w.r.t. the normalised rows `xhat`) through
/// `xhat = x / max(|x|, eps)`, in place.
fn normalize_backward<F: Float>(xhat: &Array2<F>, norms: &[F], g: &mut Array2<F>) {
    let eps = F::lit(NORM_EPS);
    for ((mut gr, xr), &n) in g.rows_mut().into_iter().zip(xhat.rows()).zip(norms) {
        if n > eps {
            let d = gr.dot(&xr);
            gr.zip_mut_with(&xr, |gv, &xv| *gv = (*gv - xv * d) / n);
        } else {
            gr.mapv_inplace(|gv| gv / n);
        }
    }
}

/// `mean_i (1 - cos(s_i, t_i))` and its gradient with respect to the student rows.
///
/// Lies in `[0, 2]`; it is `0` when every student row points the same way as its teacher row
/// (any positive scale). Norms are clamped at [`NORM_EPS`].
///
/// # Errors
///
/// A shape mismatch or non-finite embeddings.
///
/// ```
/// use compress_distill::cosine_embedding_loss;
/// use ndarray::array;
/// let t = array![[1.0f64, 2.0], [0.0, 1.0]];
/// let (loss, _) = cosine_embedding_loss(&(&t * 3.0), &t).unwrap();
/// assert!(loss.abs() < 1e-12);
/// ```
pub fn cosine_embedding_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
) -> Result<(F, Array2<F>)> {
    check_pair(student, teacher, "embeddings")?;
    let n = student.nrows();
    if n == 0 {
        return Ok((F::zero(), Array2::zeros(student.raw_dim())));
    }
    let inv_n = F::lit(1.0 / n as f64);
    let (sh, sn) = normalize_rows(student);
    let (th, _) = normalize_rows(teacher);
    let cos_sum = (&sh * &th).sum();
    let loss = F::one() - cos_sum * inv_n;
    let mut g = th.mapv(|v| -v * inv_n);
    normalize_backward(&sh, &sn, &mut g);
    Ok((loss, g))
}

/// Mean squared error over all elements, `mean((s - t)^2)`, and its gradient
/// `2 (s - t) / (N * D)`.
///
/// # Errors
///
/// A shape mismatch or non-finite embeddings.
///
/// ```
/// use compress_distill::mse_embedding_loss;
/// use ndarray::array;
/// let (loss, grad) = mse_embedding_loss(&array![[1.0f32, 0.0]], &array![[0.0f32, 0.0]]).unwrap();
/// assert_eq!(loss, 0.5);
/// assert_eq!(grad[[0, 0]], 1.0);
/// ```
pub fn mse_embedding_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
) -> Result<(F, Array2<F>)> {
    check_pair(student, teacher, "embeddings")?;
    let len = student.len().max(1) as f64;
    let diff = student.to_owned() - teacher;
    let loss = diff.iter().fold(F::zero(), |a, &d| a + d * d) * F::lit(1.0 / len);
    let scale = F::lit(2.0 / len);
    Ok((loss, diff.mapv(|d| d * scale)))
}

/// Settings of the contrastive relational loss [`info_nce_loss`].
///
/// Defaults: `temperature = 0.1`, `symmetric = true`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InfoNceConfig {
    /// Temperature `tau > 0` dividing the cosine similarities.
    pub temperature: f64,
    /// Average the student-to-teacher and teacher-to-student directions (CLIP's loss);
    /// `false` uses student-to-teacher only.
    pub symmetric: bool,
}

impl Default for InfoNceConfig {
    fn default() -> Self {
        Self {
            temperature: 0.1,
            symmetric: true,
        }
    }
}

/// Contrastive relational distillation: with `L_ij = cos(s_i, t_j) / tau`, the
/// cross-entropy of each row of `L` with its diagonal (student `i` must pick out teacher
/// `i` among the batch), averaged with the same for each column when `symmetric`; and
/// its gradient with respect to the student embeddings.
///
/// Unlike the cosine and MSE losses it only asks the student to keep the teacher's
/// relations between samples: it is `ln N`-ish for unrelated embeddings and goes to 0
/// as each student row becomes much closer to its own teacher row than to the others.
///
/// # Errors
///
/// A shape mismatch, non-finite embeddings, or a temperature that is not finite and `> 0`.
///
/// ```
/// use compress_distill::{InfoNceConfig, info_nce_loss};
/// use ndarray::array;
/// let t = array![[1.0f64, 0.0], [0.0, 1.0]];
/// let cfg = InfoNceConfig::default();
/// let (aligned, _) = info_nce_loss(&t, &t, &cfg).unwrap();
/// let (swapped, _) = info_nce_loss(&array![[0.0, 1.0], [1.0, 0.0]], &t, &cfg).unwrap();
/// assert!(aligned < swapped);
/// ```
pub fn info_nce_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    config: &InfoNceConfig,
) -> Result<(F, Array2<F>)> {
    check_temperature("temperature", config.temperature)?;
    check_pair(student, teacher, "embeddings")?;
    let n = student.nrows();
    if n == 0 {
        return Ok((F::zero(), Array2::zeros(student.raw_dim())));
    }
    let inv_tau = F::lit(1.0 / config.temperature);
    let (sh, sn) = normalize_rows(student);
    let (th, _) = normalize_rows(teacher);
    let logits = sh.dot(&th.t()) * inv_tau;
    let inv_n = F::lit(1.0 / n as f64);
    let (row_loss, row_g) = diagonal_ce(&logits, inv_n);
    let (loss, g) = if config.symmetric {
        let lt = logits.t().to_owned();
        let (col_loss, col_g) = diagonal_ce(&lt, inv_n);
        let half = F::lit(0.5);
        ((row_loss + col_loss) * half, (row_g + col_g.t()) * half)
    } else {
        (row_loss, row_g)
    };
    let mut gs = g.dot(&th) * inv_tau;
    normalize_backward(&sh, &sn, &mut gs);
    Ok((loss, gs))
}

/// Mean cross-entropy of each row of a square matrix with its diagonal entry, and the
/// gradient `(softmax - I) / N`.
fn diagonal_ce<F: Float>(logits: &Array2<F>, inv_n: F) -> (F, Array2<F>) {
    let c = logits.ncols();
    let mut g = Array2::zeros(logits.raw_dim());
    let mut sm = RowSoftmax::new(c);
    let mut loss = F::zero();
    for (i, (src, mut gr)) in logits.axis_iter(Axis(0)).zip(g.rows_mut()).enumerate() {
        sm.compute(src.iter(), F::one());
        loss -= sm.logp(i);
        for (j, gv) in gr.iter_mut().enumerate() {
            *gv = sm.p(j) * inv_n;
        }
        gr[i] -= inv_n;
    }
    (loss * inv_n, g)
}
