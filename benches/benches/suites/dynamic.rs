//! compress-dynamic: batched early-exit inference over the digits test set (calibrated
//! thresholds, only surviving samples forwarded) vs the static network.

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
    if std::env::var_os("DYN_DIAG").is_some() {
        diag(&mut net, &thresholds, &x);
    }
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
    group.finish();
}

/// TEMP diagnostic (DYN_DIAG=1): median times of the pieces.
fn diag(net: &mut EarlyExitNet<f32>, thr: &Thresholds, x: &ndarray::ArrayD<f32>) {
    use std::time::Instant;
    fn med(mut f: impl FnMut()) -> f64 {
        let mut v = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..400 {
                f();
            }
            v.push(t.elapsed().as_secs_f64() / 400.0 * 1e6);
        }
        v.sort_by(f64::total_cmp);
        v[2]
    }
    {
        let ls = net.all_exit_logits(x, 512).unwrap();
        eprintln!("thresholds {:?}", thr);
        for (k, t) in thr.taus.iter().enumerate() {
            let Some(t) = t else { continue };
            let (lo, hi) = ((t / (1.0 - t)).ln(), (9.0 * t / (1.0 - t)).ln());
            let mut band = 0;
            for r in ls[k].rows() {
                let mut v: Vec<f64> = r.iter().map(|&a| f64::from(a)).collect();
                v.sort_by(|a, b| b.total_cmp(a));
                let g = v[0] - v[1];
                if g >= lo && g < hi {
                    band += 1;
                }
            }
            eprintln!(
                "exit {k}: tau {t} gap band [{lo:.3}, {hi:.3}) rows in band {band} of {}",
                ls[k].nrows()
            );
        }
    }
    let mut rng = StdRng::seed_from_u64(9);
    let mut l1 = Linear::<f32>::new(64, 64, true, &mut rng);
    let mut relu = ReLU::<f32>::new();
    let mut head = Linear::<f32>::new(64, 10, true, &mut rng);
    let mut l2 = Linear::<f32>::new(64, 128, true, &mut rng);
    let mut l3 = Linear::<f32>::new(128, 128, true, &mut rng);
    let mut head3 = Linear::<f32>::new(128, 10, true, &mut rng);
    let h = l1.forward(x, Mode::Eval).unwrap();
    let h2 = l2.forward(&h, Mode::Eval).unwrap();
    let lg = head.forward(&h, Mode::Eval).unwrap();
    let lg2 = lg.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
    let t0 = Thresholds::uniform(ExitRule::MaxSoftmax, 3, 0.0);
    let h20 = h.slice_axis(ndarray::Axis(0), (0..20).into()).to_owned();
    let h20b = l2.forward(&h20, Mode::Eval).unwrap();
    let h3 = h20b.slice_axis(ndarray::Axis(0), (0..3).into()).to_owned();
    let mut head2 = Linear::<f32>::new(128, 10, true, &mut rng);
    {
        use ndarray::{Array2, Ix2};
        let wt = |l: &Linear<f32>| -> Array2<f32> {
            l.weight
                .value()
                .view()
                .into_dimensionality::<Ix2>()
                .unwrap()
                .t()
                .as_standard_layout()
                .into_owned()
        };
        let cases: Vec<(&str, &Linear<f32>, ndarray::ArrayD<f32>)> = vec![
            ("64x64@359", &l1, x.clone()),
            ("64x10@359", &head, h.clone()),
            ("128x10@359", &head3, h2.clone()),
            ("64x128@20", &l2, h20.clone()),
            ("128x128@3", &l3, h3.clone()),
            ("128x10@20", &head3, h20b.clone()),
        ];
        for (name, l, xin) in cases {
            let w = wt(l);
            let mut lc = (*l).clone();
            let x2 = xin.view().into_dimensionality::<Ix2>().unwrap();
            let b = l
                .bias
                .as_ref()
                .unwrap()
                .value()
                .view()
                .into_dimensionality::<ndarray::Ix1>()
                .unwrap()
                .to_owned();
            let fast = || {
                let mut y = x2.dot(&w);
                y += &b;
                y
            };
            let same = fast().into_dyn() == lc.forward(&xin, Mode::Eval).unwrap();
            eprintln!(
                "{name}: layer {:.2} wt-contig {:.2} bitwise-equal {same}",
                med(|| {
                    black_box(lc.forward(&xin, Mode::Eval).unwrap());
                }),
                med(|| {
                    black_box(fast());
                })
            );
        }
    }
    for _ in 0..2 {
        eprintln!(
            "small: lin64x128@20 {:.2} head128x10@20 {:.2} lin128x128@3 {:.2} head@3 {:.2} relu128@20 {:.2}",
            med(|| {
                black_box(l2.forward(&h20, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(head3.forward(&h20b, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(l3.forward(&h3, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(head2.forward(&h3, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(relu.forward(&h20b, Mode::Eval).unwrap());
            }),
        );
    }
    {
        let ls = net.all_exit_logits(x, 512).unwrap();
        let l0 = ls[0].as_slice().unwrap().to_vec();
        let top2 = || {
            let mut cnt = 0usize;
            for row in l0.chunks_exact(10) {
                let (mut m1, mut m2, mut sum) = (f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0f32);
                for &v in row {
                    let lo = if v > m1 { m1 } else { v };
                    m1 = if v > m1 { v } else { m1 };
                    m2 = if lo > m2 { lo } else { m2 };
                    sum += v;
                }
                if sum.is_finite() && f64::from(m1 - m2) >= 3.0 {
                    cnt += 1;
                }
            }
            cnt
        };
        let scores = || ExitRule::MaxSoftmax.scores(&ls[0]);
        eprintln!(
            "top2 loop over exit-0 logits {:.2} us; exact scores {:.2} us",
            med(|| {
                black_box(top2());
            }),
            med(|| {
                black_box(scores());
            })
        );
    }
    let t0v = thr.taus[0];
    let ta = Thresholds {
        rule: ExitRule::MaxSoftmax,
        taus: vec![t0v, Some(0.0)],
    };
    let tb = Thresholds {
        rule: ExitRule::MaxSoftmax,
        taus: vec![t0v, None],
    };
    let tc = Thresholds {
        rule: ExitRule::MaxSoftmax,
        taus: vec![Some(0.0), None],
    };
    eprintln!(
        "exit1-all-leave {:.1} exit1-disabled {:.1} tau0-exit0 {:.1}",
        med(|| {
            black_box(net.infer(x, &ta).unwrap());
        }),
        med(|| {
            black_box(net.infer(x, &tb).unwrap());
        }),
        med(|| {
            black_box(net.infer(x, &tc).unwrap());
        })
    );
    for _ in 0..3 {
        eprintln!(
            "full {:.1} infer {:.1} infer_tau0 {:.1} | lin64x64 {:.1} relu {:.1} head64x10 {:.1} lin64x128 {:.1} lin128x128 {:.1} head128x10 {:.1} scores {:.1} select20 {:.1}",
            med(|| {
                black_box(net.forward(x, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(net.infer(x, thr).unwrap());
            }),
            med(|| {
                black_box(net.infer(x, &t0).unwrap());
            }),
            med(|| {
                black_box(l1.forward(x, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(relu.forward(&h, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(head.forward(&h, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(l2.forward(&h, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(l3.forward(&h2, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(head3.forward(&h2, Mode::Eval).unwrap());
            }),
            med(|| {
                black_box(ExitRule::MaxSoftmax.scores(&lg2));
            }),
            med(|| {
                black_box(h.select(
                    ndarray::Axis(0),
                    &[
                        1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73, 77,
                    ],
                ));
            }),
        );
    }
}

criterion_group!(benches, early_exit);
