//! End-to-end training on the embedded digits.

use compress_core::{Layer, Module};
use compress_nn::data::digits;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Sgd, TrainConfig, Trainer};
use rand::{SeedableRng, rngs::StdRng};

#[test]
fn digits_split_is_fixed_and_stratified() {
    let (train, test) = digits::<f32>().unwrap();
    assert_eq!(train.len() + test.len(), 1797);
    for c in 0..10 {
        let tr = train.labels.iter().filter(|&&l| l == c).count();
        let te = test.labels.iter().filter(|&&l| l == c).count();
        let frac = te as f64 / (tr + te) as f64;
        assert!((frac - 0.2).abs() < 0.02, "class {c}: {frac}");
    }
    let (train2, _) = digits::<f32>().unwrap();
    assert_eq!(train.labels, train2.labels);
}

#[test]
fn reference_mlp_reaches_96_percent_on_digits() {
    let (train, test) = digits::<f32>().unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = mlp::<f32, _>(&[64, 128, 64, 10], &mut rng);
    assert_eq!(
        net.num_params(),
        64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    );
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let trainer = Trainer::new(TrainConfig {
        epochs: 20,
        batch_size: 32,
        ..TrainConfig::default()
    });
    trainer.fit(&mut net, &mut opt, &train, None).unwrap();
    let acc = evaluate(&mut net, &test, 512).unwrap();
    assert!(acc >= 0.96, "accuracy {acc}");
    assert_eq!(net.cost(&[64]).unwrap().output_shape, vec![10]);
}

#[test]
fn small_cnn_reaches_96_percent_on_digits() {
    use compress_nn::models::small_cnn;
    use compress_nn::{Adam, LrSchedule};
    let (train, test) = digits::<f32>().unwrap();
    let (train, test) = (
        train.reshaped(&[1, 8, 8]).unwrap(),
        test.reshaped(&[1, 8, 8]).unwrap(),
    );
    let mut net = small_cnn::<f32, _>(1, 8, 10, &mut StdRng::seed_from_u64(1));
    let trainer = Trainer::new(TrainConfig {
        epochs: 6,
        batch_size: 32,
        schedule: LrSchedule::Cosine { min_lr: 1e-4 },
        ..TrainConfig::default()
    });
    trainer
        .fit(&mut net, &mut Adam::new(3e-3), &train, None)
        .unwrap();
    let acc = evaluate(&mut net, &test, 512).unwrap();
    eprintln!("small CNN test accuracy on digits: {acc:.4}");
    assert!(acc >= 0.96, "accuracy {acc}");
    let cost = net.cost(&[1, 8, 8]).unwrap();
    assert_eq!(cost.output_shape, vec![10]);
    assert_eq!(
        cost.macs,
        (64 * 16 * 9 + 64 * 32 * 16 * 9 + 512 * 64 + 64 * 10 + 64 * 16 + 64 * 32) as u64
    );
}

#[test]
fn small_cnn_fits_28x28_and_3_channel_inputs() {
    use compress_core::Mode;
    use compress_nn::models::small_cnn;
    use ndarray::ArrayD;
    let mut rng = StdRng::seed_from_u64(2);
    for (c, side) in [(1, 28), (3, 16), (1, 5)] {
        let mut net = small_cnn::<f32, _>(c, side, 10, &mut rng);
        let y = net
            .forward(&ArrayD::zeros(vec![2, c, side, side]), Mode::Train)
            .unwrap();
        assert_eq!(y.shape(), &[2, 10]);
        net.backward(&y).unwrap();
        assert_eq!(net.cost(&[c, side, side]).unwrap().output_shape, vec![10]);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]

    /// Every epoch of `Minibatches` visits each sample exactly once, in batches of the batch
    /// size (the last one shorter), with the schedule's rate set on the optimizer; the same
    /// seed gives the same orders and the same later draws from the lent generator.
    #[test]
    fn minibatches_partition_every_epoch_and_follow_the_seed(
        samples in 0usize..40, batch in 1usize..9, epochs in 0usize..4, seed in 0u64..1000,
    ) {
        use compress_nn::train::Minibatches;
        use compress_nn::{LrSchedule, Optimizer};
        use rand::Rng;
        let schedule = LrSchedule::Step { step_size: 1, gamma: 0.5 };
        let run = |seed: u64| {
            let mut opt = Sgd::<f64>::new(0.8);
            let mut mb = Minibatches::new(samples, batch, seed).unwrap().epochs(epochs, schedule);
            let mut seen = Vec::new();
            while let Some(epoch) = mb.next_epoch(&mut opt) {
                assert_eq!(opt.lr(), schedule.lr_at(0.8, epoch.index, epochs));
                let batches: Vec<Vec<usize>> = epoch.batches.map(<[usize]>::to_vec).collect();
                assert_eq!(batches.len(), samples.div_ceil(batch));
                assert!(batches.iter().rev().skip(1).all(|b| b.len() == batch));
                let mut all: Vec<usize> = batches.concat();
                seen.push((all.clone(), epoch.rng.random::<u64>()));
                all.sort_unstable();
                assert_eq!(all, (0..samples).collect::<Vec<_>>());
            }
            assert_eq!(seen.len(), epochs);
            seen
        };
        proptest::prop_assert_eq!(run(seed), run(seed));
    }
}

#[test]
fn minibatches_reject_a_zero_batch_size() {
    let err = compress_nn::train::Minibatches::new(10, 0, 0).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}
