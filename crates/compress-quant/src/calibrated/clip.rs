//! AWQ's weight clipping search (Lin et al. 2023, the second half of AWQ): for every output
//! row and group of input columns, the quantization range is shrunk towards zero by the
//! ratio (of a small grid) that minimises that group's contribution to the layer's output
//! error on the calibration inputs.
//!
//! The error of one row group is its share of the output error, `d^T H_g d` with
//! `d = Q(w_g) - w_g` the group's rounding error and `H_g` the group's diagonal block of the
//! captured `X^T X`: the sum over calibration tokens of `(x_g . d)^2`, so no activations are
//! stored. The range of ratio `r` is the row group's min-max range clamped to
//! `[-r m, r m]`, `m = max |w_g|` (an outlier on one side is clipped, the other side kept),
//! and widened to contain 0 like every grid ([`Grid::fit`]); values beyond it saturate at
//! the end codes. `r = 1` is round-to-nearest itself, so the search never does worse than it
//! on the calibration data.

use compress_core::CoreError;
use ndarray::{Array2, ArrayView2, s};

use super::grid::{Grid, QuantizedWeight, WeightQuant, check_finite, quantize_groups};
use crate::QuantError;

/// The candidate ratios of the clipping search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipConfig {
    /// Ratios tried besides 1: `1 - max_shrink * i / steps` for `i` in `1..=steps`.
    pub steps: usize,
    /// The largest shrink, in `[0, 1)`.
    pub max_shrink: f32,
}

impl Default for ClipConfig {
    /// Ten steps of 0.05 down to half the range (the reference search's grid).
    fn default() -> Self {
        Self {
            steps: 10,
            max_shrink: 0.5,
        }
    }
}

impl ClipConfig {
    /// The ratios tried, starting with 1.
    pub fn ratios(&self) -> Vec<f32> {
        (0..=self.steps)
            .map(|i| 1.0 - self.max_shrink * i as f32 / self.steps.max(1) as f32)
            .collect()
    }

    fn check(&self) -> Result<(), QuantError> {
        if !(0.0..1.0).contains(&self.max_shrink) {
            return Err(CoreError::config(
                "clip max_shrink",
                format!("must be in [0, 1), got {}", self.max_shrink),
            )
            .into());
        }
        Ok(())
    }
}

/// The result of [`clip_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSearch {
    /// The winning ratio of every row group, row-major `[out, in / group]`.
    pub ratios: Vec<f32>,
    /// The summed output error `sum d^T H_g d` over row groups at the winning ratios.
    pub error: f64,
    /// The same error without clipping (round to nearest).
    pub rtn_error: f64,
}

/// The grid of one row group at clipping ratio `r`.
fn clipped_grid(values: &[f32], r: f32, maxq: u32) -> Grid {
    let (lo, hi) = values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let m = lo.abs().max(hi) * r;
    Grid::fit([lo.max(-m), hi.min(m)], maxq)
}

/// Searches the clipping ratio of every row group of `w` (`[out, in]`) against the captured
/// `xtx` (`X^T X` of the inputs `w` multiplies, `[in, in]`; any positive multiple gives the
/// same ratios). See the module docs.
///
/// # Errors
///
/// As [`WeightQuant::group_for`]; a shape error when `xtx` is not `[in, in]`; an
/// invalid-config error for `max_shrink` outside `[0, 1)`; [`CoreError::NonFinite`] for a
/// NaN or infinite weight.
pub fn clip_search(
    path: &str,
    w: &ArrayView2<'_, f32>,
    xtx: &Array2<f64>,
    quant: WeightQuant,
    cfg: ClipConfig,
) -> Result<ClipSearch, QuantError> {
    cfg.check()?;
    let (n, k) = w.dim();
    let g = quant.group_for(path, k)?;
    if xtx.dim() != (k, k) {
        return Err(CoreError::shape(format!("{path} X^T X"), &[k, k], xtx.shape()).into());
    }
    check_finite(path, w.iter().copied())?;
    let groups = k / g;
    let mut best = vec![f64::INFINITY; n * groups];
    let mut ratios = vec![1.0f32; n * groups];
    let mut rtn_error = 0.0;
    let mut d = Array2::<f64>::zeros((n, g));
    for gi in 0..groups {
        let cols = gi * g..(gi + 1) * g;
        let h = xtx.slice(s![cols.clone(), cols.clone()]);
        let block = w.slice(s![.., cols]);
        let rows: Vec<Vec<f32>> = block.rows().into_iter().map(|r| r.to_vec()).collect();
        for (ci, &r) in cfg.ratios().iter().enumerate() {
            for (row, mut dr) in rows.iter().zip(d.rows_mut()) {
                let grid = clipped_grid(row, r, quant.max_code());
                for (dv, &v) in dr.iter_mut().zip(row) {
                    *dv = f64::from(grid.round(v)) - f64::from(v);
                }
            }
            let dh = d.dot(&h);
            for (i, (a, b)) in dh.rows().into_iter().zip(d.rows()).enumerate() {
                let e = a.dot(&b);
                let slot = i * groups + gi;
                if ci == 0 {
                    rtn_error += e;
                }
                if e < best[slot] {
                    best[slot] = e;
                    ratios[slot] = r;
                }
            }
        }
    }
    Ok(ClipSearch {
        ratios,
        error: best.iter().sum(),
        rtn_error,
    })
}

/// Round-to-nearest of `w` with each row group's range clipped by its ratio (as
/// [`ClipSearch::ratios`]; all ones is [`quantize_rtn`](super::quantize_rtn)).
///
/// # Errors
///
/// As [`WeightQuant::group_for`]; a shape error when `ratios` does not have one entry per
/// row group; an invalid-config error for a ratio outside `(0, 1]`.
pub fn quantize_clipped(
    path: &str,
    w: &ArrayView2<'_, f32>,
    quant: WeightQuant,
    ratios: &[f32],
) -> Result<QuantizedWeight, QuantError> {
    let (n, k) = w.dim();
    let g = quant.group_for(path, k)?;
    check_finite(path, w.iter().copied())?;
    if ratios.len() != n * (k / g) {
        return Err(
            CoreError::shape(format!("{path} clip ratios"), &[n, k / g], &[ratios.len()]).into(),
        );
    }
    if let Some(r) = ratios.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
        return Err(CoreError::config(
            format!("{path} clip ratios"),
            format!("must be in (0, 1], got {r}"),
        )
        .into());
    }
    Ok(quantize_groups(w, quant, g, |i, chunk| {
        clipped_grid(chunk, ratios[i], quant.max_code())
    }))
}
