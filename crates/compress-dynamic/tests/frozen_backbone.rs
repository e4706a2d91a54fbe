//! Early exits added to a trained network: `insert_exit` keeps the exits in stage order,
//! and `train_exit_heads` trains only the early heads, leaving the backbone and the last
//! exit (the static network) bit-identical.

use compress_core::{CoreError, Layer, Mode, Module};
use compress_dynamic::{
    DynamicError, EarlyExitNet, ExitDistill, ExitRule, ExitTrainConfig, Thresholds,
    train_early_exit, train_exit_heads,
};
use compress_nn::train::evaluate;
use compress_nn::{Adam, Linear, data::digits};
use rand::{SeedableRng, rngs::StdRng};

use crate::common::block;

/// A 3-stage network with only its last exit: the static network.
fn static_net(rng: &mut StdRng) -> EarlyExitNet<f32> {
    EarlyExitNet::new(&[64])
        .with_stage(block(64, 32, rng))
        .with_stage(block(32, 64, rng))
        .with_stage(block(64, 64, rng))
        .with_exit(Linear::new(64, 10, true, rng))
}

#[test]
fn insert_exit_keeps_stage_order_and_rejects_bad_stages() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = static_net(&mut rng);
    net.insert_exit(1, Box::new(Linear::<f32>::new(64, 10, true, &mut rng)))
        .unwrap();
    net.insert_exit(0, Box::new(Linear::<f32>::new(32, 10, true, &mut rng)))
        .unwrap();
    assert_eq!(net.attach_points(), &[0, 1, 2]);
    net.validate().unwrap();
    let names: Vec<String> = net.named_params().into_iter().map(|p| p.path).collect();
    assert!(names.contains(&"exits.0.weight".to_string()), "{names:?}");
    assert_eq!(net.exits()[0].cost(&[32]).unwrap().macs, 320);
    for bad in [0, 2, 3] {
        let err = net
            .insert_exit(bad, Box::new(Linear::<f32>::new(32, 10, true, &mut rng)))
            .unwrap_err();
        match err {
            DynamicError::Core(CoreError::InvalidConfig { name, reason }) => {
                assert_eq!(name, "after_stage");
                assert!(reason.contains(&bad.to_string()), "{reason}");
            }
            e => panic!("expected InvalidConfig for stage {bad}, got {e:?}"),
        }
    }
    assert_eq!(net.num_exits(), 3);
}

#[test]
fn frozen_backbone_keeps_the_static_network_and_trains_the_early_heads() {
    let (train, test) = digits::<f32>().unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = static_net(&mut rng);
    let cfg = ExitTrainConfig {
        epochs: 4,
        ..ExitTrainConfig::default()
    };
    train_early_exit(&mut net, &mut Adam::new(3e-3), &train, &cfg).unwrap();
    let static_acc = evaluate(&mut net, &test, 256).unwrap();
    let static_logits = net.forward(&test.x, Mode::Eval).unwrap();
    let backbone = net.state_dict();
    // A one-exit network has nothing to train on a frozen backbone.
    assert!(train_exit_heads(&mut net, &mut Adam::new(3e-3), &train, &cfg).is_err());

    net.insert_exit(0, Box::new(Linear::<f32>::new(32, 10, true, &mut rng)))
        .unwrap();
    net.insert_exit(1, Box::new(Linear::<f32>::new(64, 10, true, &mut rng)))
        .unwrap();
    let heads_before: Vec<_> = net
        .state_dict()
        .into_iter()
        .filter(|(p, _)| p.starts_with("exits.0") || p.starts_with("exits.1"))
        .collect();
    let cfg = ExitTrainConfig {
        epochs: 3,
        distill: Some(ExitDistill {
            temperature: 2.0,
            alpha: 0.5,
        }),
        ..ExitTrainConfig::default()
    };
    let report = train_exit_heads(&mut net, &mut Adam::new(3e-3), &train, &cfg).unwrap();
    assert!(report.epochs.last().unwrap().loss < report.epochs[0].loss);

    // The backbone and the last exit are bit-identical (renamed exits.0 -> exits.2).
    let after = net.state_dict();
    for (path, value) in &backbone {
        let path = path.replace("exits.0", "exits.2");
        let now = &after.iter().find(|(p, _)| *p == path).unwrap().1;
        assert_eq!(now, value, "{path} changed");
    }
    // The early heads learnt.
    for (path, value) in &heads_before {
        let now = &after.iter().find(|(p, _)| p == path).unwrap().1;
        assert_ne!(now, value, "{path} did not change");
    }
    assert_eq!(net.forward(&test.x, Mode::Eval).unwrap(), static_logits);
    let last = net
        .infer(&test.x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))
        .unwrap();
    assert_eq!(last.accuracy(&test.labels), static_acc);
    let p = net.profile(&test, ExitRule::MaxSoftmax, 256).unwrap();
    let acc = p.exit_accuracies();
    assert!(
        acc[0] > 0.8 && acc[1] > 0.8,
        "early exit accuracies {acc:?}"
    );
}
