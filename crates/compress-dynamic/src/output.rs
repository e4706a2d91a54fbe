//! The result of dynamic inference, and the survivor bookkeeping shared by every
//! dynamic model (early exits, cascades, width routing).

use compress_core::{CoreError, Float};
use compress_nn::loss::accuracy;
use ndarray::{Array2, ArrayD, ArrayRef, Axis, Ix2, IxDyn};

use crate::Result;
use crate::rule::ExitTest;

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

    /// Runs exit `k` on the running samples at local rows `rows` (`None`: every running
    /// sample, in order; the `logits` have one row per entry), charging `head_macs` to
    /// each. A sample leaves when `max_exit[original index] <= k` or its logits pass `test`
    /// (`None`: only forced samples leave). Returns the local rows that keep running, and
    /// drops the leavers from `alive`.
    pub(crate) fn decide(
        &mut self,
        k: usize,
        rows: Option<&[usize]>,
        logits: &ArrayRef<F, Ix2>,
        head_macs: u64,
        test: Option<ExitTest>,
        max_exit: Option<&[usize]>,
    ) -> Result<Vec<usize>> {
        let classes = logits.ncols();
        let m = rows.map_or(self.alive.len(), <[usize]>::len);
        if logits.nrows() != m {
            return Err(CoreError::shape(
                format!("exit {k} logits"),
                &[m, classes],
                logits.shape(),
            )
            .into());
        }
        if classes == 0 {
            return Err(
                CoreError::shape(format!("exit {k} logits"), &[m, 1], logits.shape()).into(),
            );
        }
        let n = self.exits.len();
        // At the first exit with everyone still running in order, the head's logits are
        // taken whole: the rows of samples that leave later are overwritten then.
        let whole = self.logits.is_none() && rows.is_none() && m == n;
        let out = self.logits.get_or_insert_with(|| {
            if whole {
                logits.to_owned()
            } else {
                Array2::zeros((n, classes))
            }
        });
        if out.ncols() != classes {
            return Err(CoreError::shape(
                format!("exit {k} logits"),
                &[m, out.ncols()],
                logits.shape(),
            )
            .into());
        }
        // Heads produce standard-layout logits; anything else is copied once.
        let owned;
        let src: &[F] = match logits.as_slice() {
            Some(sl) => sl,
            None => {
                owned = logits.as_standard_layout().into_owned();
                owned.as_slice().unwrap_or_default()
            }
        };
        let dst = out.as_slice_mut().ok_or_else(|| CoreError::InvalidState {
            layer: "dynamic inference".into(),
            reason: "output logits are not contiguous".into(),
        })?;
        if let Some(r) = rows
            && (r.windows(2).any(|w| w[0] >= w[1]) || r.last() >= Some(&self.alive.len()))
        {
            return Err(CoreError::InvalidState {
                layer: "dynamic inference".into(),
                reason: format!("exit {k}: rows are not increasing running rows"),
            }
            .into());
        }
        // Decide every row the head ran on, then compact the running set.
        let passed = test.map(|t| t.passes_rows(src, classes));
        let mut leaving = vec![false; self.alive.len()];
        for (j, row) in src.chunks_exact(classes).enumerate() {
            let r = rows.map_or(j, |rs| rs[j]);
            let orig = self.alive[r];
            self.macs[orig] += head_macs;
            let go =
                max_exit.is_some_and(|me| me[orig] <= k) || passed.as_ref().is_some_and(|p| p[j]);
            if go {
                leaving[r] = true;
                self.exits[orig] = k;
                if !whole {
                    dst[orig * classes..(orig + 1) * classes].copy_from_slice(row);
                }
            }
        }
        let mut keep = Vec::with_capacity(self.alive.len());
        let mut still = 0;
        for (r, &gone) in leaving.iter().enumerate() {
            if !gone {
                keep.push(r);
                self.alive[still] = self.alive[r];
                still += 1;
            }
        }
        self.alive.truncate(still);
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
    what: &dyn std::fmt::Display,
) -> Result<ndarray::ArrayView2<'a, F>> {
    if y.ndim() != 2 {
        let n = y.shape().first().copied().unwrap_or(0);
        return Err(CoreError::shape(format!("{what} logits"), &[n, 0], y.shape()).into());
    }
    Ok(y.view()
        .into_dimensionality::<Ix2>()
        .map_err(CoreError::from)?)
}

/// The rows `rows` of `x` (along axis 0) as a new array: a row-by-row copy for standard
/// layout (`select` walks element by element), `select` otherwise.
pub(crate) fn take_rows<F: Float>(x: &ArrayRef<F, IxDyn>, rows: &[usize]) -> ArrayD<F> {
    let mut shape = x.shape().to_vec();
    match (x.as_slice(), shape.first().copied()) {
        (Some(src), Some(n)) if rows.iter().all(|&r| r < n) => {
            let w = shape[1..].iter().product::<usize>();
            let mut v = Vec::with_capacity(rows.len() * w);
            for &r in rows {
                v.extend_from_slice(&src[r * w..(r + 1) * w]);
            }
            shape[0] = rows.len();
            ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap_or_else(|_| x.select(Axis(0), rows))
        }
        _ => x.select(Axis(0), rows),
    }
}
