//! Batched dynamic inference that forwards only the samples still running, and profiling.

use compress_core::{CoreError, Float, Mode};
use compress_nn::Dataset;
use ndarray::ArrayD;

use super::EarlyExitNet;
use crate::output::{Survivors, logits_2d, take_rows};
use crate::profile::{ExitProfile, Thresholds};
use crate::rule::ExitTest;
use crate::{DynamicOutput, ExitRule, Result};

impl<F: Float> EarlyExitNet<F> {
    /// Dynamic inference of a batch: after each active exit, the samples whose confidence
    /// reaches the threshold leave, and only the others are regrouped (`select`) and sent
    /// through the next stages. Disabled exits (`None`) are not computed at all. MACs are
    /// counted per sample from the stages' and heads' [`Layer::cost`](compress_core::Layer::cost)
    /// as they actually run.
    ///
    /// # Errors
    ///
    /// Wrong number of thresholds, an invalid threshold, or any layer error.
    ///
    /// ```
    /// use compress_dynamic::{EarlyExitNet, ExitRule, Thresholds};
    /// use compress_nn::Linear;
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    /// # fn main() -> compress_dynamic::Result<()> {
    /// let mut rng = StdRng::seed_from_u64(1);
    /// let mut net = EarlyExitNet::<f64>::new(&[4])
    ///     .with_stage(Linear::new(4, 8, true, &mut rng))
    ///     .with_exit(Linear::new(8, 3, true, &mut rng))
    ///     .with_stage(Linear::new(8, 8, true, &mut rng))
    ///     .with_exit(Linear::new(8, 3, true, &mut rng));
    /// let x = ArrayD::from_elem(vec![5, 4], 0.5);
    /// // tau = 0: every sample leaves at the first exit.
    /// let out = net.infer(&x, &Thresholds::uniform(ExitRule::MaxSoftmax, 2, 0.0))?;
    /// assert_eq!(out.exits, vec![0; 5]);
    /// assert!(out.macs.iter().all(|&m| m == 4 * 8 + 8 * 3));
    /// # Ok(()) }
    /// ```
    pub fn infer(&mut self, x: &ArrayD<F>, thresholds: &Thresholds) -> Result<DynamicOutput<F>> {
        self.infer_limited(x, thresholds, None)
    }

    /// [`EarlyExitNet::infer`] where sample `i` may go no deeper than exit `max_exit[i]`
    /// (it is forced out there); with `None` only the thresholds decide.
    ///
    /// # Errors
    ///
    /// As [`EarlyExitNet::infer`], and a shape mismatch when `max_exit` does not have one
    /// entry per sample.
    pub fn infer_limited(
        &mut self,
        x: &ArrayD<F>,
        thresholds: &Thresholds,
        max_exit: Option<&[usize]>,
    ) -> Result<DynamicOutput<F>> {
        let cache = self.cached_costs()?;
        let (stage_macs, costs) = &*cache;
        thresholds.check(self.num_exits())?;
        let n = x.shape().first().copied().unwrap_or(0);
        if let Some(m) = max_exit
            && m.len() != n
        {
            return Err(CoreError::shape("max_exit", &[n], &[m.len()]).into());
        }
        let k_last = self.num_exits() - 1;
        let mut surv = Survivors::new(n, self.num_exits());
        let mut h: Option<ArrayD<F>> = None;
        let mut next = 0;
        for (s, &macs) in stage_macs.iter().enumerate() {
            if surv.done() {
                break;
            }
            // The first stage reads the caller's batch directly (no copy); later ones get
            // the previous output to overwrite.
            let mut hs = match h.take() {
                Some(prev) => self.stages[s].forward_owned(prev, Mode::Eval)?,
                None => self.stages[s].forward(x, Mode::Eval)?,
            };
            surv.charge_all(macs);
            while next < self.attach.len() && self.attach[next] == s {
                let k = next;
                next += 1;
                let thr = thresholds.score_threshold(k);
                let active = thr.is_some() || k == k_last;
                // Rows that need this head: all when the exit is active, else the forced ones.
                let rows: Option<Vec<usize>> = (!active).then(|| {
                    (0..surv.alive.len())
                        .filter(|&r| max_exit.is_some_and(|m| m[surv.alive[r]] <= k))
                        .collect()
                });
                let y = match &rows {
                    None => self.exits[k].forward(&hs, Mode::Eval)?,
                    Some(r) if r.is_empty() => continue,
                    Some(r) => self.exits[k].forward(&take_rows(&hs, r), Mode::Eval)?,
                };
                let logits = logits_2d(&y, &format_args!("exit {k}"))?;
                let test = thr.map(|t| ExitTest::new(thresholds.rule, t, logits.ncols()));
                let keep =
                    surv.decide(k, rows.as_deref(), &logits, costs.own[k], test, max_exit)?;
                if surv.done() {
                    break;
                }
                if keep.len() < hs.shape()[0] {
                    hs = take_rows(&hs, &keep);
                }
            }
            h = Some(hs);
        }
        surv.finish()
    }

    /// Runs every exit on every sample of `data` (eval mode, chunks of `batch`) and records
    /// each exit's confidence scores under `rule` and correctness, with the exits' costs:
    /// the input of [`calibrate`](crate::calibrate) and
    /// [`tradeoff_curve`](crate::tradeoff_curve).
    ///
    /// # Errors
    ///
    /// Any layer error.
    pub fn profile(
        &mut self,
        data: &Dataset<F>,
        rule: ExitRule,
        batch: usize,
    ) -> Result<ExitProfile> {
        let logits = self.all_exit_logits(&data.x, batch)?;
        ExitProfile::from_logits(rule, &logits, &data.labels, self.exit_costs()?)
    }

    /// Eval-mode logits of the static network for `x` (every stage, last head).
    ///
    /// # Errors
    ///
    /// Any layer error.
    pub fn full_logits(&mut self, x: &ArrayD<F>) -> Result<ndarray::Array2<F>> {
        let y = compress_core::Layer::forward(self, x, Mode::Eval)?;
        Ok(logits_2d(&y, &"last exit")?.to_owned())
    }
}
