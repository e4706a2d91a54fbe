//! Schedules and lottery tickets on a small real training run.

use compress_core::{Layer, ParamFilter};
use compress_nn::train::{CrossEntropy, TrainHooks, evaluate};
use compress_nn::{Sgd, TrainConfig, Trainer, models::mlp};
use compress_prune::{
    GradualPruning, LotteryConfig, PolynomialSchedule, PruneConfig, Rewind, iterative_sparsities,
    lottery_ticket, mask_report, prune_iteratively,
};
use rand::{SeedableRng, rngs::StdRng};

fn small_digits() -> (compress_nn::Dataset<f32>, compress_nn::Dataset<f32>) {
    let (tr, te) = compress_nn::data::digits::<f32>().unwrap();
    (
        tr.subset(&(0..400).collect::<Vec<_>>()),
        te.subset(&(0..200).collect::<Vec<_>>()),
    )
}

#[test]
fn polynomial_schedule_matches_the_formula() {
    let s = PolynomialSchedule::new(0.1, 0.9, 100, 10, 20);
    assert_eq!(s.sparsity_at(50), 0.1);
    assert_eq!(s.sparsity_at(300), 0.9);
    let t = 150usize;
    let want = 0.9 + (0.1 - 0.9) * (1.0 - (t - 100) as f64 / 200.0).powi(3);
    assert!((s.sparsity_at(t) - want).abs() < 1e-12);
    let mut prev = 0.0;
    for t in (100..=300).step_by(10) {
        assert!(s.sparsity_at(t) >= prev);
        prev = s.sparsity_at(t);
    }
    assert!(
        PolynomialSchedule::new(0.0, 1.0, 0, 1, 1)
            .validate()
            .is_err()
    );
    assert!(
        PolynomialSchedule::new(0.0, 0.5, 0, 0, 1)
            .validate()
            .is_err()
    );
    assert!(iterative_sparsities(0.9, 0).is_err());
}

#[test]
fn gradual_pruning_reaches_target_during_training() {
    let (train, test) = small_digits();
    let mut net = mlp::<f32, _>(&[64, 48, 10], &mut StdRng::seed_from_u64(0));
    // 400 / 32 = 13 steps per epoch; prune every 5 steps for 8 intervals (40 steps).
    let mut hooks = GradualPruning::new(
        PolynomialSchedule::new(0.0, 0.8, 5, 5, 8),
        PruneConfig::new(0.8),
    );
    let trainer = Trainer::new(TrainConfig {
        epochs: 8,
        ..TrainConfig::default()
    });
    trainer
        .fit_with(
            &mut net,
            &mut Sgd::new(0.1).momentum(0.9),
            &train,
            None,
            &mut CrossEntropy,
            &mut hooks,
        )
        .unwrap();
    assert_eq!(hooks.history().len(), 9);
    assert!(hooks.history().windows(2).all(|w| w[1].1 >= w[0].1));
    let final_s = mask_report(&net, &ParamFilter::new()).sparsity();
    assert!((final_s - 0.8).abs() < 1e-3, "{final_s}");
    assert!(evaluate(&mut net, &test, 256).unwrap() > 0.6);
    let _ = <GradualPruning as TrainHooks<f32>>::on_epoch;
}

#[test]
fn iterative_pruning_calls_fine_tune_each_round() {
    let mut net = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
    let mut seen = Vec::new();
    let reports = prune_iteratively(&mut net, &PruneConfig::new(0.875), 3, |m, r| {
        seen.push((r, mask_report(m, &ParamFilter::new()).sparsity()));
        Ok(())
    })
    .unwrap();
    assert_eq!(reports.len(), 3);
    assert!((seen[0].1 - 0.5).abs() < 1e-3 && (seen[2].1 - 0.875).abs() < 1e-3);
}

#[test]
fn lottery_ticket_reports_each_round() {
    let (train, test) = small_digits();
    let trainer = Trainer::new(TrainConfig {
        epochs: 3,
        ..TrainConfig::default()
    });
    // Tickets of `mlp(64, hidden, 10)`, trained by SGD on the small digits.
    let run = |cfg: &LotteryConfig, hidden: usize| {
        lottery_ticket(
            cfg,
            |seed| mlp::<f32, _>(&[64, hidden, 10], &mut StdRng::seed_from_u64(seed)),
            |m, hooks| {
                trainer.fit_with(
                    m,
                    &mut Sgd::new(0.1).momentum(0.9),
                    &train,
                    None,
                    &mut CrossEntropy,
                    hooks,
                )?;
                Ok(())
            },
            |m| Ok(evaluate(m, &test, 256)?),
        )
    };
    for rewind in [Rewind::Init, Rewind::Step(5)] {
        let cfg = LotteryConfig {
            rounds: 2,
            rewind,
            ..LotteryConfig::default()
        };
        let (ticket, report) = run(&cfg, 32).unwrap();
        assert_eq!(report.rounds.len(), 2);
        assert!((report.rounds[0].sparsity - 0.2).abs() < 1e-3);
        assert!((report.rounds[1].sparsity - 0.36).abs() < 1e-3);
        assert!(report.rounds.iter().all(|r| r.control_accuracy.is_some()));
        assert!(report.dense_accuracy > 0.5, "{report:?}");
        assert!((mask_report(&ticket, &ParamFilter::new()).sparsity() - 0.36).abs() < 1e-3);
        let _ = ticket.cost(&[64]).unwrap();
    }
    let bad = LotteryConfig {
        rewind: Rewind::Step(100_000),
        rounds: 1,
        ..LotteryConfig::default()
    };
    assert!(run(&bad, 8).is_err());
}
