//! The concrete f32/f64 kernels (contiguous inputs) give bit-identical results to the
//! generic code they replace (taken for non-contiguous inputs).

use netcompress::distill::{KdConfig, kd_loss};
use netcompress::ndarray::{Array2, ArrayD, IxDyn};
use netcompress::nn::loss::{log_softmax, softmax_cross_entropy};
use netcompress::nn::{HardSwish, ReLU, ReLU6, Sigmoid, Tanh};
use netcompress::prelude::*;
use netcompress::rand::{Rng, SeedableRng, rngs::StdRng};

/// `[rows, cols]` values, and the same values stored transposed (a non-contiguous view).
fn pair(rows: usize, cols: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let a = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-4.0..4.0));
    // Row-major storage of the transpose: its `.t()` is a strided view of the same values.
    let stored_t = Array2::from_shape_fn((cols, rows), |(j, i)| a[[i, j]]);
    (a, stored_t)
}

fn bits(a: &ArrayD<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn losses_match_the_generic_path_bit_for_bit() {
    let (a, t) = pair(7, 5, 1);
    let strided = t.t();
    assert!(strided.as_slice().is_none());
    let labels = [0, 4, 2, 1, 3, 3, 0];
    let (l1, g1) = softmax_cross_entropy(&a, &labels).unwrap();
    let (l2, g2) = softmax_cross_entropy(&strided, &labels).unwrap();
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert_eq!(bits(&g1.into_dyn()), bits(&g2.into_dyn()));
    assert_eq!(
        bits(&log_softmax(&a).into_dyn()),
        bits(&log_softmax(&strided).into_dyn())
    );

    let (s, st) = pair(7, 5, 2);
    let cfg = KdConfig::new(3.0, 0.6).unwrap();
    let k1 = kd_loss(&s, &a, &labels, &cfg).unwrap();
    let k2 = kd_loss(&st.t(), &strided, &labels, &cfg).unwrap();
    assert_eq!(
        (k1.loss.to_bits(), k1.kl.to_bits()),
        (k2.loss.to_bits(), k2.kl.to_bits())
    );
    assert_eq!(bits(&k1.grad.into_dyn()), bits(&k2.grad.into_dyn()));
}

#[test]
fn activations_match_the_generic_path_bit_for_bit() {
    let (a, t) = pair(6, 9, 3);
    let contiguous = a.clone().into_dyn();
    let strided = t.t().into_dyn();
    assert!(strided.as_slice().is_none());
    let grad = Array2::from_elem((6, 9), 0.5f64).into_dyn();
    type Pair = (Box<dyn Layer<f64>>, Box<dyn Layer<f64>>);
    let layers: Vec<Pair> = vec![
        (Box::new(ReLU::new()), Box::new(ReLU::new())),
        (Box::new(ReLU6::new()), Box::new(ReLU6::new())),
        (Box::new(Tanh::new()), Box::new(Tanh::new())),
        (Box::new(Sigmoid::new()), Box::new(Sigmoid::new())),
        (Box::new(HardSwish::new()), Box::new(HardSwish::new())),
    ];
    for (mut fast, mut slow) in layers {
        let y1 = fast.forward(&contiguous, Mode::Train).unwrap();
        let y2 = slow.forward(&strided, Mode::Train).unwrap();
        assert_eq!(bits(&y1), bits(&y2), "{}", fast.name());
        let d1 = fast.backward(&grad).unwrap();
        let d2 = slow.backward(&grad.view().reversed_axes().t()).unwrap();
        assert_eq!(bits(&d1), bits(&d2), "{}", fast.name());
    }
    let x = ArrayD::from_elem(IxDyn(&[3]), f32::NAN);
    assert!(
        ReLU::new()
            .forward(&x, Mode::Eval)
            .unwrap()
            .iter()
            .all(|v| v.is_nan())
    );
}
