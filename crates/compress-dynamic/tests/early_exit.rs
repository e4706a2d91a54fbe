//! Early-exit networks: structure, batched vs one-by-one inference, MAC accounting,
//! consistency with the profile simulation, and joint training on digits.

use compress_core::{Layer, Module};
use compress_dynamic::{
    CalibrationTarget, DynamicError, EarlyExitNet, ExitDistill, ExitRule, ExitTrainConfig,
    Thresholds, calibrate, train_early_exit,
};
use compress_nn::{Adam, Dataset, Linear, data::digits};
use compress_testkit::seeded_tensor;
use ndarray::{ArrayD, Axis};
use rand::{SeedableRng, rngs::StdRng};

use crate::common::{block, three_exit_net};

fn random_data(n: usize, d: usize, c: usize, seed: u64) -> Dataset<f64> {
    let x = seeded_tensor::<f64>(&[n, d], seed);
    let labels = (0..n).map(|i| (i * 7 + seed as usize) % c).collect();
    Dataset::new(x, labels, c).unwrap()
}

#[test]
fn paths_costs_and_static_forward() {
    let net = three_exit_net(5, 4, 1);
    let names: Vec<String> = net.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(names[0], "stages.0.0.weight");
    assert!(names.contains(&"exits.2.bias".to_string()));
    let c = net.exit_costs().unwrap();
    assert_eq!(
        c.shared,
        vec![
            5 * 6,
            5 * 6 + 6 * 12 + 12 * 12,
            5 * 6 + 6 * 12 + 12 * 12 + 12 * 16
        ]
    );
    assert_eq!(c.own, vec![6 * 4, 12 * 4, 16 * 4]);
    assert_eq!(net.cost(&[5]).unwrap().macs, c.full());
    assert_eq!(net.cost(&[5]).unwrap().params, net.num_params());
}

#[test]
fn structure_errors_are_typed() {
    let mut rng = StdRng::seed_from_u64(0);
    let no_final = EarlyExitNet::<f64>::new(&[4])
        .with_stage(block(4, 4, &mut rng))
        .with_exit(Linear::new(4, 2, true, &mut rng))
        .with_stage(block(4, 4, &mut rng));
    assert!(matches!(no_final.validate(), Err(DynamicError::Core(_))));
    let bad_shape = EarlyExitNet::<f64>::new(&[4])
        .with_stage(block(4, 4, &mut rng))
        .with_exit(Linear::new(5, 2, true, &mut rng));
    assert!(bad_shape.validate().is_err());
    let mut net = three_exit_net(5, 4, 1);
    let x = ArrayD::zeros(vec![2, 5]);
    assert!(
        net.infer(&x, &Thresholds::uniform(ExitRule::MaxSoftmax, 2, 0.5))
            .is_err()
    );
    assert!(
        net.infer(&x, &Thresholds::uniform(ExitRule::MaxSoftmax, 3, 1.5))
            .is_err()
    );
}

#[test]
fn batched_equals_one_by_one_and_macs_add_up() {
    let mut net = three_exit_net(5, 4, 2);
    let data = random_data(40, 5, 4, 3);
    let costs = net.exit_costs().unwrap();
    for (rule, taus) in [
        (ExitRule::MaxSoftmax, vec![Some(0.3), Some(0.35)]),
        (ExitRule::MaxSoftmax, vec![None, Some(0.3)]),
        (ExitRule::Entropy, vec![Some(1.3), None]),
        (ExitRule::Entropy, vec![Some(1.2), Some(1.3)]),
    ] {
        let t = Thresholds { rule, taus };
        let batched = net.infer(&data.x, &t).unwrap();
        let active = t.active();
        for i in 0..data.len() {
            let xi = data.x.select(Axis(0), &[i]);
            let one = net.infer(&xi, &t).unwrap();
            assert_eq!(one.exits[0], batched.exits[i], "sample {i}");
            assert_eq!(one.predictions()[0], batched.predictions()[i]);
            assert_eq!(one.macs[0], batched.macs[i]);
            assert_eq!(batched.macs[i], costs.path_macs(batched.exits[i], &active));
            if batched.exits[i] < 2 {
                assert!(
                    batched.macs[i] <= costs.full(),
                    "an early exit costs no more than the net"
                );
            }
        }
        // The same thresholds simulated on a profile give the same numbers.
        let p = net.profile(&data, rule, 7).unwrap();
        let sim = p.simulate(&t).unwrap();
        assert_eq!(sim.exit_fractions, batched.exit_fractions());
        assert!((sim.avg_macs - batched.avg_macs()).abs() < 1e-9);
        assert!((sim.accuracy - batched.accuracy(&data.labels)).abs() < 1e-12);
    }
}

#[test]
fn disabled_exits_are_the_static_network() {
    let mut net = three_exit_net(5, 4, 4);
    let data = random_data(9, 5, 4, 1);
    let out = net
        .infer(&data.x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))
        .unwrap();
    let full = net.full_logits(&data.x).unwrap();
    assert!(out.logits.abs_diff_eq(&full, 1e-12));
    assert!(
        out.macs
            .iter()
            .all(|&m| m == net.exit_costs().unwrap().full())
    );
}

#[test]
fn joint_training_on_digits_and_calibrated_savings() {
    let (train, test) = digits::<f32>().unwrap();
    let (train, valid) = train.split_stratified(0.2, 3).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = EarlyExitNet::new(&[64])
        .with_stage(block(64, 32, &mut rng))
        .with_exit(Linear::new(32, 10, true, &mut rng))
        .with_stage(block(32, 96, &mut rng))
        .with_stage(block(96, 96, &mut rng))
        .with_exit(Linear::new(96, 10, true, &mut rng));
    let cfg = ExitTrainConfig {
        epochs: 8,
        distill: Some(ExitDistill {
            temperature: 2.0,
            alpha: 0.5,
        }),
        ..ExitTrainConfig::default()
    };
    let report = train_early_exit(&mut net, &mut Adam::new(3e-3), &train, &cfg).unwrap();
    assert!(report.epochs.last().unwrap().loss < report.epochs[0].loss);
    let p = net.profile(&valid, ExitRule::MaxSoftmax, 128).unwrap();
    let acc = p.exit_accuracies();
    assert!(acc[0] > 0.85 && acc[1] > 0.85, "exit accuracies {acc:?}");
    let cal = calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: 0.01 }).unwrap();
    assert!(cal.simulation.accuracy >= cal.reference_accuracy - 0.01 - 1e-12);
    let full = net.exit_costs().unwrap().full() as f64;
    assert!(cal.simulation.avg_macs <= full);
    let out = net.infer(&test.x, &cal.thresholds).unwrap();
    assert!(out.avg_macs() < full, "{} vs {full}", out.avg_macs());
    assert!(out.accuracy(&test.labels) > 0.85);
}
