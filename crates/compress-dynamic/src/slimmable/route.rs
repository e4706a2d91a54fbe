//! Difficulty-based routing over widths: run the smallest width first and rerun only the
//! uncertain samples at larger widths.

use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::Dataset;
use compress_nn::train::predict_outputs;
use ndarray::ArrayD;

use super::SlimmableNet;
use crate::profile::{ExitCosts, ExitProfile, Thresholds};
use crate::routing::{profile_members, route};
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
        let profile = profile_members(data, rule, costs, Some(widths), |k| {
            self.set_width(widths[k])?;
            Ok(predict_outputs(self, &data.x, batch)?)
        })?;
        self.set_width(before)?;
        Ok(profile)
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
        let before = self.width();
        let out = route(x, &costs, thresholds, Some(widths), |k, xs| {
            self.set_width(widths[k])?;
            Ok(self.forward(xs, Mode::Eval)?)
        })?;
        self.set_width(before)?;
        Ok(out)
    }
}
