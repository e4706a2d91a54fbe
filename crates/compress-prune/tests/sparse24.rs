//! 2:4 storage and the Sparse24Linear layer: round trips, exact sizes, products equal to
//! the dense layer, typed errors.

use compress_core::surgery::find_layer;
use compress_core::{CoreError, Layer, Mode};
use compress_nn::{Linear, Sequential};
use compress_prune::{
    NmMatrix, PruneError, Sparse24Linear, nm_mask, nm_storage_bytes, sparsify_24,
};
use compress_testkit::seeded_tensor;
use ndarray::{Array2, ArrayD, Ix2};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

/// A dense `Linear` pruned to 2:4 by magnitude.
fn pruned_linear(inp: usize, out: usize, seed: u64) -> Linear<f32> {
    let mut lin = Linear::<f32>::new(inp, out, true, &mut StdRng::seed_from_u64(seed));
    let mask = nm_mask(&lin.weight.effective(), 2, 4, None, "w").unwrap();
    *lin.weight.value_mut() *= mask.array();
    lin
}

proptest! {
    #[test]
    fn nm_round_trip_and_exact_bytes(
        rows in 0usize..7, groups in 0usize..9,
        (n, m) in (1usize..=8).prop_flat_map(|m| (1..=m, Just(m))),
        seed in 0u64..500,
    ) {
        let cols = groups * m;
        let w = seeded_tensor::<f32>(&[rows, cols], seed).into_dyn();
        let mask = nm_mask(&w, n, m, None, "w").unwrap();
        let w = (&w * mask.array()).into_dimensionality::<Ix2>().unwrap();
        let s = NmMatrix::from_dense(&w, n, m, "w").unwrap();
        prop_assert_eq!(s.to_dense(), w.clone());
        prop_assert_eq!(s.storage_bytes(), nm_storage_bytes(rows * cols, n, m, 4));
        let back = NmMatrix::from_parts(
            rows, cols, n, m, s.values().to_vec(), s.positions().to_vec(), "w",
        ).unwrap();
        prop_assert_eq!(&back, &s);
        // The product equals the dense one.
        let x = seeded_tensor::<f32>(&[3, cols], seed + 1).into_dimensionality::<Ix2>().unwrap();
        let y = s.matmul_t(&x).unwrap();
        let want = x.dot(&w.t());
        for (a, b) in y.iter().zip(want.iter()) {
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn layer_matches_dense_linear(
        tokens in 1usize..80, g in 1usize..40, out in 1usize..24, seed in 0u64..500,
    ) {
        let mut dense = pruned_linear(4 * g, out, seed);
        let mut sparse = Sparse24Linear::from_linear(&dense, "fc").unwrap();
        let x = seeded_tensor::<f32>(&[tokens, 4 * g], seed + 9);
        let a = dense.forward(&x, Mode::Eval).unwrap();
        let b = sparse.forward(&x, Mode::Eval).unwrap();
        for (p, q) in a.iter().zip(b.iter()) {
            prop_assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "{p} vs {q}");
        }
    }
}

#[test]
fn the_kernel_copy_follows_changed_values() {
    // The layer and the matrix keep the weight in the kernel's panel order; after the
    // values change, a product must use the new ones.
    let dense = pruned_linear(136, 11, 4);
    let mut sparse = Sparse24Linear::from_linear(&dense, "fc").unwrap();
    let x = seeded_tensor::<f32>(&[5, 136], 8);
    let before = sparse.forward(&x, Mode::Eval).unwrap();
    *sparse.values.value_mut() *= 2.0;
    let after = sparse.forward(&x, Mode::Eval).unwrap();
    let b = dense.bias.as_ref().unwrap().value().clone();
    for ((p, q), bj) in before.iter().zip(after.iter()).zip(b.iter().cycle()) {
        assert!(
            (2.0 * (p - bj) + bj - q).abs() <= 1e-4 * (1.0 + q.abs()),
            "{p} -> {q}"
        );
    }
    let w = dense
        .weight
        .value()
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let mut m = NmMatrix::from_dense(&w, 2, 4, "w").unwrap();
    let x2 = x.into_dimensionality::<Ix2>().unwrap();
    let y1 = m.matmul_t(&x2).unwrap();
    m.values_mut().iter_mut().for_each(|v| *v = -*v);
    let y2 = m.matmul_t(&x2).unwrap();
    for (p, q) in y1.iter().zip(y2.iter()) {
        assert!((p + q).abs() <= 1e-5 * (1.0 + p.abs()), "{p} vs {q}");
    }
}

#[test]
fn layer_reports_packed_bytes_and_halved_macs() {
    let dense = pruned_linear(384, 96, 3);
    let sparse = Sparse24Linear::from_linear(&dense, "fc").unwrap();
    // 96 x 192 values x 4 B + 96 x 192 x 2 bits + bias.
    assert_eq!(sparse.storage_bytes(), 96 * 192 * 4 + 96 * 192 / 4 + 96 * 4);
    let cost = sparse.cost(&[384]).unwrap();
    assert_eq!(cost.macs, 96 * 192);
    assert_eq!(cost.params, 96 * 192 + 96);
}

#[test]
fn dense_groups_and_bad_shapes_are_typed_errors() {
    let lin = Linear::<f32>::new(8, 2, false, &mut StdRng::seed_from_u64(1));
    match Sparse24Linear::from_linear(&lin, "head") {
        Err(PruneError::NotNmSparse {
            path,
            row,
            group,
            nonzeros,
            ..
        }) => {
            assert_eq!(
                (path.as_str(), row, group, nonzeros),
                ("head.weight", 0, 0, 4)
            );
        }
        other => panic!("expected NotNmSparse, got {other:?}"),
    }
    let odd = Array2::<f32>::zeros((2, 6));
    assert!(matches!(
        NmMatrix::from_dense(&odd, 2, 4, "w"),
        Err(PruneError::NotDivisible { len: 6, m: 4, .. })
    ));
    assert!(NmMatrix::from_dense(&odd, 3, 2, "w").is_err());
    let nan = Array2::from_elem((1, 4), f32::NAN);
    assert!(matches!(
        NmMatrix::from_dense(&nan, 2, 4, "w"),
        Err(PruneError::Core(CoreError::NonFinite { .. }))
    ));
    // A corrupt position stream (positions not increasing) is refused.
    assert!(NmMatrix::<f32>::from_parts(1, 4, 2, 4, vec![1.0, 2.0], vec![0b0001], "w").is_err());
    let mut s = Sparse24Linear::from_linear(&pruned_linear(8, 2, 2), "fc").unwrap();
    let bad = ArrayD::<f32>::zeros(vec![3, 7]);
    assert!(matches!(
        s.forward(&bad, Mode::Eval),
        Err(CoreError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        s.backward(&ArrayD::zeros(vec![3, 2])),
        Err(CoreError::InvalidState { .. })
    ));
}

#[test]
fn sparsify_24_swaps_only_the_chosen_linears() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut net = Sequential::<f32>::new()
        .with(Linear::new(16, 8, true, &mut rng))
        .with(compress_nn::ReLU::new())
        .with(Linear::new(8, 4, true, &mut rng));
    let x = seeded_tensor::<f32>(&[5, 16], 1);
    // The first layer is not 2:4 yet: typed error, model unchanged.
    assert!(sparsify_24(&mut net, &|p| p == "0").is_err());
    assert_eq!(find_layer(&net, "0").unwrap().name(), "Linear");
    compress_prune::nm_prune(&mut net, 2, 4, &compress_core::ParamFilter::new()).unwrap();
    let before = net.forward(&x, Mode::Eval).unwrap();
    let replaced = sparsify_24(&mut net, &|p| p == "0").unwrap();
    assert_eq!(replaced, vec!["0".to_string()]);
    assert_eq!(find_layer(&net, "0").unwrap().name(), "Sparse24Linear");
    assert_eq!(find_layer(&net, "2").unwrap().name(), "Linear");
    let after = net.forward(&x, Mode::Eval).unwrap();
    for (a, b) in before.iter().zip(after.iter()) {
        assert!((a - b).abs() < 1e-5);
    }
}
