//! The Distiller: frozen teacher, teacher cache, parametrized students, reports.

use std::sync::{Arc, Mutex};

use compress_core::{
    Cost, Layer, Mode, Module, Param, ParamPath, ParamVisitor, ParamVisitorMut,
    Result as CoreResult,
};
use compress_distill::{
    DistillConfig, DistillError, DistillLoss, DistillObjective, Distiller, DkdConfig, KdConfig,
};
use compress_nn::data::digits;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Dataset, Sequential, Sgd, TrainConfig, Trainer};
use compress_testkit::FixedMask;
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

/// Wraps a layer and records the mode of every forward call.
#[derive(Debug)]
struct ModeSpy {
    inner: Sequential<f32>,
    modes: Arc<Mutex<Vec<Mode>>>,
}

impl Module<f32> for ModeSpy {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
        self.inner.visit(path, v);
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<f32>,
    ) -> CoreResult<()> {
        self.inner.visit_mut(path, v)
    }
}

impl Layer<f32> for ModeSpy {
    fn name(&self) -> &'static str {
        "ModeSpy"
    }
    fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, mode: Mode) -> CoreResult<ArrayD<f32>> {
        self.modes.lock().unwrap().push(mode);
        self.inner.forward(x, mode)
    }
    fn backward(&mut self, grad: &ArrayRef<f32, IxDyn>) -> CoreResult<ArrayD<f32>> {
        self.inner.backward(grad)
    }
    fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
        self.inner.cost(input_shape)
    }
}

fn train_cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        ..TrainConfig::default()
    }
}

fn teacher(train: &Dataset<f32>) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(11);
    let mut t = mlp::<f32, _>(&[64, 48, 10], &mut rng);
    Trainer::new(train_cfg(4))
        .fit(&mut t, &mut Sgd::new(0.1).momentum(0.9), train, None)
        .unwrap();
    t
}

fn student(seed: u64) -> Sequential<f32> {
    mlp::<f32, _>(&[64, 12, 10], &mut StdRng::seed_from_u64(seed))
}

fn bits(m: &dyn Module<f32>) -> Vec<(String, Vec<u32>)> {
    m.stored_dict()
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// Bits of every parameter's accumulated gradient (the teacher keeps the last one from
/// its own training; distillation must not add to it).
fn grad_bits(m: &dyn Module<f32>) -> Vec<Option<Vec<u32>>> {
    let mut out = Vec::new();
    m.visit(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &Param<f32>| {
            out.push(p.grad().map(|g| g.iter().map(|x| x.to_bits()).collect()));
        },
    );
    out
}

fn kd() -> DistillLoss {
    DistillLoss::Kd(KdConfig::new(4.0, 0.9).unwrap())
}

#[test]
fn teacher_is_frozen_and_only_run_in_eval_mode() {
    let (train, test) = digits::<f32>().unwrap();
    let modes = Arc::new(Mutex::new(Vec::new()));
    let mut spy = ModeSpy {
        inner: teacher(&train),
        modes: Arc::clone(&modes),
    };
    let before = bits(&spy);
    let grads_before = grad_bits(&spy);
    let mut s = student(1);
    for cache in [true, false] {
        let mut cfg = DistillConfig::new(kd(), train_cfg(2));
        cfg.cache_teacher = cache;
        let mut d = Distiller::new(&mut spy, cfg).unwrap();
        d.fit(
            &mut s,
            &mut Sgd::new(0.1).momentum(0.9),
            &train,
            Some(&test),
        )
        .unwrap();
        d.evaluate(&mut s, &test).unwrap();
    }
    let modes = modes.lock().unwrap();
    assert!(modes.len() > 10);
    assert!(
        modes.iter().all(|&m| m == Mode::Eval),
        "teacher ran in training mode"
    );
    assert_eq!(bits(&spy), before, "teacher parameters changed");
    assert_eq!(grad_bits(&spy), grads_before, "teacher received gradients");
}

#[test]
fn cache_runs_the_teacher_once_per_sample_and_changes_nothing() {
    let (train, _) = digits::<f32>().unwrap();
    let mut t = teacher(&train);
    let epochs = 3;
    let mut finals = Vec::new();
    for cache in [true, false] {
        let mut cfg = DistillConfig::new(kd(), train_cfg(epochs));
        cfg.cache_teacher = cache;
        let mut d = Distiller::new(&mut t, cfg).unwrap();
        let mut s = student(2);
        d.fit(&mut s, &mut Sgd::new(0.1).momentum(0.9), &train, None)
            .unwrap();
        let expected = if cache {
            train.len()
        } else {
            epochs * train.len()
        };
        assert_eq!(d.teacher_forwards(), expected, "cache = {cache}");
        finals.push(bits(&s));
    }
    assert_eq!(finals[0], finals[1], "cached and uncached training differ");
}

#[test]
fn distilled_student_learns_and_report_is_consistent() {
    let (train, test) = digits::<f32>().unwrap();
    let mut t = teacher(&train);
    let teacher_acc = evaluate(&mut t, &test, 256).unwrap();
    // DKD's default beta = 8 at T = 4 scales the non-target gradients by 32: smaller steps.
    for (loss, lr) in [(kd(), 0.05), (DistillLoss::Dkd(DkdConfig::default()), 0.01)] {
        let mut d = Distiller::new(&mut t, DistillConfig::new(loss, train_cfg(6))).unwrap();
        let mut s = student(3);
        let r = d
            .fit(&mut s, &mut Sgd::new(lr).momentum(0.9), &train, Some(&test))
            .unwrap();
        assert_eq!(r.epochs.len(), 6);
        let rep = d.evaluate(&mut s, &test).unwrap();
        assert_eq!(rep.teacher_accuracy, teacher_acc);
        assert_eq!(rep.student_accuracy, evaluate(&mut s, &test, 256).unwrap());
        assert_eq!(rep.samples, test.len());
        assert!(rep.student_accuracy > 0.85, "{loss:?}: {rep:?}");
        assert!(rep.agreement > 0.85 && rep.agreement <= 1.0, "{rep:?}");
    }
}

#[test]
fn pruned_student_keeps_its_mask_while_distilled() {
    let (train, test) = digits::<f32>().unwrap();
    let mut t = teacher(&train);
    let mut s = student(4);
    // Prune every other weight of each Linear.
    s.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<f32>| {
            if path.leaf() == "weight" {
                let m = ArrayD::from_shape_fn(p.shape(), |ix| ((ix[0] + ix[1]) % 2) as f32);
                p.push_parametrization(Box::new(FixedMask::new(m)))?;
            }
            Ok(())
        },
    )
    .unwrap();
    let mut d = Distiller::new(&mut t, DistillConfig::new(kd(), train_cfg(6))).unwrap();
    d.fit(&mut s, &mut Sgd::new(0.05).momentum(0.9), &train, None)
        .unwrap();
    let mut masked_nonzero = 0;
    s.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<f32>| {
            if path.leaf() == "weight" {
                for (ix, &v) in p.effective().indexed_iter() {
                    if (ix[0] + ix[1]) % 2 == 0 && v != 0.0 {
                        masked_nonzero += 1;
                    }
                }
                assert!(p.parametrizations().len() == 1);
            }
        },
    );
    assert_eq!(masked_nonzero, 0);
    let acc = d.evaluate(&mut s, &test).unwrap().student_accuracy;
    assert!(acc > 0.8, "masked student accuracy {acc}");
}

#[test]
fn objective_reports_bad_inputs_as_errors() {
    let (train, _) = digits::<f32>().unwrap();
    let mut t = teacher(&train);
    let mut obj = DistillObjective::new(&mut t, &train, kd(), true).unwrap();
    let out = ArrayD::zeros(vec![2, 10]);
    assert!(
        obj.compute(&out, &[0, 1], &[train.labels[0], train.labels[1]])
            .is_ok()
    );
    assert!(obj.compute(&out, &[0, train.len()], &[0, 0]).is_err());
    assert!(
        obj.compute(&ArrayD::zeros(vec![2, 7]), &[0, 1], &[0, 0])
            .is_err()
    );
    assert!(
        obj.compute(&ArrayD::zeros(vec![2]), &[0, 1], &[0, 0])
            .is_err()
    );
    assert!(matches!(
        obj.compute(&out, &[0, 1], &[0, 10]),
        Err(DistillError::Label { label: 10, .. })
    ));
    let bad = DistillLoss::Kd(KdConfig {
        alpha: 2.0,
        ..KdConfig::default()
    });
    assert!(Distiller::new(&mut t, DistillConfig::new(bad, train_cfg(1))).is_err());
    let zero_batch = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    assert!(Distiller::new(&mut t, DistillConfig::new(kd(), zero_batch)).is_err());
}
