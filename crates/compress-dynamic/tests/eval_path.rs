//! Eval-mode inference of `f32` early-exit nets (`Linear`'s packed-weight eval path): same
//! results as training mode, bit-identical across batchings and between the static forward,
//! the profile and dynamic inference, and following parameter updates.

use compress_core::{Layer, Mode, Module, Param, ParamPath};
use compress_dynamic::{CalibrationTarget, EarlyExitNet, ExitRule, Thresholds, calibrate};
use compress_nn::{Dataset, Linear, ReLU, Sequential, Tanh};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A 3-exit `f32` net covering every case: `Linear + ReLU` stages, a bare `Linear`
/// stage, a nested `Sequential` with a non-dense layer, a head without bias, widths that
/// are not multiples of 16 and one wider than 32.
fn net(seed: u64) -> EarlyExitNet<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let block = |i, o, rng: &mut StdRng| {
        Sequential::new()
            .with(Linear::new(i, o, true, rng))
            .with(ReLU::new())
    };
    EarlyExitNet::new(&[13])
        .with_stage(block(13, 37, &mut rng))
        .with_exit(Linear::new(37, 7, true, &mut rng))
        .with_stage(Linear::new(37, 70, true, &mut rng))
        .with_stage(
            Sequential::new()
                .with(
                    Sequential::new()
                        .with(Tanh::new())
                        .with(Linear::new(70, 33, true, &mut rng)),
                )
                .with(ReLU::new()),
        )
        .with_exit(Linear::new(33, 7, false, &mut rng))
        .with_stage(block(33, 20, &mut rng))
        .with_exit(Linear::new(20, 7, true, &mut rng))
}

fn inputs(n: usize, seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_fn(IxDyn(&[n, 13]), |_| rng.random_range(-2.0f32..2.0))
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn eval_forward_matches_the_layers_own_forward() {
    let mut net = net(1);
    let x = inputs(41, 2);
    // Train mode runs every layer's own forward (matrixmultiply GEMM).
    let reference = net.forward(&x, Mode::Train).unwrap();
    let eval = net.forward(&x, Mode::Eval).unwrap();
    assert!(
        max_abs_diff(&reference, &eval) < 1e-4,
        "{}",
        max_abs_diff(&reference, &eval)
    );
    let all_train = net.forward_all(&x, Mode::Train).unwrap();
    let all_eval = net.forward_all(&x, Mode::Eval).unwrap();
    for (t, e) in all_train.iter().zip(&all_eval) {
        assert!(max_abs_diff(&t.clone().into_dyn(), &e.clone().into_dyn()) < 1e-4);
    }
    // The static forward is the last exit of forward_all, bit for bit.
    assert_eq!(
        bits(&all_eval[2]),
        eval.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn dynamic_inference_is_bit_identical_across_batchings_and_to_the_profile() {
    let mut net = net(3);
    let x = inputs(97, 4);
    // Labels from the static net so that the exits disagree on some samples.
    let labels: Vec<usize> = net
        .full_logits(&x)
        .unwrap()
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        })
        .collect();
    let data = Dataset::new(x.clone(), labels.clone(), 7).unwrap();
    let profile = net.profile(&data, ExitRule::MaxSoftmax, 32).unwrap();
    // Calibrated thresholds sit exactly on samples' scores: the hardest case for exactness.
    let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.05 }).unwrap();
    for t in [
        cal.thresholds.clone(),
        Thresholds {
            rule: ExitRule::MaxSoftmax,
            taus: vec![Some(0.5), None],
        },
        Thresholds {
            rule: ExitRule::Entropy,
            taus: vec![Some(1.2), Some(0.9)],
        },
    ] {
        let batched = net.infer(&x, &t).unwrap();
        if t.rule == ExitRule::MaxSoftmax {
            let sim = profile.simulate(&t).unwrap();
            assert_eq!(sim.exit_fractions, batched.exit_fractions());
            assert!((sim.accuracy - batched.accuracy(&labels)).abs() < 1e-12);
            assert!((sim.avg_macs - batched.avg_macs()).abs() < 1e-9);
        }
        // Logits of each sample equal its exit's logits from the static/profile pass.
        let all = net.forward_all(&x, Mode::Eval).unwrap();
        for (i, &k) in batched.exits.iter().enumerate() {
            let want: Vec<u32> = all[k].row(i).iter().map(|v| v.to_bits()).collect();
            let got: Vec<u32> = batched.logits.row(i).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "sample {i}");
        }
        for i in [0, 5, 50, 96] {
            let xi = x.select(Axis(0), &[i]);
            let one = net.infer(&xi, &t).unwrap();
            assert_eq!(one.exits[0], batched.exits[i]);
            assert_eq!(
                bits(&one.logits),
                bits(&batched.logits.select(Axis(0), &[i]))
            );
        }
    }
    // All early exits disabled: exactly the static network.
    let full = net
        .infer(&x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))
        .unwrap();
    assert_eq!(bits(&full.logits), bits(&net.full_logits(&x).unwrap()));
}

#[test]
fn eval_results_follow_parameter_updates() {
    let mut net = net(5);
    let x = inputs(19, 6);
    let before = net.forward(&x, Mode::Eval).unwrap();
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            p.value_mut().mapv_inplace(|v| v * 1.5 + 0.01);
            Ok(())
        },
    )
    .unwrap();
    let after = net.forward(&x, Mode::Eval).unwrap();
    let reference = net.forward(&x, Mode::Train).unwrap();
    assert!(max_abs_diff(&before, &after) > 1e-3, "the update must show");
    assert!(
        max_abs_diff(&reference, &after) < 1e-3,
        "{}",
        max_abs_diff(&reference, &after)
    );
    // A pushed stage and exit take part at once.
    let mut rng = StdRng::seed_from_u64(7);
    net.push_stage(Box::new(Linear::new(20, 9, true, &mut rng)));
    net.push_exit(Box::new(Linear::new(9, 7, true, &mut rng)));
    let deeper = net.forward(&x, Mode::Eval).unwrap();
    assert!(max_abs_diff(&deeper, &net.forward(&x, Mode::Train).unwrap()) < 1e-3);
}
