//! Exactness of the int8 GEMM kernels and of the fused dequantization.

use super::*;
use proptest::prelude::*;

/// `A W^T` with `A` `[m, lda]` (first `k` columns used) and `W` `[n, k]`.
fn naive_strided<T: Copy + Into<i32>>(
    a: &[T],
    lda: usize,
    (m, k): (usize, usize),
    w: &[i8],
    n: usize,
) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|t| a[i * lda + t].into() * i32::from(w[j * k + t]))
                .sum();
        }
    }
    c
}

fn naive(a: &[i8], m: usize, k: usize, w: &[i8], n: usize) -> Vec<i32> {
    naive_strided(a, k, (m, k), w, n)
}

const ALL: [GemmKernel; 4] = [
    GemmKernel::Portable,
    GemmKernel::Avx2,
    GemmKernel::AvxVnni,
    GemmKernel::Avx512Vnni,
];

proptest! {
    #[test]
    fn every_kernel_equals_naive(
        (m, n, k, a, w) in (1usize..20, 1usize..110, 1usize..40).prop_flat_map(|(m, n, k)| (
            Just(m), Just(n), Just(k),
            prop::collection::vec(any::<i8>(), m * k),
            prop::collection::vec(any::<i8>(), n * k),
        ))
    ) {
        let b = PackedB::from_nk(&w, n, k);
        let want = naive(&a, m, k, &w, n);
        let mut c = vec![0; m * n];
        gemm_i8(&a, m, &b, &mut c);
        prop_assert_eq!(&c, &want);
        for kernel in ALL {
            let mut c3 = vec![7; m * n];
            if gemm_i8_with(kernel, &a, m, &b, &mut c3).is_ok() {
                prop_assert_eq!(&c3, &want, "{:?}", kernel);
            }
        }
        prop_assert_eq!(b.to_nk(), w);
    }

    #[test]
    fn from_kn_equals_from_nk(
        (n, k, w) in (1usize..60, 1usize..20).prop_flat_map(|(n, k)| (
            Just(n), Just(k), prop::collection::vec(any::<i8>(), n * k)))
    ) {
        let kn: Vec<i8> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        prop_assert_eq!(PackedB::from_kn(&kn, k, n), PackedB::from_nk(&w, n, k));
    }
}

/// The fused epilogue's formula on the exact product, in `[m, n]` order.
fn dequant_reference(c: &[i32], n: usize, dq: &Dequant<'_>) -> Vec<f32> {
    let mut y = vec![0.0f32; c.len()];
    for (r, (row, yr)) in c.chunks_exact(n).zip(y.chunks_exact_mut(n)).enumerate() {
        let (s, z) = (dq.row_scales[r], dq.row_zps[r]);
        for j in 0..n {
            let v = row[j].wrapping_sub(z.wrapping_mul(dq.col_sums[j]));
            yr[j] = v as f32 * (s * dq.col_scales[j]) + dq.bias[j];
        }
    }
    y
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Fused dequantization gives the bits of the exact integer product followed by the
    /// epilogue's formula, on every kernel, in both layouts, with `k` crossing cache
    /// blocks.
    #[test]
    fn fused_dequant_equals_exact_product_then_formula(
        (m, n, k, a, w, rs, rz, ws, bias, pos) in
            (1usize..20, 1usize..60, prop_oneof![1usize..40, 500usize..600])
            .prop_flat_map(|(m, n, k)| (
                Just(m), Just(n), Just(k),
                prop::collection::vec(any::<u8>(), m * k),
                prop::collection::vec(any::<i8>(), n * k),
                prop::collection::vec(1e-4f32..1.0, m),
                prop::collection::vec(0i32..256, m),
                prop::collection::vec(1e-4f32..1.0, n),
                prop::collection::vec(-1.0f32..1.0, n),
                1usize..5,
            ))
    ) {
        let b = PackedB::from_nk(&w, n, k);
        let lda = b.lda();
        let mut au = vec![0u8; m * lda];
        for (d, s) in au.chunks_exact_mut(lda).zip(a.chunks_exact(k)) {
            d[..k].copy_from_slice(s);
        }
        let exact = naive_strided(&au, lda, (m, k), &w, n);
        let mut dq = Dequant {
            row_scales: &rs, row_zps: &rz, col_sums: b.col_sums(),
            col_scales: &ws, bias: &bias, layout: OutLayout::RowMajor,
        };
        let want = dequant_reference(&exact, n, &dq);
        // NCHW: `pos` positions per image, the GEMM's columns are channels 1..=n of n + 2.
        let images = m.div_ceil(pos);
        let mut want_nchw = vec![0.0f32; images * (n + 2) * pos];
        for r in 0..m {
            for j in 0..n {
                want_nchw[((r / pos) * (n + 2) + 1 + j) * pos + r % pos] = want[r * n + j];
            }
        }
        for kernel in ALL.into_iter().filter(|k| k.is_available()) {
            let mut got = vec![f32::NAN; m * n];
            let mut partial = Vec::new();
            dq.layout = OutLayout::RowMajor;
            let sink = Sink::F32 { dq, out: got.as_out(), partial: &mut partial };
            run_u8(kernel, &au, lda, m, &b, sink);
            prop_assert_eq!(bits(&got), bits(&want), "{:?}", kernel);
            let mut nchw = vec![0.0f32; want_nchw.len()];
            dq.layout = OutLayout::Nchw { positions: pos, channels: n + 2, first: 1 };
            let sink = Sink::F32 { dq, out: nchw.as_out(), partial: &mut partial };
            run_u8(kernel, &au, lda, m, &b, sink);
            prop_assert_eq!(bits(&nchw), bits(&want_nchw), "{:?} NCHW", kernel);
        }
        // The parallel driver splits rows (whole images for NCHW) and gives the same bits.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut got = vec![0.0f32; want_nchw.len()];
        let mut partial = Vec::new();
        pool.install(|| gemm_u8i8_dequant_par(&au, lda, m, &b, dq, &mut got[..], &mut partial));
        prop_assert_eq!(bits(&got), bits(&want_nchw));
    }
}

#[test]
fn long_k_crosses_cache_blocks_exactly() {
    // k spans several KC blocks and m several MC blocks; extreme values everywhere.
    let (m, n, k) = (MC_MAX + 9, 50, 4 * KC_QUADS * 2 + 7);
    let a: Vec<i8> = (0..m * k)
        .map(|i| if i % 3 == 0 { -128 } else { 127 })
        .collect();
    let w: Vec<i8> = (0..n * k)
        .map(|i| if i % 5 == 0 { 127 } else { -128 })
        .collect();
    let b = PackedB::from_nk(&w, n, k);
    let want = naive(&a, m, k, &w, n);
    for kernel in ALL {
        let mut c = vec![0; m * n];
        if gemm_i8_with(kernel, &a, m, &b, &mut c).is_ok() {
            assert_eq!(c, want, "{kernel:?}");
        }
    }
}

#[test]
fn u8_gemm_with_wide_lda_and_parallel_rows() {
    let (m, n, k, lda) = (263, 130, 157, 164);
    let a: Vec<u8> = (0..m * lda).map(|i| (i * 7 % 256) as u8).collect();
    let w: Vec<i8> = (0..n * k).map(|i| (i * 13 % 256) as u8 as i8).collect();
    let b = PackedB::from_nk(&w, n, k);
    let want = naive_strided(&a, lda, (m, k), &w, n);
    let mut c = vec![0; m * n];
    gemm_u8i8(&a, lda, m, &b, &mut c);
    assert_eq!(c, want);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // The fused dequantizing GEMM splits rows (whole images for NCHW) on two threads and
    // gives the bits of one thread.
    let rs: Vec<f32> = (0..m).map(|r| 0.01 + r as f32 * 1e-3).collect();
    let rz: Vec<i32> = (0..m).map(|r| (r * 37 % 256) as i32).collect();
    let ws: Vec<f32> = (0..n).map(|j| 0.02 + j as f32 * 1e-4).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1 - 3.0).collect();
    for layout in [
        OutLayout::RowMajor,
        OutLayout::Nchw {
            positions: 9,
            channels: n,
            first: 0,
        },
    ] {
        let dq = Dequant {
            row_scales: &rs,
            row_zps: &rz,
            col_sums: b.col_sums(),
            col_scales: &ws,
            bias: &bias,
            layout,
        };
        let len = m.div_ceil(9) * 9 * n;
        let (mut one, mut two) = (vec![0.0f32; len], vec![0.0f32; len]);
        let mut partial = Vec::new();
        gemm_u8i8_dequant_par(&a, lda, m, &b, dq, &mut one[..], &mut partial);
        pool.install(|| gemm_u8i8_dequant_par(&a, lda, m, &b, dq, &mut two[..], &mut partial));
        assert_eq!(bits(&one), bits(&two), "{layout:?}");
        if layout == OutLayout::RowMajor {
            assert_eq!(bits(&one[..m * n]), bits(&dequant_reference(&want, n, &dq)));
            let fresh = gemm_u8i8_dequant_vec(&a, lda, m, &b, dq, &mut partial);
            assert_eq!(bits(&fresh), bits(&one[..m * n]));
        }
    }
}
