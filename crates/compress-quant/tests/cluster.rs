//! k-means clustering, packed indices and trained clustering.

use compress_core::{Module, Param, ParamDict, ParamFilter, Parametrization};
use compress_quant::cluster::index_bits;
use compress_quant::{
    ClusterConfig, ClusterGranularity, ClusterInit, ClusterParametrization, ClusteredTensor,
    KMeansConfig, PackedIndices, QuantError, cluster_tensor, cluster_weights, export_clustered,
    kmeans_1d,
};
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::{Array1, ArrayD};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn normal_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| ((0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0) * 0.087)
        .collect()
}

/// Brute-force inertia of `x` against `centroids` (nearest centroid by full scan).
fn brute_inertia(x: &[f32], centroids: &[f64]) -> f64 {
    x.iter()
        .map(|&v| {
            centroids
                .iter()
                .map(|c| (f64::from(v) - c).powi(2))
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

/// One naive Lloyd update from `centroids` (O(nk)).
fn naive_lloyd_step(x: &[f32], centroids: &[f64]) -> Vec<f64> {
    let k = centroids.len();
    let (mut s, mut n) = (vec![0.0; k], vec![0usize; k]);
    for &v in x {
        let v = f64::from(v);
        let j = (0..k)
            .min_by(|&a, &b| {
                (v - centroids[a])
                    .abs()
                    .total_cmp(&(v - centroids[b]).abs())
            })
            .unwrap();
        s[j] += v;
        n[j] += 1;
    }
    (0..k)
        .map(|j| {
            if n[j] > 0 {
                s[j] / n[j] as f64
            } else {
                centroids[j]
            }
        })
        .collect()
}

#[test]
fn converged_result_is_a_lloyd_fixed_point_and_inertia_is_exact() {
    let x = normal_weights(5000, 1);
    for init in [
        ClusterInit::Linear,
        ClusterInit::Density,
        ClusterInit::KMeansPlusPlus,
    ] {
        let km = kmeans_1d(&x, &KMeansConfig::new(8).init(init)).unwrap();
        assert!(
            km.converged(),
            "{init:?} did not converge in 300 iterations"
        );
        let again = naive_lloyd_step(&x, km.centroids());
        for (a, b) in again.iter().zip(km.centroids()) {
            assert!((a - b).abs() < 1e-9, "{init:?}: {a} vs {b}");
        }
        let brute = brute_inertia(&x, km.centroids());
        assert!((brute - km.inertia()).abs() <= 1e-9 * brute.max(1.0));
    }
}

#[test]
fn plus_plus_finds_well_separated_groups() {
    // Three tight, well separated groups: k-means++ must find them.
    let mut x = Vec::new();
    for (c, n) in [(-5.0f32, 300), (0.0, 50), (7.0, 10)] {
        x.extend((0..n).map(|i| c + (i % 7) as f32 * 0.01));
    }
    let km = kmeans_1d(
        &x,
        &KMeansConfig::new(3)
            .init(ClusterInit::KMeansPlusPlus)
            .seed(3),
    )
    .unwrap();
    let c = km.centroids();
    assert!(
        (c[0] + 4.97).abs() < 0.05 && c[1].abs() < 0.05 && (c[2] - 7.03).abs() < 0.05,
        "{c:?}"
    );
}

#[test]
fn fewer_distinct_values_than_clusters() {
    let x = [1.0f64, 1.0, 2.0, 2.0, 2.0];
    for init in [
        ClusterInit::Linear,
        ClusterInit::Density,
        ClusterInit::KMeansPlusPlus,
    ] {
        let km = kmeans_1d(&x, &KMeansConfig::new(4).init(init)).unwrap();
        assert_eq!(km.centroids().len(), 4);
        assert!(km.inertia() < 1e-12, "{init:?}: {}", km.inertia());
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let e = kmeans_1d::<f32>(&[], &KMeansConfig::new(4)).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = kmeans_1d(&[1.0f32, f32::NAN], &KMeansConfig::new(2)).unwrap_err();
    assert!(e.to_string().contains("index 1"), "{e}");
    let e = kmeans_1d(&[1.0f32], &KMeansConfig::new(0)).unwrap_err();
    assert!(e.to_string().contains("clusters"), "{e}");
    let e = cluster_tensor(&ArrayD::<f32>::zeros(vec![2, 0]), &ClusterConfig::new(2)).unwrap_err();
    assert!(matches!(e, QuantError::Core(_)));
    let e = ClusterConfig::new(1)
        .preserve_sparsity(true)
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
}

#[test]
fn k256_costs_the_same_iterations_budget_and_beats_k16() {
    let x = normal_weights(20_000, 2);
    let k16 = kmeans_1d(&x, &KMeansConfig::new(16).max_iter(50)).unwrap();
    let k256 = kmeans_1d(&x, &KMeansConfig::new(256).max_iter(50)).unwrap();
    assert!(k256.inertia() < k16.inertia() / 50.0);
}

#[test]
fn per_channel_and_sparsity_preserving_tensor() {
    let mut w = ArrayD::from_shape_vec(vec![4, 50], normal_weights(200, 5)).unwrap();
    for (i, v) in w.iter_mut().enumerate() {
        if i % 3 == 0 {
            *v = 0.0;
        }
    }
    let cfg = ClusterConfig::new(8)
        .granularity(ClusterGranularity::PerChannel)
        .preserve_sparsity(true);
    let c = cluster_tensor(&w, &cfg).unwrap();
    assert_eq!(c.groups(), 4);
    assert_eq!(c.codebook().len(), 32);
    assert_eq!(c.index_bits(), 3);
    assert_eq!(c.bytes(), 32 * 4 + (200 * 3usize).div_ceil(8));
    let d = c.decode().unwrap();
    for (a, b) in w.iter().zip(d.iter()) {
        assert_eq!(
            *a == 0.0,
            *b == 0.0,
            "zeros must stay exactly zero and only zeros"
        );
    }
    // Per-channel codebooks fit better than one shared codebook of the same size.
    let shared = cluster_tensor(&w, &ClusterConfig::new(8).preserve_sparsity(true)).unwrap();
    assert!(c.inertia() <= shared.inertia());
}

#[test]
fn trained_clustering_sums_gradients_per_cluster_finite_differences() {
    // Loss L = sum(G * W_eff); dL/dc_k = sum of G over members of cluster k (Han eq. 3).
    let w = ArrayD::from_shape_vec(
        vec![2, 5],
        (0..10).map(|i| f64::from(i) * 0.3 - 1.0).collect(),
    )
    .unwrap();
    let g = ArrayD::from_shape_vec(
        vec![2, 5],
        (0..10).map(|i| ((i * 7) % 5) as f64 - 2.0).collect(),
    )
    .unwrap();
    let cfg = ClusterConfig::new(3).granularity(ClusterGranularity::PerChannel);
    let mut cp = ClusterParametrization::new(&w, &cfg).unwrap();
    let before = Array1::from(cp.centroids().to_vec());
    let codes = cp.codes().to_vec();
    let loss = |c: &Array1<f64>| {
        let t = ClusteredTensor::from_parts(&[2, 5], cfg.granularity, 3, false, c.to_vec(), &codes)
            .unwrap();
        (ClusterParametrization::from_clustered(&t).forward(&w) * &g).sum()
    };
    cp.accumulate_own_grad(&w, &g);
    let lr = 1e-3;
    for (_, t) in cp.params_mut() {
        t.update(|v, g| v.scaled_add(-lr, g));
    }
    let analytic = (&before - &Array1::from(cp.centroids().to_vec())) / lr;
    assert_grad_close(&analytic, &fd_grad(loss, &before, 1e-5), 1e-6, 0.0);
    // Centroids-only: the stored weights get no gradient.
    assert!(cp.backward(&w, g.clone()).iter().all(|&v| v == 0.0));
}

#[test]
fn cluster_weights_on_a_module_and_export() {
    let mut m = ParamDict::<f32>::new();
    m.insert(
        "a.weight",
        Param::new(ArrayD::from_shape_vec(vec![10, 10], normal_weights(100, 7)).unwrap()),
    );
    m.insert(
        "a.bias",
        Param::with_kind(ArrayD::zeros(vec![10]), compress_core::ParamKind::Bias),
    );
    let rep = cluster_weights(&mut m, &ParamFilter::new(), &ClusterConfig::new(4), 1.0).unwrap();
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].path, "a.weight");
    assert_eq!(rep[0].bytes, 4 * 4 + 25);
    let eff = m.state_dict();
    let distinct: std::collections::BTreeSet<u32> = eff[0].1.iter().map(|v| v.to_bits()).collect();
    assert!(distinct.len() <= 4);
    let exported = export_clustered(&m).unwrap();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].1.decode().unwrap(), eff[0].1);
}

proptest! {
    #[test]
    fn packed_indices_round_trip(bits in 1u32..=16, raw in prop::collection::vec(any::<u32>(), 0..200)) {
        let v: Vec<u32> = raw.iter().map(|x| x & ((1u32 << bits) - 1)).collect();
        let p = PackedIndices::pack(&v, bits).unwrap();
        prop_assert_eq!(p.bytes(), (v.len() * bits as usize).div_ceil(8));
        prop_assert_eq!(p.unpack(), v.clone());
        for (i, &x) in v.iter().enumerate() {
            prop_assert_eq!(p.get(i), Some(x));
        }
    }

    #[test]
    fn kmeans_invariants(x in prop::collection::vec(-100.0f32..100.0, 1..300), k in 1usize..20, init in 0u8..3) {
        let init = [ClusterInit::Linear, ClusterInit::Density, ClusterInit::KMeansPlusPlus][init as usize];
        let km = kmeans_1d(&x, &KMeansConfig::new(k).init(init)).unwrap();
        let c = km.centroids();
        prop_assert_eq!(c.len(), k);
        prop_assert!(c.windows(2).all(|w| w[0] <= w[1]));
        let brute = brute_inertia(&x, c);
        prop_assert!((brute - km.inertia()).abs() <= 1e-6 * brute.max(1.0));
        // Never worse than one cluster at the mean.
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
        let one: f64 = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
        prop_assert!(km.inertia() <= one * (1.0 + 1e-9) + 1e-9);
    }

    #[test]
    fn tensor_codes_are_nearest_centroids(x in prop::collection::vec(-1.0f32..1.0, 1..200), k in 2usize..17) {
        let w = ArrayD::from_shape_vec(vec![x.len()], x.clone()).unwrap();
        let c = cluster_tensor(&w, &ClusterConfig::new(k)).unwrap();
        prop_assert_eq!(c.index_bits(), index_bits(k));
        let d = c.decode().unwrap();
        for (&v, &q) in x.iter().zip(d.iter()) {
            let best = c.codebook().iter().map(|&cb| (cb - v).abs()).fold(f32::INFINITY, f32::min);
            prop_assert!(((q - v).abs() - best).abs() <= 1e-6);
        }
    }
}
