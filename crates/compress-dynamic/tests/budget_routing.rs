//! Budgets (deepest exit that fits, per batch and per sample) and difficulty-based routing.

use compress_core::Layer;
use compress_dynamic::{
    Budget, CalibrationTarget, Cascade, DynamicError, ExitRule, SlimmableNet, Thresholds, calibrate,
};
use compress_nn::{Dataset, models::mlp};
use compress_testkit::seeded_tensor;
use ndarray::Axis;
use rand::{SeedableRng, rngs::StdRng};

use crate::common::three_exit_net;

#[test]
fn per_batch_budget_uses_the_deepest_exit_that_fits() {
    let mut net = three_exit_net(5, 4, 1);
    let costs = net.exit_costs().unwrap();
    let x = seeded_tensor::<f64>(&[6, 5], 2);
    for (k, cap) in [
        (0, costs.forced(1) - 1),
        (1, costs.forced(1)),
        (2, costs.full()),
    ] {
        let out = net.infer_budget(&x, Budget::Macs(cap as f64)).unwrap();
        assert!(out.exits.iter().all(|&e| e == k), "cap {cap}");
        assert!(out.macs.iter().all(|&m| m == costs.forced(k) && m <= cap));
    }
    assert_eq!(
        net.infer_budget(&x, Budget::Battery(1.0)).unwrap().exits,
        vec![2; 6]
    );
    assert_eq!(
        net.infer_budget(&x, Budget::Battery(0.0)).unwrap().exits,
        vec![0; 6]
    );
    assert!(matches!(
        net.infer_budget(&x, Budget::Macs(1.0)),
        Err(DynamicError::BudgetTooSmall { .. })
    ));
    assert!(net.infer_budget(&x, Budget::Battery(1.5)).is_err());
}

#[test]
fn per_sample_budgets_with_confidence_exits_stay_within_each_cap() {
    let mut net = three_exit_net(5, 4, 3);
    let x = seeded_tensor::<f64>(&[12, 5], 4);
    let levels: Vec<Budget> = (0..12).map(|i| Budget::Battery(i as f64 / 11.0)).collect();
    let t = Thresholds::uniform(ExitRule::MaxSoftmax, 3, 0.3);
    let out = net.infer_budgets(&x, &levels, Some(&t)).unwrap();
    let costs = net.exit_costs().unwrap();
    let forced: Vec<u64> = (0..3).map(|k| costs.forced(k)).collect();
    for (i, b) in levels.iter().enumerate() {
        assert!(
            out.macs[i] as f64 <= b.cap(&forced).unwrap() + 1e-9,
            "sample {i}"
        );
        // Same answer alone as in the batch.
        let one = net
            .infer_budgets(&x.select(Axis(0), &[i]), &[*b], Some(&t))
            .unwrap();
        assert_eq!((one.exits[0], one.macs[0]), (out.exits[i], out.macs[i]));
    }
}

#[test]
fn cascade_routes_only_uncertain_samples_and_matches_its_profile() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut c = Cascade::<f64>::new(&[6])
        .with_model(mlp(&[6, 3, 4], &mut rng))
        .with_model(mlp(&[6, 32, 4], &mut rng));
    let data = Dataset::new(
        seeded_tensor(&[30, 6], 6),
        (0..30).map(|i| i % 4).collect(),
        4,
    )
    .unwrap();
    let p = c.profile(&data, ExitRule::Entropy, 8).unwrap();
    // Median entropy of the cheap model: about half the samples leave there.
    let mut h: Vec<f64> = p.scores[0].iter().map(|s| -s).collect();
    h.sort_by(f64::total_cmp);
    let t = Thresholds {
        rule: ExitRule::Entropy,
        taus: vec![Some(h[15])],
    };
    let out = c.infer(&data.x, &t).unwrap();
    let sim = p.simulate(&t).unwrap();
    assert_eq!(out.exit_fractions(), sim.exit_fractions);
    assert!((out.avg_macs() - sim.avg_macs).abs() < 1e-9);
    assert!(out.exit_fractions()[0] > 0.0 && out.exit_fractions()[1] > 0.0);
    let costs = c.costs().unwrap();
    for i in 0..30 {
        let expect = if out.exits[i] == 0 {
            costs.own[0]
        } else {
            costs.own[0] + costs.own[1]
        };
        assert_eq!(out.macs[i], expect);
    }
    let cal = calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: 0.0 }).unwrap();
    assert!(cal.simulation.accuracy >= p.exit_accuracies()[1] - 1e-12);
}

#[test]
fn width_routing_matches_the_width_profile() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut net = SlimmableNet::<f64>::mlp(&[6, 16, 4], &[0.25, 1.0], false, &mut rng).unwrap();
    let data = Dataset::new(
        seeded_tensor(&[25, 6], 8),
        (0..25).map(|i| i % 4).collect(),
        4,
    )
    .unwrap();
    let widths = [0.25, 1.0];
    let p = net
        .profile_widths(&data, &widths, ExitRule::MaxSoftmax, 10)
        .unwrap();
    let t = Thresholds::uniform(ExitRule::MaxSoftmax, 2, 0.3);
    let out = net.route(&data.x, &widths, &t).unwrap();
    let sim = p.simulate(&t).unwrap();
    assert_eq!(out.exit_fractions(), sim.exit_fractions);
    assert!((out.avg_macs() - sim.avg_macs).abs() < 1e-9);
    assert_eq!(net.width(), 1.0, "the width is restored");
    assert_eq!(net.cost(&[6]).unwrap().macs, 6 * 16 + 16 * 4);
}
