//! CSR round trip, kernels against dense, SparseLinear gradients, relative indices.

use compress_core::{Layer, Mode};
use compress_nn::models::mlp;
use compress_prune::{
    ColIndices, Csr, IndexWidth, PruneConfig, PruneError, SparseLinear, prune,
    relative_index_encode, sparsify_linears,
};
use compress_testkit::{GradCheck, max_abs_diff, seeded_tensor};
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::out;

fn sparse_matrix(rows: usize, cols: usize, density: f64, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| {
        if rng.random::<f64>() < density {
            rng.random_range(-1.0f32..1.0)
        } else {
            0.0
        }
    })
}

proptest! {
    #[test]
    fn csr_round_trips_and_multiplies_like_dense(
        rows in 0usize..20, cols in 1usize..40, n in 0usize..70, density in 0.0f64..1.0, seed in 0u64..500,
        wide in any::<bool>(),
    ) {
        let w = sparse_matrix(rows, cols, density, seed);
        let width = if wide { IndexWidth::U32 } else { IndexWidth::U16 };
        let csr = Csr::from_dense(&w, width).unwrap();
        prop_assert_eq!(csr.to_dense(), w.clone());
        let nnz = w.iter().filter(|&&x| x != 0.0).count();
        prop_assert_eq!(csr.nnz(), nnz);
        let ib = if wide { 4 } else { 2 };
        prop_assert_eq!(csr.storage_bytes(), nnz * 4 + nnz * ib + (rows + 1) * 4);
        let b = sparse_matrix(cols, n, 1.0, seed + 1);
        let got = csr.spmm(&b).unwrap();
        let want = w.dot(&b);
        for (g, e) in got.iter().zip(want.iter()) {
            prop_assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()));
        }
        let (r, c, rp, ci, v) = csr.clone().into_parts();
        prop_assert_eq!(Csr::from_parts(r, c, rp, ci, v).unwrap(), csr);
    }

    #[test]
    fn relative_index_round_trips(
        values in proptest::collection::vec(prop_oneof![3 => Just(0.0f32), 1 => -1.0f32..1.0], 0..400),
        bits in 1u32..9,
    ) {
        let enc = relative_index_encode(&values, bits).unwrap();
        prop_assert_eq!(enc.decode(), values.clone());
        prop_assert!(enc.gaps.iter().all(|&g| g < (1 << bits)));
        let nnz = values.iter().filter(|&&v| v != 0.0).count();
        prop_assert_eq!(enc.entries(), nnz + enc.fillers());
        prop_assert_eq!(enc.pack_gaps().len(), enc.index_bytes());
        prop_assert_eq!(enc.bytes(32), (enc.entries() * bits as usize).div_ceil(8) + enc.entries() * 4);
    }
}

#[test]
fn from_parts_rejects_broken_invariants() {
    let ok = || {
        (
            vec![0u32, 1, 2],
            ColIndices::U16(vec![1, 0]),
            vec![1.0f32, 2.0],
        )
    };
    let (rp, ci, v) = ok();
    assert!(Csr::from_parts(2, 2, rp, ci, v).is_ok());
    // `rows + 1` must not wrap: an absurd row count is an error, never a panic.
    for rows in [usize::MAX, usize::MAX - 1] {
        let (_, ci, v) = ok();
        assert!(Csr::<f32>::from_parts(rows, 2, vec![], ci, v).is_err());
        let (rp, ci, v) = ok();
        assert!(Csr::from_parts(rows, 2, rp, ci, v).is_err());
    }
    let (_, ci, v) = ok();
    assert!(Csr::from_parts(2, 2, vec![0, 2, 1], ci, v).is_err());
    let (rp, _, v) = ok();
    assert!(Csr::from_parts(2, 2, rp, ColIndices::U16(vec![1, 2]), v).is_err());
    assert!(
        Csr::from_parts(
            1,
            3,
            vec![0, 2],
            ColIndices::U32(vec![2, 1]),
            vec![1.0f32, 1.0]
        )
        .is_err()
    );
    let wide = Array2::<f32>::ones((1, 70_000));
    assert!(matches!(
        Csr::from_dense(&wide, IndexWidth::U16),
        Err(PruneError::IndexOverflow { .. })
    ));
    assert!(matches!(
        Csr::from_dense(&wide, IndexWidth::Auto)
            .unwrap()
            .col_indices(),
        ColIndices::U32(_)
    ));
}

#[test]
fn sparse_linear_matches_masked_dense_model() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = mlp::<f32, _>(&[30, 40, 7], &mut rng);
    prune(&mut net, &PruneConfig::new(0.85)).unwrap();
    let x = seeded_tensor::<f32>(&[13, 30], 2);
    let dense = out(&mut net, &x);
    let before = net.cost(&[30]).unwrap();
    assert_eq!(
        sparsify_linears(&mut net, 0.5, IndexWidth::Auto).unwrap(),
        ["0", "2"]
    );
    let sparse = out(&mut net, &x);
    assert!(max_abs_diff(&dense, &sparse) < 1e-5);
    let l0 = net.get::<SparseLinear<f32>>(0).unwrap();
    assert_eq!(l0.storage_bytes(), l0.to_csr().storage_bytes() + 40 * 4);
    let after = net.cost(&[30]).unwrap();
    assert_eq!(after.macs as usize, before.nonzero_params - 40 - 7);
    assert!(after.macs < before.macs / 6);
}

#[test]
fn sparse_linear_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(4);
    let w = Array2::from_shape_fn((5, 7), |_| {
        if rng.random::<f64>() < 0.4 {
            rng.random_range(-1.0..1.0)
        } else {
            0.0
        }
    });
    let b = ArrayD::from_shape_vec(IxDyn(&[5]), (0..5).map(|i| i as f64 * 0.1).collect()).unwrap();
    let mut l = SparseLinear::new(Csr::from_dense(&w, IndexWidth::U16).unwrap(), Some(b)).unwrap();
    let x = seeded_tensor::<f64>(&[3, 7], 5);
    // Input, values and bias.
    let report = GradCheck::new().layer(&mut l, &x);
    assert_eq!(report.params, ["values", "bias"]);
    report.assert_close(1e-6, 0.0);
}

#[test]
fn sparse_linear_rejects_bad_shapes() {
    let csr = Csr::from_dense(&Array2::<f32>::eye(3), IndexWidth::U16).unwrap();
    assert!(SparseLinear::new(csr.clone(), Some(ArrayD::zeros(IxDyn(&[2])))).is_err());
    let mut l = SparseLinear::new(csr, None).unwrap();
    assert!(
        l.forward(&ArrayD::zeros(IxDyn(&[2, 4])), Mode::Eval)
            .is_err()
    );
    assert!(l.backward(&ArrayD::zeros(IxDyn(&[2, 3]))).is_err());
    assert!(l.cost(&[4]).is_err());
    let y = l
        .forward(&ArrayD::ones(IxDyn(&[2, 3])), Mode::Eval)
        .unwrap();
    assert_eq!(
        y.into_dimensionality::<Ix2>().unwrap(),
        Array2::<f32>::ones((2, 3))
    );
}

#[test]
fn relative_index_paper_example_and_errors() {
    // Gap of exactly 2^bits - 1 fits; one more needs a filler.
    let mut v = vec![0.0f32; 9];
    v[7] = 1.0;
    assert_eq!(relative_index_encode(&v, 3).unwrap().fillers(), 0);
    v[7] = 0.0;
    v[8] = 1.0;
    let e = relative_index_encode(&v, 3).unwrap();
    assert_eq!((e.gaps.clone(), e.fillers()), (vec![7, 0], 1));
    assert!(relative_index_encode(&v, 0).is_err());
    assert!(relative_index_encode(&v, 32).is_err());
}
