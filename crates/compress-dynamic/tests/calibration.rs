//! Calibration and simulation on synthetic profiles, including property tests.

use compress_dynamic::{
    CalibrationTarget, DynamicError, ExitCosts, ExitProfile, ExitRule, Thresholds, calibrate,
    tradeoff_curve,
};
use proptest::prelude::*;

fn profile(
    scores: Vec<Vec<f64>>,
    correct: Vec<Vec<bool>>,
    shared: Vec<u64>,
    own: Vec<u64>,
) -> ExitProfile {
    ExitProfile::new(
        ExitRule::MaxSoftmax,
        scores,
        correct,
        ExitCosts { shared, own },
    )
    .unwrap()
}

#[test]
fn simulation_counts_heads_of_active_exits_only() {
    let p = profile(
        vec![vec![0.9, 0.2], vec![0.9, 0.3], vec![1.0, 1.0]],
        vec![vec![true, false], vec![true, true], vec![true, true]],
        vec![10, 20, 30],
        vec![1, 2, 3],
    );
    let s = p
        .simulate(&Thresholds {
            rule: ExitRule::MaxSoftmax,
            taus: vec![Some(0.5), None],
        })
        .unwrap();
    assert_eq!(s.exit_fractions, vec![0.5, 0.0, 0.5]);
    assert!((s.avg_macs - (11.0 + (30.0 + 1.0 + 3.0)) / 2.0).abs() < 1e-12);
    let s = p
        .simulate(&Thresholds::disabled(ExitRule::MaxSoftmax, 3))
        .unwrap();
    assert_eq!(s.avg_macs, 33.0);
    assert!(
        p.simulate(&Thresholds::disabled(ExitRule::MaxSoftmax, 2))
            .is_err()
    );
}

#[test]
fn budget_calibration_and_infeasible_budgets() {
    let p = profile(
        vec![vec![0.9, 0.6, 0.95, 0.4], vec![1.0; 4]],
        vec![vec![true, false, true, false], vec![true; 4]],
        vec![10, 100],
        vec![1, 1],
    );
    let c = calibrate(&p, CalibrationTarget::MacBudget { avg_macs: 60.0 }).unwrap();
    assert!(c.simulation.avg_macs <= 60.0);
    assert_eq!(c.simulation.accuracy, 1.0);
    assert!(matches!(
        calibrate(&p, CalibrationTarget::MacBudget { avg_macs: 5.0 }),
        Err(DynamicError::Infeasible { .. })
    ));
    assert!(calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: 2.0 }).is_err());
}

#[test]
fn curve_spans_first_exit_to_full() {
    let p = profile(
        vec![vec![0.3, 0.6, 0.95], vec![1.0; 3]],
        vec![vec![true, false, true], vec![true; 3]],
        vec![10, 100],
        vec![1, 1],
    );
    let c = tradeoff_curve(&p, 10, 5).unwrap();
    assert_eq!(c[0].simulation.exit_fractions[0], 1.0);
    assert!(
        c.windows(2)
            .all(|w| w[0].simulation.avg_macs <= w[1].simulation.avg_macs)
    );
    assert!(tradeoff_curve(&p, 10, 1).is_err());
}

fn arb_profile() -> impl Strategy<Value = ExitProfile> {
    (2usize..4, 1usize..40).prop_flat_map(|(k, n)| {
        (
            prop::collection::vec(prop::collection::vec(0.0f64..1.0, n), k),
            prop::collection::vec(prop::collection::vec(any::<bool>(), n), k),
            prop::collection::vec(1u64..1000, k),
            prop::collection::vec(0u64..100, k),
        )
            .prop_map(|(scores, correct, steps, own)| {
                let mut acc = 0;
                let shared = steps
                    .iter()
                    .map(|s| {
                        acc += s;
                        acc
                    })
                    .collect();
                profile(scores, correct, shared, own)
            })
    })
}

proptest! {
    #[test]
    fn calibrated_thresholds_meet_the_target_and_never_exceed_the_full_cost(
        p in arb_profile(), drop in 0.0f64..0.2,
    ) {
        let c = calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: drop }).unwrap();
        prop_assert!(c.simulation.accuracy >= c.reference_accuracy - drop - 1e-9);
        prop_assert!(c.simulation.avg_macs <= p.costs.full() as f64 + 1e-9);
        // The reported simulation is what the thresholds really do.
        let again = p.simulate(&c.thresholds).unwrap();
        prop_assert!((again.avg_macs - c.simulation.avg_macs).abs() < 1e-9);
        prop_assert!((again.accuracy - c.simulation.accuracy).abs() < 1e-12);
        let total: f64 = again.exit_fractions.iter().sum();
        prop_assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn budget_calibration_respects_the_budget(p in arb_profile(), frac in 0.0f64..1.0) {
        let lo = p.costs.forced(0) as f64;
        let budget = lo + frac * (p.costs.full() as f64 - lo).max(0.0);
        if let Ok(c) = calibrate(&p, CalibrationTarget::MacBudget { avg_macs: budget }) {
            prop_assert!(c.simulation.avg_macs <= budget + 1e-9);
            let again = p.simulate(&c.thresholds).unwrap();
            prop_assert!((again.avg_macs - c.simulation.avg_macs).abs() < 1e-9);
        }
    }
}
