//! Exactness of the W4A8 GEMM: every path against a direct evaluation of the formula on the
//! unpacked `[n, k]` codes, bit for bit.

use super::*;
use proptest::prelude::*;

/// Everything one product needs, in plain `[n, k]` / `[m, k]` layouts.
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    group: usize,
    q: Vec<u8>,
    zps: Vec<u8>,
    scales: Vec<f32>,
    a: Vec<u8>,
    a_scales: Vec<f32>,
    a_zps: Vec<i32>,
    bias: Vec<f32>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..14,
        1usize..110,
        prop::sample::select(vec![8usize, 16, 32, 128]),
        1usize..4,
    )
        .prop_flat_map(|(m, n, group, gpr)| {
            let k = group * gpr;
            let g = n * gpr;
            (
                Just((m, n, k, group)),
                prop::collection::vec(0u8..16, n * k),
                prop::collection::vec(0u8..16, g),
                prop::collection::vec(1e-3f32..1.0, g),
                prop::collection::vec(any::<u8>(), m * k),
                prop::collection::vec(1e-3f32..1.0, m),
                prop::collection::vec(0i32..256, m),
                prop::collection::vec(-2.0f32..2.0, n),
            )
        })
        .prop_map(
            |((m, n, k, group), q, zps, scales, a, a_scales, a_zps, bias)| Case {
                m,
                n,
                k,
                group,
                q,
                zps,
                scales,
                a,
                a_scales,
                a_zps,
                bias,
            },
        )
}

/// The module docs' formula, evaluated directly.
fn reference(c: &Case) -> Vec<f32> {
    let (m, n, k, group) = (c.m, c.n, c.k, c.group);
    let groups = k / group;
    let mut y = vec![0.0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for g in 0..groups {
                let z = i32::from(c.zps[j * groups + g]);
                let mut sum_w = 0i32;
                let mut dot = 0i32;
                for t in g * group..(g + 1) * group {
                    let w = i32::from(c.q[j * k + t]) - z;
                    sum_w += w;
                    dot += i32::from(c.a[r * k + t]) * w;
                }
                let d = dot - c.a_zps[r] * sum_w;
                acc = (d as f32).mul_add(c.scales[j * groups + g], acc);
            }
            y[r * n + j] = acc.mul_add(c.a_scales[r], c.bias[j]);
        }
    }
    y
}

fn paths() -> Vec<GemmKernel> {
    let mut p = vec![GemmKernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if compress_core::Isa::Avx2.enabled() {
            p.push(GemmKernel::Avx2);
        }
        if GemmKernel::Avx512Vnni.is_available() && compress_core::Isa::Avx512.enabled() {
            p.push(GemmKernel::Avx512Vnni);
        }
    }
    p
}

fn run_case(c: &Case, path: GemmKernel, lda: usize) -> Vec<f32> {
    let w = PackedW4::new(&c.q, &c.zps, &c.scales, c.n, c.k, c.group);
    let mut codes = vec![0xA5u8; c.m * lda];
    for (d, s) in codes.chunks_exact_mut(lda).zip(c.a.chunks_exact(c.k)) {
        d[..c.k].copy_from_slice(s);
    }
    let a = RowsU8 {
        codes: &codes,
        lda,
        scales: &c.a_scales,
        zps: &c.a_zps,
    };
    let mut out = vec![f32::NAN; c.m * c.n];
    w4a8_gemm_with(path, a, c.m, &w, &c.bias, &mut out, &mut Vec::new());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Ragged rows (any `m`, not a multiple of the tile), ragged columns (not a multiple of
    /// the panel), row strides beyond `k`: every path gives the formula's bits.
    #[test]
    fn every_path_equals_the_formula(c in case(), extra in 0usize..9) {
        let want = reference(&c);
        for path in paths() {
            let got = run_case(&c, path, c.k + extra);
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            prop_assert!(same, "{:?}: {:?} vs {:?}", path, got, want);
        }
    }

    /// The packing keeps every code, zero point and scale.
    #[test]
    fn packing_round_trips(c in case()) {
        let w = PackedW4::new(&c.q, &c.zps, &c.scales, c.n, c.k, c.group);
        let groups = c.k / c.group;
        for j in 0..c.n {
            for t in 0..c.k {
                let g = j * groups + t / c.group;
                prop_assert_eq!(w.get(j, t), (c.q[j * c.k + t], c.zps[g], c.scales[g]));
            }
        }
    }
}

/// Unit scales, zero points 0 and 8 and integer data: the output is the exact integer
/// product `sum a (q - z)` (no rounding anywhere below `2^24`).
#[test]
fn unit_scales_give_the_integer_product() {
    let (m, n, k, group) = (5, 50, 256, 128);
    let q: Vec<u8> = (0..n * k).map(|i| ((i * 7 + i / 13) % 16) as u8).collect();
    let zps: Vec<u8> = (0..n * 2).map(|i| if i % 2 == 0 { 8 } else { 0 }).collect();
    let a: Vec<u8> = (0..m * k).map(|i| ((i * 31) % 256) as u8).collect();
    let c = Case {
        m,
        n,
        k,
        group,
        q: q.clone(),
        zps: zps.clone(),
        scales: vec![1.0; n * 2],
        a: a.clone(),
        a_scales: vec![1.0; m],
        a_zps: vec![0; m],
        bias: vec![0.0; n],
    };
    for path in paths() {
        let got = run_case(&c, path, k);
        for r in 0..m {
            for j in 0..n {
                let want: i64 = (0..k)
                    .map(|t| {
                        let z = i64::from(zps[j * 2 + t / group]);
                        i64::from(a[r * k + t]) * (i64::from(q[j * k + t]) - z)
                    })
                    .sum();
                assert_eq!(
                    f64::from(got[r * n + j]),
                    want as f64,
                    "{path:?} ({r}, {j})"
                );
            }
        }
    }
}

/// Several rayon threads split the rows; the result is the single-thread one.
#[test]
fn parallel_rows_equal_one_thread() {
    let (m, n, k, group) = (72, 96, 640, 128);
    let c = Case {
        m,
        n,
        k,
        group,
        q: (0..n * k).map(|i| ((i * 5 + i / 7) % 16) as u8).collect(),
        zps: (0..n * 5).map(|i| (i % 16) as u8).collect(),
        scales: (0..n * 5).map(|i| 0.01 + (i % 9) as f32 * 0.003).collect(),
        a: (0..m * k).map(|i| ((i * 13) % 256) as u8).collect(),
        a_scales: (0..m).map(|i| 0.02 + i as f32 * 1e-3).collect(),
        a_zps: (0..m).map(|i| (i * 3 % 256) as i32).collect(),
        bias: (0..n).map(|j| j as f32 * 0.1).collect(),
    };
    let one = run_case(&c, GemmKernel::best(), k);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let many = pool.install(|| run_case(&c, GemmKernel::best(), k));
    assert_eq!(one, many);
    assert_eq!(one, reference(&c));
}
