//! The facade alone is enough: ndarray, rand and proptest through it, one error type.

use netcompress::nn::models::mlp;
use netcompress::prelude::*;
use netcompress::prune::{PruneConfig, PruneError, prune};
use netcompress::quant::{IntScheme, PtqConfig, QuantError, quantize_model};
use netcompress::rand::{SeedableRng, rngs::StdRng};
use netcompress_downstream::TwoLayer;

#[test]
fn rand_and_ndarray_paths_of_the_facade_fit_its_signatures() {
    let mut rng = StdRng::seed_from_u64(7);
    let net = mlp::<f32, _>(&[8, 4, 2], &mut rng);
    assert_eq!(net.num_params(), 8 * 4 + 4 + 4 * 2 + 2);
    let x = netcompress::ndarray::ArrayD::<f32>::zeros(vec![3, 8]);
    let mut net = net;
    let y = net.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[3, 2]);
}

/// Prunes then quantizes with `?` on both, in one function returning the facade's error.
fn compress(model: &mut TwoLayer, sparsity: f64, bits: u32) -> netcompress::Result<f64> {
    let pruned = prune(model, &PruneConfig::new(sparsity))?;
    let (_, report) = quantize_model(model, &PtqConfig::new(IntScheme::new(bits)))?;
    Ok(pruned.sparsity() + report.mean_sqnr_db())
}

#[test]
fn one_error_type_carries_each_crates_error_with_its_type() {
    let mut model = TwoLayer::new(16, 8, 4, &mut StdRng::seed_from_u64(1));
    assert!(compress(&mut model, 0.5, 8).is_ok());
    match compress(&mut model, 1.5, 8) {
        Err(netcompress::Error::Prune(PruneError::Core(e))) => {
            assert!(e.to_string().contains("sparsity"), "{e}")
        }
        Err(netcompress::Error::Prune(e)) => assert!(e.to_string().contains("1.5"), "{e}"),
        other => panic!("expected a pruning error, got {other:?}"),
    }
    match compress(&mut model, 0.5, 0) {
        Err(netcompress::Error::Quant(e)) => {
            let _: &QuantError = &e;
            assert!(e.to_string().contains('0'), "{e}");
        }
        other => panic!("expected a quantization error, got {other:?}"),
    }
}

mod strategies {
    use netcompress::core::TensorExt;
    use netcompress::proptest::prelude::*;
    use netcompress::strategies::{param_dict, tensor};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn facade_strategies_need_no_direct_dependency(
            t in tensor(vec![3, 4], -1.0f32..1.0),
            m in param_dict::<f32>(2, 8),
        ) {
            prop_assert_eq!(t.shape(), &[3, 4]);
            prop_assert!(t.l1_norm() <= 12.0);
            prop_assert!(!m.is_empty());
        }
    }
}
