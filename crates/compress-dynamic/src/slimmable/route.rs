//! Difficulty-based routing over widths: run the smallest width first and rerun only the
//! uncertain samples at larger widths.

use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::Dataset;
use ndarray::ArrayD;

use super::SlimmableNet;
use crate::output::{Survivors, logits_2d, take_rows};
use crate::profile::{ExitCosts, ExitProfile, Thresholds};
use crate::rule::ExitTest;
use crate::{DynamicOutput, ExitRule, Result};

impl<F: Float> SlimmableNet<F> {
    /// Costs of a width cascade over `widths` (ascending): `own[k]` = MACs at `widths[k]`.
    ///
    /// # Errors
    ///
    /// An unknown width, widths not ascending, or a shape that does not fit.
    pub fn width_costs(&mut self, widths: &[f64], input_shape: &[usize]) -> Result<ExitCosts> {
        if widths.is_empty() || widths.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CoreError::config(
                "widths",
                format!("{widths:?} must be non-empty and ascending"),
            )
            .into());
        }
        let own = widths
            .iter()
            .map(|&w| self.macs_at(w, input_shape))
            .collect::<Result<Vec<u64>>>()?;
        Ok(ExitCosts {
            shared: vec![0; own.len()],
            own,
        })
    }

    /// Runs the network at every width of `widths` on every sample of `data` and records
    /// scores and correctness: the profile of the width cascade, for
    /// [`calibrate`](crate::calibrate). The current width is restored.
    ///
    /// # Errors
    ///
    /// As [`SlimmableNet::width_costs`], and any layer error.
    pub fn profile_widths(
        &mut self,
        data: &Dataset<F>,
        widths: &[f64],
        rule: ExitRule,
        batch: usize,
    ) -> Result<ExitProfile> {
        let costs = self.width_costs(widths, data.sample_shape())?;
        let before = self.width();
        let mut logits = Vec::with_capacity(widths.len());
        for &w in widths {
            self.set_width(w)?;
            let y = compress_nn::train::predict_outputs(self, &data.x, batch)?;
            logits.push(logits_2d(&y, &"width")?.to_owned());
        }
        self.set_width(before)?;
        ExitProfile::from_logits(rule, &logits, &data.labels, costs)
    }

    /// Routed inference of a batch: every sample runs at `widths[0]`; those not confident
    /// enough rerun at the next active width, and so on (the last width takes everyone
    /// left). Only the uncertain samples are regrouped and rerun. The current width is
    /// restored.
    ///
    /// # Errors
    ///
    /// Wrong threshold count or values, bad widths, any layer error.
    pub fn route(
        &mut self,
        x: &ArrayD<F>,
        widths: &[f64],
        thresholds: &Thresholds,
    ) -> Result<DynamicOutput<F>> {
        let sample: Vec<usize> = x
            .shape()
            .get(1..)
            .map(<[usize]>::to_vec)
            .unwrap_or_default();
        let costs = self.width_costs(widths, &sample)?;
        thresholds.check(widths.len())?;
        let before = self.width();
        let n = x.shape().first().copied().unwrap_or(0);
        let mut surv = Survivors::new(n, widths.len());
        for (k, &w) in widths.iter().enumerate() {
            if surv.done() {
                break;
            }
            let Some(thr) = thresholds.score_threshold(k) else {
                continue;
            };
            self.set_width(w)?;
            let y = if surv.alive.len() == n {
                self.forward(x, Mode::Eval)?
            } else {
                self.forward(&take_rows(x, &surv.alive), Mode::Eval)?
            };
            let logits = logits_2d(&y, &format_args!("width {w}"))?;
            let test = ExitTest::new(thresholds.rule, thr, logits.ncols());
            surv.decide(k, None, &logits, costs.own[k], Some(test), None)?;
        }
        self.set_width(before)?;
        surv.finish()
    }
}
