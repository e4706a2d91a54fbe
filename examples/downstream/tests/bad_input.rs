//! NaN is not hidden by activations, training stops on non-finite parameters, and empty or
//! non-finite inputs get the same typed errors as their siblings.

use netcompress::core::{CoreError, Result as CoreResult};
use netcompress::distill::{DkdConfig, KdConfig, dkd_loss, kd_loss};
use netcompress::ndarray::{Array2, ArrayD, ArrayRef, IxDyn, array};
use netcompress::nn::data::digits;
use netcompress::nn::models::mlp;
use netcompress::nn::{
    HardSwish, NnError, ReLU, ReLU6, Sequential, Sgd, Sigmoid, Tanh, TrainConfig, Trainer,
};
use netcompress::prelude::*;
use netcompress::prune::{
    Csr, IndexWidth, PruneError, magnitude_mask, magnitude_prune_inplace, magnitude_threshold,
};
use netcompress::rand::{SeedableRng, rngs::StdRng};

fn run(layer: &mut dyn Layer<f32>, x: &ArrayD<f32>) -> Vec<f32> {
    layer
        .forward(x, Mode::Eval)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn activations_propagate_nan_as_pytorch_does() {
    let x = array![f32::NAN, -1.0, 2.0].into_dyn();
    let layers: Vec<Box<dyn Layer<f32>>> = vec![
        Box::new(ReLU::new()),
        Box::new(ReLU6::new()),
        Box::new(Tanh::new()),
        Box::new(Sigmoid::new()),
        Box::new(HardSwish::new()),
    ];
    for mut layer in layers {
        let y = run(layer.as_mut(), &x);
        assert!(y[0].is_nan(), "{} turned NaN into {}", layer.name(), y[0]);
        assert!(y[1].is_finite() && y[2].is_finite());
    }
    assert_eq!(run(&mut ReLU::new(), &x)[1..], [0.0, 2.0]);
    assert_eq!(
        run(&mut ReLU6::new(), &array![7.0f32, -1.0].into_dyn()),
        [6.0, 0.0]
    );
}

#[test]
fn training_a_model_with_a_nan_weight_reports_divergence() {
    let (train, _) = digits::<f32>().unwrap();
    let mut net = mlp::<f32, _>(&[64, 16, 10], &mut StdRng::seed_from_u64(0));
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<f32>| {
            if path.to_string() == "0.weight" {
                p.value_mut()[[3, 5]] = f32::NAN;
            }
            Ok(())
        },
    )
    .unwrap();
    let trainer = Trainer::new(TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    });
    let err = trainer
        .fit(&mut net, &mut Sgd::new(0.1), &train, None)
        .unwrap_err();
    assert!(matches!(err, NnError::Diverged { .. }), "{err:?}");
}

/// A network with a parameter the forward pass does not read (a spare head, say).
#[derive(Debug, Module)]
struct WithSpare {
    net: Sequential<f32>,
    spare: Param<f32>,
}

impl Layer<f32> for WithSpare {
    fn name(&self) -> &'static str {
        "WithSpare"
    }
    fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, mode: Mode) -> CoreResult<ArrayD<f32>> {
        self.net.forward(x, mode)
    }
    fn backward(&mut self, grad: &ArrayRef<f32, IxDyn>) -> CoreResult<ArrayD<f32>> {
        self.net.backward(grad)
    }
    fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
        self.net.cost(input_shape)
    }
}

#[test]
fn training_checks_parameters_each_epoch_even_when_the_loss_is_finite() {
    let (train, _) = digits::<f32>().unwrap();
    let mut model = WithSpare {
        net: mlp::<f32, _>(&[64, 16, 10], &mut StdRng::seed_from_u64(0)),
        spare: Param::new(ArrayD::zeros(vec![2, 2])),
    };
    model.spare.value_mut()[[1, 0]] = f32::INFINITY;
    let trainer = Trainer::new(TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    });
    match trainer.fit(&mut model, &mut Sgd::new(0.01), &train, None) {
        Err(NnError::DivergedParam {
            epoch,
            path,
            index,
            value,
            ..
        }) => {
            assert_eq!((epoch, path.as_str(), index), (0, "spare", 2));
            assert_eq!(value, f64::INFINITY);
        }
        other => panic!("expected DivergedParam, got {other:?}"),
    }
}

#[test]
fn distillation_losses_agree_on_zero_rows() {
    let empty = Array2::<f32>::zeros((0, 4));
    let kd = kd_loss(&empty, &empty, &[], &KdConfig::new(2.0, 0.5).unwrap()).unwrap();
    let dkd = dkd_loss(&empty, &empty, &[], &DkdConfig::default()).unwrap();
    assert_eq!((kd.loss, dkd.loss), (0.0, 0.0));
    assert_eq!(kd.grad.shape(), &[0, 4]);
}

#[test]
fn empty_slices_and_non_finite_values_get_typed_errors_not_panics() {
    let t = magnitude_threshold::<f32>(&[], 0.5).unwrap();
    assert_eq!(t.pruned, 0);
    let mut empty: [f32; 0] = [];
    assert_eq!(magnitude_prune_inplace(&mut empty, 0.5).unwrap(), 0);
    let m = magnitude_mask(&Array2::<f32>::zeros((0, 3)), 0.5).unwrap();
    assert_eq!(m.array().shape(), &[0, 3]);

    let nan = array![[0.0f32, 1.0], [f32::NAN, 2.0]];
    let from_csr = Csr::from_dense(&nan, IndexWidth::Auto).unwrap_err();
    let from_threshold = magnitude_threshold(nan.as_slice().unwrap(), 0.5).unwrap_err();
    for err in [from_csr, from_threshold] {
        match err {
            PruneError::Core(CoreError::NonFinite { index, value, .. }) => {
                assert_eq!(index, 2);
                assert!(value.is_nan());
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}
