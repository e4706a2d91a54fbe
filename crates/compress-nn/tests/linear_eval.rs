//! `Linear`'s eval path: the packed-weight kernel agrees with the training-mode GEMM,
//! gives a sample the same result in any batch, and never runs on a stale weight.

use compress_core::{Layer, Mode, Param};
use compress_nn::Linear;
use compress_testkit::{FixedMask, seeded_tensor};
use ndarray::{ArrayD, Axis, IxDyn, s};
use proptest::prelude::*;

/// `x W^T + b` in f64 from the layer's effective weights.
fn reference(l: &Linear<f32>, x: &ArrayD<f32>) -> ArrayD<f64> {
    let w = l.weight.effective().mapv(f64::from);
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let m = x.shape()[0];
    let mut y = ArrayD::<f64>::zeros(IxDyn(&[m, n]));
    for i in 0..m {
        for j in 0..n {
            let mut acc = l
                .bias
                .as_ref()
                .map_or(0.0, |b| f64::from(b.effective()[[j]]));
            for p in 0..k {
                acc += f64::from(x[[i, p]]) * w[[j, p]];
            }
            y[[i, j]] = acc;
        }
    }
    y
}

fn assert_matches(l: &mut Linear<f32>, x: &ArrayD<f32>, what: &str) {
    let got = l.forward(x, Mode::Eval).unwrap();
    let want = reference(l, x);
    for (g, w) in got.iter().zip(want.iter()) {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}: {g} vs {w}"
        );
    }
}

fn layer(k: usize, n: usize, bias: bool, seed: u64) -> Linear<f32> {
    let w = seeded_tensor::<f32>(&[n, k], seed);
    let b = bias.then(|| seeded_tensor::<f32>(&[n], seed + 1));
    Linear::from_arrays(w, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn eval_equals_train_forward_and_rows_ignore_their_batch(
        m in 0usize..21, k in 1usize..50, n in 1usize..70, bias: bool, seed in 0u64..1000,
    ) {
        let mut l = layer(k, n, bias, seed);
        let x = seeded_tensor::<f32>(&[m, k], seed + 7);
        let eval = l.forward(&x, Mode::Eval).unwrap();
        let train = l.forward(&x, Mode::Train).unwrap();
        prop_assert_eq!(eval.shape(), &[m, n]);
        for (a, b) in eval.iter().zip(train.iter()) {
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
        for i in 0..m {
            let row = x.slice(s![i..i + 1, ..]).to_owned().into_dyn();
            let one = l.forward(&row, Mode::Eval).unwrap();
            let same = one.iter().zip(eval.index_axis(Axis(0), i).iter())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            prop_assert!(same, "row {} differs alone and in its batch", i);
        }
    }
}

#[test]
fn eval_path_follows_every_change_of_the_weights() {
    let mut l = layer(24, 40, true, 3);
    let x = seeded_tensor::<f32>(&[5, 24], 11);
    assert_matches(&mut l, &x, "fresh");
    l.weight.value_mut()[[0, 0]] += 3.0;
    assert_matches(&mut l, &x, "value_mut");
    l.bias.as_mut().unwrap().value_mut()[[7]] -= 2.0;
    assert_matches(&mut l, &x, "bias value_mut");
    let mask = seeded_tensor::<f32>(&[40, 24], 5).mapv(|v| f32::from(u8::from(v > 0.0)));
    l.weight
        .push_parametrization(Box::new(FixedMask::new(mask)))
        .unwrap();
    assert_matches(&mut l, &x, "mask attached");
    l.weight.remove_parametrizations::<FixedMask<f32>>();
    assert_matches(&mut l, &x, "mask removed");
    // Whole parameters replaced through the public fields.
    l.weight = Param::new(seeded_tensor::<f32>(&[40, 24], 99));
    assert_matches(&mut l, &x, "weight replaced");
    l.bias = None;
    assert_matches(&mut l, &x, "bias dropped");
    l.bias = Some(Param::new(seeded_tensor::<f32>(&[40], 98)));
    assert_matches(&mut l, &x, "bias added");
    // A training step in between.
    l.forward(&x, Mode::Train).unwrap();
    l.backward(&ArrayD::ones(IxDyn(&[5, 40]))).unwrap();
    l.weight.update(|w, g| *w -= &(g * 0.1));
    assert_matches(&mut l, &x, "after an update");
    // A clone keeps working after the original changes.
    let mut c = l.clone();
    l.weight.value_mut().fill(0.5);
    assert_matches(&mut c, &x, "clone");
    assert_matches(&mut l, &x, "original after clone");
}

#[test]
fn eval_forward_keeps_no_training_cache_and_rejects_bad_shapes() {
    let mut l = layer(8, 4, true, 1);
    let x = seeded_tensor::<f32>(&[3, 8], 2);
    l.forward(&x, Mode::Eval).unwrap();
    assert!(l.backward(&ArrayD::ones(IxDyn(&[3, 4]))).is_err());
    let err = l
        .forward(&ArrayD::<f32>::zeros(IxDyn(&[3, 7])), Mode::Eval)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Linear input") && err.contains('7'), "{err}");
}

#[test]
fn large_layers_and_f64_compute_the_product() {
    // 1100 x 1024 exceeds the packed size limit: up to 4 rows take dot products straight
    // from the weight, more rows the general GEMM.
    let mut big = layer(1024, 1100, true, 4);
    for m in [1, 4, 5, 9] {
        let x = seeded_tensor::<f32>(&[m, 1024], 3);
        assert_matches(&mut big, &x, &format!("large, {m} rows"));
    }
    big.weight.value_mut()[[7, 9]] += 1.0;
    assert_matches(
        &mut big,
        &seeded_tensor::<f32>(&[2, 1024], 5),
        "large, updated",
    );
    let mut l64 =
        Linear::<f64>::from_arrays(seeded_tensor(&[3, 2], 1), Some(seeded_tensor(&[3], 2)));
    let x64 = seeded_tensor::<f64>(&[2, 2], 3);
    let y = l64.forward(&x64, Mode::Eval).unwrap();
    let w = l64.weight.value();
    let b = l64.bias.as_ref().unwrap().value();
    let want = x64[[1, 0]] * w[[2, 0]] + x64[[1, 1]] * w[[2, 1]] + b[[2]];
    assert!((y[[1, 2]] - want).abs() < 1e-12);
}
