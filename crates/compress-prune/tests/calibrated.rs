//! Wanda and SparseGPT: exact sparsity, valid 2:4, Wanda's kept weights untouched, both
//! beating magnitude on inputs with scaled and correlated features, bad input, and the
//! model-level driver on a Sequential.

use compress_core::surgery::layer_paths;
use compress_core::{Layer, Mode};
use compress_nn::{Linear, ReLU, Sequential};
use compress_prune::{
    CalibratedMethod, CalibratedPruneConfig, InputStats, PruneError, SparseGptConfig,
    SparsityPattern, is_nm_sparse, prune_calibrated, row_mask, sparsegpt_prune, wanda_prune,
};
use ndarray::{Array2, ArrayD};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Calibration inputs `[tokens, d]` whose features have very different scales and are
/// correlated (a shared latent factor), as transformer activations are.
fn skewed_inputs(tokens: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let scales: Vec<f32> = (0..d)
        .map(|j| {
            if j % 7 == 3 {
                20.0
            } else {
                rng.random_range(0.2f32..2.0)
            }
        })
        .collect();
    Array2::from_shape_fn((tokens, d), |(_, j)| {
        rng.random_range(-1.0f32..1.0) * scales[j]
    })
}

fn correlate(x: &mut Array2<f32>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for mut row in x.rows_mut() {
        let latent: f32 = rng.random_range(-1.0..1.0);
        for (j, v) in row.iter_mut().enumerate() {
            *v += latent * (1.0 + (j % 5) as f32);
        }
    }
}

fn weights(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn stats(x: &Array2<f32>) -> InputStats {
    let mut s = InputStats::new(x.ncols(), true);
    s.observe(&x.clone().into_dyn(), "x").unwrap();
    s
}

/// `||X W^T - X W'^T||_F^2`.
fn output_error(x: &Array2<f32>, w: &Array2<f32>, wp: &Array2<f32>) -> f64 {
    let d = (w - wp).mapv(f64::from);
    let x = x.mapv(f64::from);
    x.dot(&d.t()).mapv(|v| v * v).sum()
}

fn magnitude(w: &Array2<f32>, pattern: SparsityPattern) -> Array2<f32> {
    let keep = row_mask(&w.mapv(|v| f64::from(v.abs())), pattern, "w").unwrap();
    let mut out = w.clone();
    ndarray::Zip::from(&mut out).and(&keep).for_each(|v, &k| {
        if !k {
            *v = 0.0;
        }
    });
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn wanda_prunes_exactly_and_keeps_weights(
        rows in 1usize..10, g in 1usize..12, s in 0.0f64..0.95, nm in any::<bool>(), seed in 0u64..500,
    ) {
        let cols = 4 * g;
        let w = weights(rows, cols, seed);
        let x = skewed_inputs(16, cols, seed + 1);
        let pattern = if nm { SparsityPattern::TWO_FOUR } else { SparsityPattern::Unstructured(s) };
        let mut wp = w.clone();
        let keep = wanda_prune(&mut wp, &stats(&x).norms(), pattern, "fc.weight").unwrap();
        for r in 0..rows {
            let zeros = (0..cols).filter(|&j| wp[[r, j]] == 0.0).count();
            prop_assert_eq!(zeros, pattern.pruned_per_row(cols));
            for j in 0..cols {
                if keep[[r, j]] {
                    prop_assert_eq!(wp[[r, j]], w[[r, j]]);
                }
            }
        }
        if nm {
            prop_assert!(is_nm_sparse(&wp.clone().into_dyn(), 2, 4));
        }
    }

    #[test]
    fn sparsegpt_prunes_exactly(
        rows in 1usize..10, g in 1usize..12, s in 0.0f64..0.95, nm in any::<bool>(),
        block in 1usize..20, seed in 0u64..500,
    ) {
        let cols = 4 * g;
        let w = weights(rows, cols, seed);
        let mut x = skewed_inputs(3 * cols, cols, seed + 1);
        correlate(&mut x, seed + 2);
        let pattern = if nm { SparsityPattern::TWO_FOUR } else { SparsityPattern::Unstructured(s) };
        let mut wp = w.clone();
        let cfg = SparseGptConfig { percdamp: 0.01, block_size: block };
        let keep = sparsegpt_prune(&mut wp, stats(&x).xtx.as_ref().unwrap(), pattern, &cfg, "fc.weight").unwrap();
        let zeros = wp.iter().filter(|v| **v == 0.0).count();
        let want = match pattern {
            SparsityPattern::Unstructured(s) => (s * (rows * cols) as f64).round() as usize,
            SparsityPattern::NM { .. } => rows * cols / 2,
        };
        prop_assert_eq!(zeros, want);
        prop_assert_eq!(keep.iter().filter(|k| !**k).count(), want);
        prop_assert!(wp.iter().all(|v| v.is_finite()));
        if nm {
            prop_assert!(is_nm_sparse(&wp.clone().into_dyn(), 2, 4));
        }
    }
}

#[test]
fn wanda_and_sparsegpt_beat_magnitude_on_skewed_correlated_inputs() {
    for (pattern, label) in [
        (SparsityPattern::TWO_FOUR, "2:4"),
        (SparsityPattern::Unstructured(0.5), "50%"),
    ] {
        let (rows, cols) = (48, 96);
        let w = weights(rows, cols, 11);
        let mut x = skewed_inputs(512, cols, 12);
        correlate(&mut x, 13);
        let st = stats(&x);
        let mag = output_error(&x, &w, &magnitude(&w, pattern));
        let mut wanda = w.clone();
        wanda_prune(&mut wanda, &st.norms(), pattern, "w").unwrap();
        let wanda = output_error(&x, &w, &wanda);
        let mut sgpt = w.clone();
        let h = st.xtx.as_ref().unwrap();
        sparsegpt_prune(&mut sgpt, h, pattern, &SparseGptConfig::default(), "w").unwrap();
        let sgpt = output_error(&x, &w, &sgpt);
        assert!(
            wanda < 0.8 * mag,
            "{label}: Wanda {wanda} vs magnitude {mag}"
        );
        assert!(
            sgpt < 0.8 * wanda,
            "{label}: SparseGPT {sgpt} vs Wanda {wanda}"
        );
    }
}

#[test]
fn singular_hessians_are_dampened_or_reported() {
    // Duplicate and all-zero input columns: X^T X is singular, 1% dampening handles it.
    let mut x = skewed_inputs(64, 16, 3);
    for t in 0..64 {
        x[[t, 5]] = x[[t, 4]];
        x[[t, 9]] = 0.0;
    }
    let st = stats(&x);
    let mut w = weights(8, 16, 4);
    let cfg = SparseGptConfig::default();
    sparsegpt_prune(
        &mut w,
        st.xtx.as_ref().unwrap(),
        SparsityPattern::TWO_FOUR,
        &cfg,
        "w",
    )
    .unwrap();
    assert!(w.column(9).iter().all(|v| *v == 0.0), "dead input pruned");
    // A matrix that is not positive definite even after dampening: a typed error.
    let h = ndarray::array![[1.0, 2.0], [2.0, 1.0]];
    let mut w = weights(2, 2, 5);
    let err = sparsegpt_prune(
        &mut w,
        &h,
        SparsityPattern::Unstructured(0.5),
        &cfg,
        "enc.fc",
    )
    .unwrap_err();
    assert!(
        matches!(&err, PruneError::SingularHessian { path, .. } if path == "enc.fc"),
        "{err}"
    );
    assert!(err.to_string().contains("enc.fc"));
}

fn mlp(seed: u64) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .with(Linear::new(16, 32, true, &mut rng))
        .with(ReLU::new())
        .with(Linear::new(32, 8, true, &mut rng))
}

#[test]
fn prune_calibrated_runs_stages_and_restores_on_error() {
    let x: ArrayD<f32> = skewed_inputs(40, 16, 7).into_dyn();
    for method in [
        CalibratedMethod::Magnitude,
        CalibratedMethod::Wanda,
        CalibratedMethod::SparseGpt(SparseGptConfig::default()),
    ] {
        let mut net = mlp(1);
        let mut cfg = CalibratedPruneConfig::new(method, SparsityPattern::TWO_FOUR);
        cfg.stage_depth = Some(1);
        let mut calls = 0;
        let reports = prune_calibrated(&mut net, &cfg, &mut |m, stage| {
            calls += 1;
            assert_eq!(stage.count, 2);
            m.forward(&x, Mode::Eval)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, if method.needs_calibration() { 2 } else { 0 });
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].zeros, 16 * 32 / 2);
        let names: Vec<&str> = layer_paths(&net).iter().map(|(_, n)| *n).collect();
        assert_eq!(names, ["Linear", "ReLU", "Linear"]);
        for (_, w) in compress_core::Module::state_dict(&net) {
            if w.ndim() == 2 {
                assert!(is_nm_sparse(&w, 2, 4));
            }
        }
    }
    // A failing run: typed error, wrappers removed, weights restored.
    let mut net = mlp(1);
    let before = net.forward(&x, Mode::Eval).unwrap();
    let mut cfg = CalibratedPruneConfig::new(CalibratedMethod::Wanda, SparsityPattern::TWO_FOUR);
    cfg.stage_depth = Some(1);
    let err = prune_calibrated(&mut net, &cfg, &mut |m, stage| {
        if stage.index == 1 {
            return Err("tokenizer exploded".into());
        }
        m.forward(&x, Mode::Eval)?;
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("tokenizer exploded"), "{err}");
    assert_eq!(net.forward(&x, Mode::Eval).unwrap(), before);
    // No calibration data: typed error naming the layer.
    let err = prune_calibrated(&mut net, &cfg, &mut |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(err, PruneError::NoCalibration { ref path } if path == "0"),
        "{err}"
    );
    assert_eq!(net.forward(&x, Mode::Eval).unwrap(), before);
}
