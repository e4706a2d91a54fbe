//! compress-dynamic: batched early-exit inference over the digits test set (calibrated
//! thresholds, only surviving samples forwarded) vs the static network.
//!
//! Both run the same layers of the same net on the same 359-sample batch: the static
//! forward (`Layer::forward` in `Mode::Eval`: every stage, then the last head, no early
//! head) and dynamic inference use `Linear`'s eval path and the same in-place activations,
//! so the time ratio reflects the work skipped plus the exit tests' own cost.

use std::hint::black_box;

use compress_core::{Layer, Mode};
use compress_dynamic::{
    CalibrationTarget, EarlyExitNet, ExitDistill, ExitRule, ExitTrainConfig, Thresholds, calibrate,
    train_early_exit,
};
use compress_nn::{Adam, Linear, LrSchedule, ReLU, Sequential, data::digits};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rand::{SeedableRng, rngs::StdRng};

fn block(i: usize, o: usize, rng: &mut StdRng) -> Sequential<f32> {
    Sequential::new()
        .with(Linear::new(i, o, true, rng))
        .with(ReLU::new())
}

/// The `early-exit` experiment's network (64-64-128-128, exits after every stage), trained
/// and calibrated; returns it with its thresholds and the test inputs.
fn fixture() -> (EarlyExitNet<f32>, Thresholds, ndarray::ArrayD<f32>) {
    let (train_all, test) = digits::<f32>().expect("embedded digits");
    let (train, valid) = train_all.split_stratified(0.2, 0).expect("split");
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = EarlyExitNet::new(&[64])
        .with_stage(block(64, 64, &mut rng))
        .with_exit(Linear::new(64, 10, true, &mut rng))
        .with_stage(block(64, 128, &mut rng))
        .with_exit(Linear::new(128, 10, true, &mut rng))
        .with_stage(block(128, 128, &mut rng))
        .with_exit(Linear::new(128, 10, true, &mut rng));
    let cfg = ExitTrainConfig {
        epochs: 60,
        distill: Some(ExitDistill {
            temperature: 3.0,
            alpha: 0.5,
        }),
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        ..ExitTrainConfig::default()
    };
    train_early_exit(&mut net, &mut Adam::new(3e-3), &train, &cfg).expect("training");
    let profile = net
        .profile(&valid, ExitRule::MaxSoftmax, 512)
        .expect("profile");
    let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })
        .expect("calibration");
    (net, cal.thresholds, test.x)
}

fn early_exit(c: &mut Criterion) {
    let (mut net, thresholds, x) = fixture();
    let n = x.shape()[0];
    let mut group = c.benchmark_group("dynamic");
    group.throughput(Throughput::Elements(n as u64));
    let out = net.infer(&x, &thresholds).expect("inference");
    let full = net.exit_costs().expect("costs").full() as f64;
    eprintln!(
        "dynamic: avg MACs {:.0} of {full:.0} ({:.1}% fewer), exit fractions {:?}",
        out.avg_macs(),
        100.0 * (1.0 - out.avg_macs() / full),
        out.exit_fractions()
    );
    group.bench_function(BenchmarkId::new("early_exit_forward", "digits-test"), |b| {
        b.iter(|| net.infer(black_box(&x), &thresholds).expect("inference"));
    });
    group.bench_function(BenchmarkId::new("full_forward", "digits-test"), |b| {
        b.iter(|| net.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    // Wall time against average MACs over operating points: the same thresholds at every
    // exit, from lax to never (all samples to the last exit through dynamic inference).
    let k = net.num_exits();
    let mut points: Vec<(String, Thresholds)> = [0.5, 0.9, 0.99, 0.999, 0.9999]
        .iter()
        .map(|&t| {
            (
                format!("tau-{t}"),
                Thresholds::uniform(ExitRule::MaxSoftmax, k, t),
            )
        })
        .collect();
    points.push((
        "disabled".into(),
        Thresholds::disabled(ExitRule::MaxSoftmax, k),
    ));
    for (id, t) in &points {
        let out = net.infer(&x, t).expect("inference");
        eprintln!(
            "dynamic/early_exit_sweep/{id}: avg MACs {:.0} ({:.2}x fewer), exit fractions {:?}",
            out.avg_macs(),
            full / out.avg_macs(),
            out.exit_fractions()
        );
        group.bench_function(BenchmarkId::new("early_exit_sweep", id), |b| {
            b.iter(|| net.infer(black_box(&x), t).expect("inference"));
        });
    }
    group.finish();
}

criterion_group!(benches, early_exit);
