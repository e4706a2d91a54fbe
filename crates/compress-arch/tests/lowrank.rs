//! Low-rank factorization: Eckart-Young, rank rules, randomized SVD, layers and models.

use compress_arch::ArchError;
use compress_arch::lowrank::{
    LowRankConfig, LowRankConv2d, LowRankLinear, RankRule, SvdMethod, factorize_conv2d,
    factorize_layers, factorize_linear, factorize_sequential, largest_linears, randomized_svd,
    singular_values, svd_exact, truncated_svd,
};
use compress_core::{CoreError, Layer, Mode, Module};
use compress_nn::models::mlp;
use compress_nn::{Conv2d, Conv2dConfig, Linear, Sequential, Sgd, TrainConfig, Trainer};
use compress_testkit::{GradCheck, seeded_matrix, seeded_tensor};
use ndarray::{Array2, ArrayD, Ix2};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

/// `U diag(s) V^T` with orthonormal U, V from QR-free construction: a product of a
/// random matrix with a decaying diagonal.
fn decaying(m: usize, n: usize, decay: f64, seed: u64) -> Array2<f64> {
    let a = seeded_matrix::<f64>(m, n, seed);
    let svd = svd_exact(a.view(), "a").unwrap();
    let s = ndarray::Array1::from_shape_fn(svd.rank(), |i| (-(i as f64) / decay).exp());
    let us = &svd.u * &s.view().insert_axis(ndarray::Axis(0));
    us.dot(&svd.vt)
}

fn fro(a: &Array2<f64>) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Eckart-Young: the rank-r truncation error is the root sum of squares of the dropped
    /// singular values, and no random rank-r matrix does better.
    #[test]
    fn eckart_young(m in 1usize..20, n in 1usize..20, r in 1usize..20, seed in 0u64..1000) {
        let a = seeded_matrix::<f64>(m, n, seed);
        let full = svd_exact(a.view(), "a").unwrap();
        let vals: Vec<f64> = full.s.to_vec();
        prop_assert!(vals.windows(2).all(|w| w[0] >= w[1]));
        let r = r.min(m.min(n));
        let dropped = vals[r..].iter().map(|x| x * x).sum::<f64>().sqrt();
        let t = full.clone().truncate(r);
        let direct = fro(&(&a - &t.reconstruct()));
        prop_assert!((direct - dropped).abs() <= 1e-9 * (1.0 + fro(&a)), "{direct} vs {dropped}");
        prop_assert!((t.frobenius_error() - dropped).abs() <= 1e-6 * (1.0 + fro(&a)));
        // Orthonormal factors.
        let utu = t.u.t().dot(&t.u);
        let vvt = t.vt.dot(&t.vt.t());
        for i in 0..r { for j in 0..r {
            let e = if i == j { 1.0 } else { 0.0 };
            prop_assert!((utu[[i, j]] - e).abs() < 1e-9 && (vvt[[i, j]] - e).abs() < 1e-9);
        }}
        // A random rank-r competitor is never better.
        let x = seeded_matrix::<f64>(m, r, seed + 1).dot(&seeded_matrix::<f64>(r, n, seed + 2));
        prop_assert!(fro(&(&a - &x)) >= dropped - 1e-9);
    }

    /// The energy rule picks the smallest rank reaching the fraction.
    #[test]
    fn energy_rule_is_minimal(m in 2usize..16, n in 2usize..16, f in 0.05f64..1.0, seed in 0u64..500) {
        let a = seeded_matrix::<f64>(m, n, seed);
        let t = truncated_svd(a.view(), RankRule::Energy(f), SvdMethod::Exact, "a").unwrap();
        prop_assert!(t.kept_energy_fraction() >= f - 1e-9);
        if t.rank() > 1 {
            let smaller = svd_exact(a.view(), "a").unwrap().truncate(t.rank() - 1);
            prop_assert!(smaller.kept_energy_fraction() < f);
        }
    }

    /// Budget rules never exceed their budget (unless rank 1 already does).
    #[test]
    fn budget_rules(m in 1usize..40, n in 1usize..40, budget in 1usize..800, frac in 0.01f64..1.0) {
        let r = RankRule::ParamsBudget(budget).static_rank(m, n).unwrap();
        prop_assert!(r == 1 || r * (m + n) <= budget);
        prop_assert!(r == m.min(n) || (r + 1) * (m + n) > budget);
        let r = RankRule::ParamsFraction(frac).static_rank(m, n).unwrap();
        prop_assert!(r == 1 || (r * (m + n)) as f64 <= frac * (m * n) as f64 + 1e-9);
    }

    /// The randomized SVD's error follows from its energies and is never below optimal.
    #[test]
    fn randomized_error_is_consistent(m in 8usize..40, n in 8usize..40, k in 1usize..8, seed in 0u64..200) {
        let a = seeded_matrix::<f64>(m, n, seed);
        let t = randomized_svd(a.view(), k, 4, 1, seed, "a").unwrap();
        let direct = fro(&(&a - &t.reconstruct()));
        prop_assert!((direct - t.frobenius_error()).abs() <= 1e-8 * (1.0 + fro(&a)));
        let opt = svd_exact(a.view(), "a").unwrap().truncate(k).frobenius_error();
        prop_assert!(direct >= opt - 1e-9);
    }
}

#[test]
fn randomized_is_near_optimal_on_a_decaying_spectrum() {
    let a = decaying(300, 200, 8.0, 3);
    let opt = svd_exact(a.view(), "a")
        .unwrap()
        .truncate(20)
        .relative_error();
    let rnd = randomized_svd(a.view(), 20, 10, 2, 0, "a").unwrap();
    assert!(
        rnd.relative_error() <= opt * 1.01,
        "{} vs {opt}",
        rnd.relative_error()
    );
    // Singular values agree with the exact ones.
    let exact = singular_values(a.view(), "a").unwrap();
    for (x, y) in rnd.s.iter().zip(&exact) {
        assert!((x - y).abs() <= 1e-6 * exact[0]);
    }
}

#[test]
fn randomized_energy_rule_grows_the_sketch() {
    let a = decaying(600, 400, 30.0, 5);
    let method = SvdMethod::Randomized {
        oversample: 10,
        power_iters: 2,
        seed: 1,
    };
    let t = truncated_svd(a.view(), RankRule::Energy(0.95), method, "a").unwrap();
    let exact = truncated_svd(a.view(), RankRule::Energy(0.95), SvdMethod::Exact, "a").unwrap();
    assert!(t.kept_energy_fraction() >= 0.95);
    assert!(
        t.rank().abs_diff(exact.rank()) <= 1,
        "{} vs {}",
        t.rank(),
        exact.rank()
    );
}

#[test]
fn f32_matches_f64() {
    let a = seeded_matrix::<f64>(50, 30, 9);
    let a32 = a.mapv(|x| x as f32);
    let t64 = svd_exact(a.view(), "a").unwrap();
    let t32 = svd_exact(a32.view(), "a").unwrap();
    for (x, y) in t64.s.iter().zip(t32.s.iter()) {
        assert!((x - f64::from(*y)).abs() < 1e-5);
    }
}

#[test]
fn bad_input_is_an_error() {
    let mut a = seeded_matrix::<f64>(4, 3, 0);
    a[[1, 2]] = f64::NAN;
    assert!(matches!(
        svd_exact(a.view(), "w"),
        Err(ArchError::Core(CoreError::NonFinite { index: 5, .. }))
    ));
    let e = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        truncated_svd(e.view(), RankRule::Fixed(1), SvdMethod::Exact, "w"),
        Err(ArchError::Core(CoreError::Empty { .. }))
    ));
    let a = seeded_matrix::<f64>(4, 3, 0);
    for rule in [
        RankRule::Fixed(0),
        RankRule::Energy(0.0),
        RankRule::Energy(f64::NAN),
        RankRule::Energy(1.5),
        RankRule::ParamsBudget(0),
        RankRule::ParamsFraction(-0.1),
    ] {
        assert!(matches!(
            truncated_svd(a.view(), rule, SvdMethod::Exact, "w"),
            Err(ArchError::Core(CoreError::InvalidConfig { .. }))
        ));
    }
    // An all-zero matrix is fine.
    let z = Array2::<f64>::zeros((3, 3));
    let t = truncated_svd(z.view(), RankRule::Energy(0.5), SvdMethod::Exact, "z").unwrap();
    assert_eq!(t.rank(), 1);
    assert_eq!(t.relative_error(), 0.0);
}

#[test]
fn low_rank_linear_matches_the_truncation() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut lin = Linear::<f64>::new(12, 9, true, &mut rng);
    let x = seeded_tensor::<f64>(&[5, 12], 1);
    let y = lin.forward(&x, Mode::Eval).unwrap();
    // Full rank reproduces the layer.
    let (mut full, _) =
        factorize_linear(&lin, &LowRankConfig::new(RankRule::Fixed(9)), "l").unwrap();
    let yf = full.forward(&x, Mode::Eval).unwrap();
    assert!((&y - &yf).iter().all(|d| d.abs() < 1e-10));
    // Rank 3: output equals the merged truncated weight's.
    let (lr, svd) = factorize_linear(&lin, &LowRankConfig::new(RankRule::Fixed(3)), "l").unwrap();
    let merged = lr.merge().unwrap();
    let prod = lr.product().unwrap().into_dimensionality::<Ix2>().unwrap();
    assert!((&prod - &svd.reconstruct()).iter().all(|d| d.abs() < 1e-10));
    let mut lr2 = lr.clone();
    let mut merged2 = merged;
    let a = lr2.forward(&x, Mode::Eval).unwrap();
    let b = merged2.forward(&x, Mode::Eval).unwrap();
    assert!((&a - &b).iter().all(|d| d.abs() < 1e-10));
    let c = lr.cost(&[12]).unwrap();
    assert_eq!(c.params, 3 * (12 + 9) + 9);
    assert_eq!(c.macs, 3 * (12 + 9));
    assert_eq!(c.output_shape, vec![9]);
    let names: Vec<String> = lr.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(names, ["down.weight", "up.weight", "up.bias"]);
}

#[test]
fn low_rank_linear_gradients() {
    let mut rng = StdRng::seed_from_u64(2);
    let lin = Linear::<f64>::new(6, 5, true, &mut rng);
    let (mut lr, _) = factorize_linear(&lin, &LowRankConfig::new(RankRule::Fixed(2)), "l").unwrap();
    let x = seeded_tensor::<f64>(&[3, 6], 8);
    assert!(GradCheck::new().layer(&mut lr, &x).max_error() < 1e-6);
}

#[test]
fn model_transform_checks_indices_and_keeps_model_on_error() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = mlp::<f64, _>(&[10, 20, 8, 3], &mut rng);
    let before = net.state_dict();
    let cfg = LowRankConfig::new(RankRule::Fixed(2));
    assert!(matches!(
        factorize_sequential(&mut net, &[0, 1], &cfg),
        Err(ArchError::WrongLayer {
            index: 1,
            expected: "Linear or Conv2d",
            found: "ReLU"
        })
    ));
    assert!(matches!(
        factorize_sequential(&mut net, &[0, 9], &cfg),
        Err(ArchError::LayerIndex { index: 9, len: 5 })
    ));
    assert_eq!(net.state_dict(), before);
    // Rank 3 of a 3x8 layer would not save anything: skipped.
    let rep =
        factorize_sequential(&mut net, &[0, 4], &LowRankConfig::new(RankRule::Fixed(3))).unwrap();
    assert!(!rep[0].skipped && rep[1].skipped);
    assert_eq!(rep[0].weights_after, 3 * 30);
    assert!(net.get::<LowRankLinear<f64>>(0).is_some());
    assert!(net.get::<Linear<f64>>(4).is_some());
    assert_eq!(net.named_params()[0].path, "0.down.weight");
}

#[test]
fn factorized_model_fine_tunes() {
    let (train, _) = compress_nn::data::digits::<f32>().unwrap();
    let train = train.subset(&(0..400).collect::<Vec<_>>());
    let mut rng = StdRng::seed_from_u64(1);
    let mut net: Sequential<f32> = mlp(&[64, 64, 10], &mut rng);
    let trainer = Trainer::new(TrainConfig {
        epochs: 3,
        batch_size: 32,
        ..TrainConfig::default()
    });
    trainer
        .fit(&mut net, &mut Sgd::new(0.1), &train, None)
        .unwrap();
    let targets = largest_linears(&net, 1);
    factorize_sequential(&mut net, &targets, &LowRankConfig::new(RankRule::Fixed(4))).unwrap();
    let rep = trainer
        .fit(&mut net, &mut Sgd::new(0.05), &train, None)
        .unwrap();
    let first = rep.epochs.first().unwrap().train_loss;
    let last = rep.epochs.last().unwrap().train_loss;
    assert!(last < first, "{first} -> {last}");
    let y = net
        .forward(&ArrayD::zeros(vec![2, 64]), Mode::Eval)
        .unwrap();
    assert_eq!(y.shape(), &[2, 10]);
}

#[test]
fn conv_factorization() {
    let mut rng = StdRng::seed_from_u64(6);
    let cfg = Conv2dConfig::new(3, 5, 3).stride(2).padding(1);
    let mut conv = Conv2d::<f64>::new(cfg, &mut rng).unwrap();
    let x = seeded_tensor::<f64>(&[2, 3, 5, 5], 4);
    let y = conv.forward(&x, Mode::Eval).unwrap();
    // Full rank (min(5, 27) = 5) reproduces the convolution.
    let (mut full, _) =
        factorize_conv2d(&conv, &LowRankConfig::new(RankRule::Fixed(5)), "c").unwrap();
    let yf = full.forward(&x, Mode::Eval).unwrap();
    assert!((&y - &yf).iter().all(|d| d.abs() < 1e-10));
    // Rank 2: cost r (M K^2 + N) per output pixel, plus the bias.
    let (mut lr, svd) =
        factorize_conv2d(&conv, &LowRankConfig::new(RankRule::Fixed(2)), "c").unwrap();
    assert!(svd.relative_error() > 0.0);
    let c = lr.cost(&[3, 5, 5]).unwrap();
    assert_eq!(c.output_shape, vec![5, 3, 3]);
    assert_eq!(c.macs, (2 * (27 + 5) * 9) as u64);
    assert_eq!(c.params, 2 * (27 + 5) + 5);
    assert!(GradCheck::new().layer(&mut lr, &x).max_error() < 1e-6);
    // Grouped convolutions are refused.
    let g = Conv2d::<f64>::new(Conv2dConfig::new(4, 4, 3).groups(2), &mut rng).unwrap();
    assert!(matches!(
        factorize_conv2d(&g, &LowRankConfig::new(RankRule::Fixed(1)), "g"),
        Err(ArchError::Core(CoreError::InvalidConfig { .. }))
    ));
    // In a model.
    let mut net = Sequential::<f64>::new();
    net.push(Conv2d::<f64>::new(Conv2dConfig::new(4, 16, 3).padding(1), &mut rng).unwrap());
    let rep =
        factorize_sequential(&mut net, &[0], &LowRankConfig::new(RankRule::Energy(0.8))).unwrap();
    assert_eq!((rep[0].kind, rep[0].rows, rep[0].cols), ("Conv2d", 16, 36));
    assert!(rep[0].kept_energy >= 0.8);
    assert!(net.get::<LowRankConv2d<f64>>(0).is_some());
}

#[test]
fn factorize_layers_reaches_linears_of_a_residual_model_by_path() {
    let mut net = compress_nn::models::ResidualMlp::<f64>::new(
        8,
        12,
        24,
        1,
        3,
        &mut StdRng::seed_from_u64(2),
    );
    let x = seeded_tensor::<f64>(&[5, 8], 3);
    let before = net.forward(&x, Mode::Eval).unwrap();
    // Full rank of a 24 x 12 weight: the factors reproduce it.
    let mut cfg = LowRankConfig::new(RankRule::Fixed(12));
    cfg.only_if_smaller = false;
    let r = factorize_layers(&mut net, &["blocks.0.fc1"], &cfg).unwrap();
    assert_eq!(
        (r[0].path.as_str(), r[0].rank, r[0].kind),
        ("blocks.0.fc1", 12, "Linear")
    );
    assert!(
        net.blocks[0]
            .fc1
            .as_ref()
            .as_any()
            .is::<LowRankLinear<f64>>()
    );
    let after = net.forward(&x, Mode::Eval).unwrap();
    assert!(before.iter().zip(&after).all(|(a, b)| (a - b).abs() < 1e-9));
    let names: Vec<String> = net.named_params().into_iter().map(|p| p.path).collect();
    assert!(names.contains(&"blocks.0.fc1.down.weight".to_string()));
    // A fixed field cannot change type; nothing is replaced then.
    assert!(matches!(
        factorize_layers(&mut net, &["blocks.0.act"], &cfg),
        Err(ArchError::WrongLayerAt { .. })
    ));
    assert!(matches!(
        factorize_layers(&mut net, &["nope"], &cfg),
        Err(ArchError::Core(CoreError::MissingParam { .. }))
    ));
}
