//! N:M masks: exact counts per group, errors, composition with existing masks.

use compress_core::{Module, ParamFilter};
use compress_nn::models::mlp;
use compress_prune::{PruneConfig, PruneError, is_nm_sparse, nm_mask, nm_prune, prune};
use compress_testkit::seeded_tensor;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

proptest! {
    #[test]
    fn each_group_keeps_exactly_n_largest(
        rows in 1usize..6, groups in 1usize..6, (n, m) in (1usize..=8).prop_flat_map(|m| (1..=m, Just(m))),
        seed in 0u64..1000,
    ) {
        let cols = groups * m;
        let w = seeded_tensor::<f32>(&[rows, cols], seed).into_dyn();
        let mask = nm_mask(&w, n, m, None, "w").unwrap();
        let a = mask.array();
        for r in 0..rows {
            for g in 0..groups {
                let kept: Vec<usize> = (g * m..(g + 1) * m).filter(|&j| a[[r, j]] == 1.0).collect();
                prop_assert_eq!(kept.len(), n);
                let min_kept = kept.iter().map(|&j| w[[r, j]].abs()).fold(f32::INFINITY, f32::min);
                let max_dropped = (g * m..(g + 1) * m)
                    .filter(|j| !kept.contains(j))
                    .map(|j| w[[r, j]].abs())
                    .fold(0.0f32, f32::max);
                prop_assert!(min_kept >= max_dropped);
            }
        }
        let masked = &w * a;
        prop_assert!(is_nm_sparse(&masked, n, m));
    }
}

#[test]
fn conv_weights_group_along_input_channels() {
    let w = seeded_tensor::<f32>(&[2, 8, 3, 3], 4);
    let mask = nm_mask(&w, 2, 4, None, "conv.weight").unwrap();
    assert_eq!(mask.sparsity(), 0.5);
    assert!(is_nm_sparse(&(&w * mask.array()), 2, 4));
}

#[test]
fn errors_name_the_parameter() {
    let w = ArrayD::<f32>::ones(IxDyn(&[2, 6]));
    match nm_mask(&w, 2, 4, None, "fc.weight") {
        Err(PruneError::NotDivisible { path, len, m, .. }) => {
            assert_eq!((path.as_str(), len, m), ("fc.weight", 6, 4))
        }
        other => panic!("{other:?}"),
    }
    assert!(nm_mask(&w, 3, 2, None, "x").is_err());
    assert!(nm_mask(&w, 0, 2, None, "x").is_err());
}

#[test]
fn nm_on_a_model_composes_with_existing_masks() {
    let mut net = mlp::<f32, _>(&[16, 32, 8], &mut StdRng::seed_from_u64(2));
    prune(&mut net, &PruneConfig::new(0.7)).unwrap();
    let r = nm_prune(&mut net, 2, 4, &ParamFilter::new()).unwrap();
    assert!(r.sparsity() >= 0.7);
    for (_, w) in net
        .state_dict()
        .iter()
        .filter(|(p, _)| p.ends_with("weight"))
    {
        assert!(is_nm_sparse(w, 2, 4));
    }
}
