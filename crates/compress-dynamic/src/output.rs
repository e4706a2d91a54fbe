//! The result of dynamic inference, and the survivor bookkeeping shared by every
//! dynamic model (early exits, cascades, width routing).

use compress_core::{CoreError, Float};
use compress_nn::loss::accuracy;
use ndarray::{Array2, ArrayRef, Ix2};

use crate::{ExitRule, Result};

/// What dynamic inference produced for a batch: per sample, the logits of the exit it left
/// at, that exit, and the MACs actually spent on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicOutput<F: Float> {
    /// `[N, classes]` logits from each sample's exit.
    pub logits: Array2<F>,
    /// The exit each sample left at.
    pub exits: Vec<usize>,
    /// MACs spent on each sample (every stage and head it went through).
    pub macs: Vec<u64>,
    /// Number of exits of the model.
    pub num_exits: usize,
}

impl<F: Float> DynamicOutput<F> {
    /// Predicted classes (argmax of each sample's logits).
    pub fn predictions(&self) -> Vec<usize> {
        compress_nn::loss::argmax_rows(&self.logits)
    }

    /// Fraction of `labels` predicted correctly.
    pub fn accuracy(&self, labels: &[usize]) -> f64 {
        accuracy(&self.predictions(), labels)
    }

    /// Average MACs per sample (0 for an empty batch).
    pub fn avg_macs(&self) -> f64 {
        if self.macs.is_empty() {
            return 0.0;
        }
        self.macs.iter().map(|&m| m as f64).sum::<f64>() / self.macs.len() as f64
    }

    /// Fraction of samples leaving at each exit.
    pub fn exit_fractions(&self) -> Vec<f64> {
        let mut c = vec![0usize; self.num_exits];
        for &e in &self.exits {
            c[e] += 1;
        }
        let n = self.exits.len().max(1) as f64;
        c.into_iter().map(|v| v as f64 / n).collect()
    }
}

/// Tracks which samples of a batch are still running, charges MACs to them, and records
/// the samples that leave.
#[derive(Debug)]
pub(crate) struct Survivors<F: Float> {
    /// Original indices of the samples still running, in the current batch order.
    pub(crate) alive: Vec<usize>,
    /// `[N, classes]`, allocated at the first exit.
    logits: Option<Array2<F>>,
    exits: Vec<usize>,
    macs: Vec<u64>,
    num_exits: usize,
}

impl<F: Float> Survivors<F> {
    pub(crate) fn new(n: usize, num_exits: usize) -> Self {
        Self {
            alive: (0..n).collect(),
            logits: None,
            exits: vec![usize::MAX; n],
            macs: vec![0; n],
            num_exits,
        }
    }

    /// Charges `macs` to every running sample.
    pub(crate) fn charge_all(&mut self, macs: u64) {
        for &i in &self.alive {
            self.macs[i] += macs;
        }
    }

    /// Runs exit `k` on the running samples at local rows `rows` (whose `logits` are given,
    /// one row per entry of `rows`), charging `head_macs` to each. A sample leaves when
    /// `forced(original index)` or its score under `rule` reaches `threshold` (score units).
    /// Returns the local rows that keep running, and drops the leavers from `alive`.
    pub(crate) fn decide(
        &mut self,
        k: usize,
        rows: &[usize],
        logits: &ArrayRef<F, Ix2>,
        head_macs: u64,
        (rule, threshold): (ExitRule, Option<f64>),
        forced: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<usize>> {
        let classes = logits.ncols();
        if logits.nrows() != rows.len() {
            return Err(CoreError::shape(
                format!("exit {k} logits"),
                &[rows.len(), classes],
                logits.shape(),
            )
            .into());
        }
        let n = self.exits.len();
        let out = self
            .logits
            .get_or_insert_with(|| Array2::zeros((n, classes)));
        if out.ncols() != classes {
            return Err(CoreError::shape(
                format!("exit {k} logits"),
                &[rows.len(), out.ncols()],
                logits.shape(),
            )
            .into());
        }
        let mut leaving = vec![false; self.alive.len()];
        let mut buf = Vec::new();
        for (r, row) in rows.iter().zip(logits.rows()) {
            let orig = self.alive[*r];
            self.macs[orig] += head_macs;
            let leave = forced(orig)
                || threshold.is_some_and(|t| match row.as_slice() {
                    Some(sl) => rule.passes(sl, t),
                    None => {
                        buf.clear();
                        buf.extend(row.iter().copied());
                        rule.passes(&buf, t)
                    }
                });
            if leave {
                leaving[*r] = true;
                out.row_mut(orig).assign(&row);
                self.exits[orig] = k;
            }
        }
        let keep: Vec<usize> = (0..self.alive.len()).filter(|&r| !leaving[r]).collect();
        self.alive = keep.iter().map(|&r| self.alive[r]).collect();
        Ok(keep)
    }

    /// Whether nobody is running any more.
    pub(crate) fn done(&self) -> bool {
        self.alive.is_empty()
    }

    /// The collected output.
    pub(crate) fn finish(self) -> Result<DynamicOutput<F>> {
        if let Some(i) = self.exits.iter().position(|&e| e == usize::MAX) {
            return Err(CoreError::InvalidState {
                layer: "dynamic inference".into(),
                reason: format!("sample {i} never reached an exit"),
            }
            .into());
        }
        Ok(DynamicOutput {
            logits: self.logits.unwrap_or_else(|| Array2::zeros((0, 0))),
            exits: self.exits,
            macs: self.macs,
            num_exits: self.num_exits,
        })
    }
}

/// Views a layer output as `[N, C]` logits.
pub(crate) fn logits_2d<'a, F: Float>(
    y: &'a ndarray::ArrayD<F>,
    what: &str,
) -> Result<ndarray::ArrayView2<'a, F>> {
    if y.ndim() != 2 {
        let n = y.shape().first().copied().unwrap_or(0);
        return Err(CoreError::shape(format!("{what} logits"), &[n, 0], y.shape()).into());
    }
    Ok(y.view()
        .into_dimensionality::<Ix2>()
        .map_err(CoreError::from)?)
}
