//! Difficulty-based routing: a cascade of models from cheap to expensive, where a cheap
//! first pass decides per sample whether to run the next one.

use compress_core::derive::Module;
use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::Dataset;
use ndarray::{Array2, ArrayD};

use crate::output::{Survivors, logits_2d, take_rows};
use crate::profile::{ExitCosts, ExitProfile, Thresholds};
use crate::rule::ExitTest;
use crate::{DynamicOutput, ExitRule, Result};

/// Models ordered from cheap to expensive, each a full classifier of the same input. A
/// sample runs model 0; if confident it stops, else it runs model 1 on its input, and so
/// on (the last model takes everyone left). Parameter paths are `models.<k>.…`.
///
/// Calibrate it like an early-exit network: [`Cascade::profile`] then
/// [`calibrate`](crate::calibrate). Leaving at model `k` costs every active model tried
/// before it plus model `k`.
///
/// ```
/// use compress_dynamic::{Cascade, ExitRule, Thresholds};
/// use compress_nn::models::mlp;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut c = Cascade::<f32>::new(&[8])
///     .with_model(mlp(&[8, 4, 3], &mut rng))
///     .with_model(mlp(&[8, 64, 3], &mut rng));
/// assert_eq!(c.costs()?.own, vec![8 * 4 + 4 * 3, 8 * 64 + 64 * 3]);
/// let out = c.infer(&ArrayD::zeros(vec![3, 8]), &Thresholds::uniform(ExitRule::MaxSoftmax, 2, 0.0))?;
/// assert_eq!(out.exits, vec![0, 0, 0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Module)]
pub struct Cascade<F: Float> {
    models: Vec<Box<dyn Layer<F>>>,
    #[module(skip)]
    input_shape: Vec<usize>,
}

impl<F: Float> Cascade<F> {
    /// An empty cascade for samples of `input_shape`.
    pub fn new(input_shape: &[usize]) -> Self {
        Self {
            models: Vec::new(),
            input_shape: input_shape.to_vec(),
        }
    }

    /// Appends the next (more expensive) model (builder style).
    #[must_use]
    pub fn with_model(mut self, model: impl Layer<F> + 'static) -> Self {
        self.models.push(Box::new(model));
        self
    }

    /// Appends an already boxed model.
    pub fn push_model(&mut self, model: Box<dyn Layer<F>>) {
        self.models.push(model);
    }

    /// Number of models (exits).
    pub fn num_exits(&self) -> usize {
        self.models.len()
    }

    /// The models, cheapest first.
    pub fn models(&self) -> &[Box<dyn Layer<F>>] {
        &self.models
    }

    /// The exits' costs (`shared` all zero, `own` = each model's MACs).
    ///
    /// # Errors
    ///
    /// An empty cascade, a model that does not take the input shape or does not output a
    /// 1-D class vector.
    pub fn costs(&self) -> Result<ExitCosts> {
        if self.models.is_empty() {
            return Err(CoreError::config("cascade", "has no model").into());
        }
        let mut own = Vec::with_capacity(self.models.len());
        for (k, m) in self.models.iter().enumerate() {
            let c = m.cost(&self.input_shape)?;
            if c.output_shape.len() != 1 {
                return Err(
                    CoreError::shape(format!("model {k} output"), &[0], &c.output_shape).into(),
                );
            }
            own.push(c.macs);
        }
        Ok(ExitCosts {
            shared: vec![0; own.len()],
            own,
        })
    }

    /// Routed inference of a batch: each model runs only on the samples that earlier models
    /// were not confident about (disabled models are skipped).
    ///
    /// # Errors
    ///
    /// Wrong threshold count or values, any model error.
    pub fn infer(&mut self, x: &ArrayD<F>, thresholds: &Thresholds) -> Result<DynamicOutput<F>> {
        let costs = self.costs()?;
        thresholds.check(self.num_exits())?;
        let n = x.shape().first().copied().unwrap_or(0);
        let mut surv = Survivors::new(n, self.num_exits());
        for k in 0..self.models.len() {
            if surv.done() {
                break;
            }
            let Some(thr) = thresholds.score_threshold(k) else {
                continue;
            };
            let y = if surv.alive.len() == n {
                self.models[k].forward(x, Mode::Eval)?
            } else {
                self.models[k].forward(&take_rows(x, &surv.alive), Mode::Eval)?
            };
            let logits = logits_2d(&y, &format_args!("model {k}"))?;
            let test = ExitTest::new(thresholds.rule, thr, logits.ncols());
            surv.decide(k, None, &logits, costs.own[k], Some(test), None)?;
        }
        surv.finish()
    }

    /// Runs every model on every sample of `data` and records scores and correctness.
    ///
    /// # Errors
    ///
    /// Any model error.
    pub fn profile(
        &mut self,
        data: &Dataset<F>,
        rule: ExitRule,
        batch: usize,
    ) -> Result<ExitProfile> {
        let costs = self.costs()?;
        let logits = self
            .models
            .iter_mut()
            .map(|m| {
                let y = compress_nn::train::predict_outputs(m.as_mut(), &data.x, batch)?;
                Ok(logits_2d(&y, &"model")?.to_owned())
            })
            .collect::<Result<Vec<Array2<F>>>>()?;
        ExitProfile::from_logits(rule, &logits, &data.labels, costs)
    }
}
