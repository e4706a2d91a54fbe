//! Embedding distillation: cosine, MSE and InfoNCE losses.

use compress_distill::{InfoNceConfig, cosine_embedding_loss, info_nce_loss, mse_embedding_loss};
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::{Array2, array};
use proptest::prelude::*;

use crate::common::matrix_pair;

#[test]
fn zero_embeddings_are_finite() {
    let z = Array2::<f64>::zeros((3, 4));
    let t = array![
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0]
    ];
    let (l, g) = cosine_embedding_loss(&z, &t).unwrap();
    assert!((l - 1.0).abs() < 1e-12 && g.iter().all(|v| v.is_finite()));
    let (l, g) = info_nce_loss(&z, &t, &InfoNceConfig::default()).unwrap();
    assert!((l - 3f64.ln()).abs() < 1e-12 && g.iter().all(|v| v.is_finite()));
}

#[test]
fn info_nce_prefers_aligned_pairs_and_ignores_scale() {
    let t = array![[1.0f64, 0.2, 0.0], [0.0, 1.0, 0.3], [0.4, 0.0, 1.0]];
    let cfg = InfoNceConfig {
        temperature: 0.1,
        symmetric: false,
    };
    let (aligned, _) = info_nce_loss(&(&t * 5.0), &t, &cfg).unwrap();
    let rolled = array![[0.0f64, 1.0, 0.3], [0.4, 0.0, 1.0], [1.0, 0.2, 0.0]];
    let (wrong, _) = info_nce_loss(&rolled, &t, &cfg).unwrap();
    assert!(aligned < 0.1 && wrong > 2.0, "{aligned} {wrong}");
    assert!(
        info_nce_loss(
            &t,
            &t,
            &InfoNceConfig {
                temperature: 0.0,
                symmetric: true
            }
        )
        .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn cosine_is_bounded_scale_invariant_and_has_exact_gradient(
        (s, t) in matrix_pair(5, 1, 6, 3.0),
        k in 0.1f64..10.0,
    ) {
        prop_assume!(s.rows().into_iter().all(|r| r.dot(&r) > 1e-3));
        let (l, g) = cosine_embedding_loss(&s, &t).unwrap();
        prop_assert!((-1e-12..=2.0 + 1e-12).contains(&l));
        let (lk, _) = cosine_embedding_loss(&(&s * k), &t).unwrap();
        prop_assert!((l - lk).abs() < 1e-12);
        let num = fd_grad(|x| cosine_embedding_loss(x, &t).unwrap().0, &s, 1e-6);
        assert_grad_close(&g, &num, 1e-6, 1e-6);
    }

    #[test]
    fn mse_gradient_is_exact((s, t) in matrix_pair(5, 1, 6, 3.0)) {
        let (l, g) = mse_embedding_loss(&s, &t).unwrap();
        prop_assert!(l >= 0.0);
        let num = fd_grad(|x| mse_embedding_loss(x, &t).unwrap().0, &s, 1e-6);
        assert_grad_close(&g, &num, 1e-7, 1e-7);
    }

    #[test]
    fn info_nce_gradient_is_exact(
        (s, t) in matrix_pair(5, 2, 6, 2.0),
        tau in 0.2f64..2.0,
        symmetric in any::<bool>(),
    ) {
        prop_assume!(s.rows().into_iter().all(|r| r.dot(&r) > 1e-2));
        let cfg = InfoNceConfig { temperature: tau, symmetric };
        let (l, g) = info_nce_loss(&s, &t, &cfg).unwrap();
        prop_assert!(l >= 0.0);
        let num = fd_grad(|x| info_nce_loss(x, &t, &cfg).unwrap().0, &s, 1e-6);
        assert_grad_close(&g, &num, 1e-6, 1e-6);
    }
}
