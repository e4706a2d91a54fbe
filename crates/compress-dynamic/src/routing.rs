//! Difficulty-based routing: a cascade of models from cheap to expensive, where a cheap
//! first pass decides per sample whether to run the next one.

use compress_core::derive::Module;
use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::Dataset;
use compress_nn::train::predict_outputs;
use ndarray::{Array2, ArrayD, ArrayRef, IxDyn};

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
        route(x, &costs, thresholds, None, |k, xs| {
            Ok(self.models[k].forward(xs, Mode::Eval)?)
        })
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
        profile_members(data, rule, costs, None, |k| {
            Ok(predict_outputs(self.models[k].as_mut(), &data.x, batch)?)
        })
    }
}

/// Names cascade member `k` in errors: `model k`, or `width w` for a width cascade.
struct Member<'a>(Option<&'a [f64]>, usize);

impl std::fmt::Display for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(widths) => write!(f, "width {}", widths[self.1]),
            None => write!(f, "model {}", self.1),
        }
    }
}

/// Routed inference of a batch through a cascade of classifiers tried in order (one per
/// entry of `costs.own`): `run(k, rows)` runs member `k` on the rows of `x` of the samples
/// the earlier members were not confident about; disabled members are skipped and the last
/// member takes everyone left. `widths` names the members of a width cascade in errors.
pub(crate) fn route<F: Float>(
    x: &ArrayD<F>,
    costs: &ExitCosts,
    thresholds: &Thresholds,
    widths: Option<&[f64]>,
    mut run: impl FnMut(usize, &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>>,
) -> Result<DynamicOutput<F>> {
    let members = costs.own.len();
    thresholds.check(members)?;
    let n = x.shape().first().copied().unwrap_or(0);
    let mut surv = Survivors::new(n, members);
    for (k, &macs) in costs.own.iter().enumerate() {
        if surv.done() {
            break;
        }
        let Some(thr) = thresholds.score_threshold(k) else {
            continue;
        };
        let y = if surv.alive.len() == n {
            run(k, x)?
        } else {
            run(k, &take_rows(x, &surv.alive))?
        };
        let logits = logits_2d(&y, &Member(widths, k))?;
        let test = ExitTest::new(thresholds.rule, thr, logits.ncols());
        surv.decide(k, None, &logits, macs, Some(test), None)?;
    }
    surv.finish()
}

/// The profile of a cascade of classifiers (one per entry of `costs.own`) on `data`:
/// `outputs(k)` is member `k`'s output for every sample. `widths` names the members of a
/// width cascade in errors.
pub(crate) fn profile_members<F: Float>(
    data: &Dataset<F>,
    rule: ExitRule,
    costs: ExitCosts,
    widths: Option<&[f64]>,
    mut outputs: impl FnMut(usize) -> Result<ArrayD<F>>,
) -> Result<ExitProfile> {
    let logits = (0..costs.own.len())
        .map(|k| {
            let y = outputs(k)?;
            Ok(logits_2d(&y, &Member(widths, k))?.to_owned())
        })
        .collect::<Result<Vec<Array2<F>>>>()?;
    ExitProfile::from_logits(rule, &logits, &data.labels, costs)
}
