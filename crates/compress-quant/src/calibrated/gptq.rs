//! GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers"): weights quantized one input column at a time, the rounding
//! error of each column spread over the columns not yet quantized through the inverse
//! Hessian of the layer's squared output error, `H = 2 X^T X`.
//!
//! The inverse Hessian is used through the upper Cholesky factor `U` of `H^-1`
//! (`H^-1 = U^T U`, from faer's `llt`), in blocks of columns with lazy updates of the columns
//! after the block, as the reference implementation does.

use compress_core::CoreError;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use ndarray::{Array2, ArrayView2, s};

use super::grid::{Grid, QuantizedWeight, WeightQuant, check_finite};
use crate::QuantError;

/// GPTQ's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqConfig {
    /// Bits and groups.
    pub quant: WeightQuant,
    /// Dampening added to the Hessian's diagonal, as a fraction of its mean diagonal (0.01
    /// in the paper); in `[0, 1]`.
    pub percdamp: f64,
    /// Quantize columns in order of decreasing Hessian diagonal ("act-order"). With groups,
    /// the groups stay contiguous in the original column order and their grids are fitted
    /// on the weights before any update ("static groups"), so the stored format does not
    /// change.
    pub act_order: bool,
    /// Columns per block of lazy updates (128 in the reference).
    pub block_size: usize,
}

impl GptqConfig {
    /// `quant` with the paper's defaults (1% dampening, blocks of 128, act-order on).
    pub fn new(quant: WeightQuant) -> Self {
        Self {
            quant,
            percdamp: 0.01,
            act_order: true,
            block_size: 128,
        }
    }
}

fn upper_cholesky_of_inverse(
    path: &str,
    h: &Array2<f64>,
    damp: f64,
) -> Result<Mat<f64>, QuantError> {
    let n = h.nrows();
    let hm = Mat::<f64>::from_fn(n, n, |i, j| h[[i, j]]);
    let singular = |pivot: usize| QuantError::SingularHessian {
        path: path.to_string(),
        damp,
        pivot,
    };
    let llt = hm.llt(Side::Lower).map_err(|e| match e {
        faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
            singular(index)
        }
    })?;
    let inv = llt.inverse();
    let l2 = inv.llt(Side::Lower).map_err(|e| match e {
        faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
            singular(index)
        }
    })?;
    let l = l2.L();
    Ok(Mat::from_fn(
        n,
        n,
        |i, j| if j >= i { l[(j, i)] } else { 0.0 },
    ))
}

/// Quantizes `w` (`[out, in]`, a linear layer's weight) with GPTQ against the Hessian `h`
/// (`[in, in]`, e.g. [`InputStats::hessian`](super::InputStats::hessian)). `path` names the
/// layer in errors.
///
/// # Errors
///
/// [`QuantError::UnsupportedBits`] and [`QuantError::GroupSize`] as
/// [`WeightQuant::group_for`]; a shape mismatch between `w` and `h`; an invalid-config
/// error for `percdamp` outside `[0, 1]` or a zero block size; [`CoreError::NonFinite`] for
/// a NaN weight or Hessian entry; [`QuantError::SingularHessian`] when the dampened Hessian
/// is still not positive definite.
pub fn gptq_quantize(
    path: &str,
    w: &ArrayView2<'_, f32>,
    h: &Array2<f64>,
    cfg: &GptqConfig,
) -> Result<QuantizedWeight, QuantError> {
    let (n, k) = w.dim();
    let g = cfg.quant.group_for(path, k)?;
    if h.dim() != (k, k) {
        return Err(CoreError::shape(format!("{path} Hessian"), &[k, k], h.shape()).into());
    }
    if !(0.0..=1.0).contains(&cfg.percdamp) {
        return Err(CoreError::config(
            "percdamp",
            format!("must be in [0, 1], got {}", cfg.percdamp),
        )
        .into());
    }
    if cfg.block_size == 0 {
        return Err(CoreError::config("block_size", "must be at least 1, got 0").into());
    }
    check_finite(path, w.iter().copied())?;
    check_finite(&format!("{path} Hessian"), h.iter().map(|&v| v as f32))?;
    let maxq = cfg.quant.max_code();
    let mut h = h.clone();
    let mut wk: Array2<f64> = w.mapv(f64::from);
    // Dead inputs (never non-zero in the calibration data) cannot affect the output.
    for i in 0..k {
        if h[[i, i]] == 0.0 {
            h[[i, i]] = 1.0;
            wk.column_mut(i).fill(0.0);
        }
    }
    // Static grids (act-order, or one group per row) come from the weights before any
    // update, as the reference fits its per-row grids once.
    let static_grids: Option<Vec<Grid>> = (cfg.act_order || g == k).then(|| {
        let mut grids = Vec::with_capacity(n * k / g);
        for r in 0..n {
            for c0 in (0..k).step_by(g) {
                grids.push(Grid::fit(
                    wk.slice(s![r, c0..c0 + g]).iter().map(|&v| v as f32),
                    maxq,
                ));
            }
        }
        grids
    });
    let mut perm: Vec<usize> = (0..k).collect();
    if cfg.act_order {
        perm.sort_by(|&a, &b| h[[b, b]].total_cmp(&h[[a, a]]));
        let hp = Array2::from_shape_fn((k, k), |(i, j)| h[[perm[i], perm[j]]]);
        h = hp;
        let wp = Array2::from_shape_fn((n, k), |(r, c)| wk[[r, perm[c]]]);
        wk = wp;
    }
    let damp = cfg.percdamp * (0..k).map(|i| h[[i, i]]).sum::<f64>() / k as f64;
    for i in 0..k {
        h[[i, i]] += damp;
    }
    let u = upper_cholesky_of_inverse(path, &h, damp)?;
    let groups_per_row = k / g;
    let mut grids = vec![
        Grid {
            scale: 1.0,
            zero: 0,
            maxq: maxq as i32
        };
        n * groups_per_row
    ];
    if let Some(sg) = &static_grids {
        grids.clone_from(sg);
    }
    let mut codes = vec![0u8; n * k];
    let mut err = Array2::<f64>::zeros((n, cfg.block_size.min(k)));
    for i1 in (0..k).step_by(cfg.block_size) {
        let i2 = (i1 + cfg.block_size).min(k);
        let bs = i2 - i1;
        for i in i1..i2 {
            let col = perm[i];
            if static_grids.is_none() && col.is_multiple_of(g) {
                // Dynamic grids: fitted on the updated weights when the group starts.
                for r in 0..n {
                    grids[r * groups_per_row + col / g] =
                        Grid::fit(wk.slice(s![r, i..i + g]).iter().map(|&v| v as f32), maxq);
                }
            }
            let d = u[(i, i)];
            for r in 0..n {
                let grid = grids[r * groups_per_row + col / g];
                let x = wk[[r, i]];
                let code = grid.code(x as f32);
                codes[r * k + col] = code;
                let e = (x - f64::from(grid.value(code))) / d;
                err[[r, i - i1]] = e;
                for j in i + 1..i2 {
                    wk[[r, j]] -= e * u[(i, j)];
                }
            }
        }
        if i2 < k {
            let ub = Array2::from_shape_fn((bs, k - i2), |(a, b)| u[(i1 + a, i2 + b)]);
            let e = err.slice(s![.., ..bs]);
            let mut rest = wk.slice_mut(s![.., i2..]);
            ndarray::linalg::general_mat_mul(-1.0, &e, &ub, 1.0, &mut rest);
        }
    }
    Ok(QuantizedWeight {
        shape: [n, k],
        quant: cfg.quant,
        group: g,
        codes,
        grids,
    })
}
