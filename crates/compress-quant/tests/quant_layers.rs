//! Integer layers against their float references.

use compress_core::{Layer, Mode};
use compress_nn::{Conv2d, Conv2dConfig, Linear};
use compress_quant::kernels::{
    dequantize_nibbles, dequantize_nibbles_portable, int4_row_dot, int4_row_dot_portable,
};
use compress_quant::{ActQuant, Int4Linear, IntScheme, QConv2d, QLinear, QTensor};
use compress_testkit::{ConvSpec, max_abs_diff};
use ndarray::{ArrayD, Dimension, Ix2};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

fn input(shape: &[usize], seed: f32) -> ArrayD<f32> {
    ArrayD::from_shape_fn(shape.to_vec(), |ix| {
        let s: usize = ix
            .slice()
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1) * 31 * v)
            .sum();
        ((s as f32) * 0.071 + seed).sin()
    })
}

#[test]
fn qlinear_matches_its_fake_quant_simulation() {
    let lin = Linear::<f32>::new(40, 24, true, &mut StdRng::seed_from_u64(5));
    let x = input(&[6, 40], 0.3);
    for act in [
        ActQuant::DynamicPerRow,
        ActQuant::DynamicPerTensor,
        ActQuant::Static { scale: 1.0 / 127.0 },
    ] {
        let mut q = QLinear::from_linear(&lin, act).unwrap();
        let y = q.forward(&x, Mode::Eval).unwrap();
        // simulation in f64: the same codes, dequantized, multiplied in float
        let w = QTensor::quantize(
            &lin.weight.effective().view(),
            IntScheme::int8_per_channel(),
        )
        .unwrap();
        let wd: ArrayD<f64> = w.dequantize();
        let wd = wd.into_dimensionality::<Ix2>().unwrap();
        let x2 = x.view().into_dimensionality::<Ix2>().unwrap();
        for i in 0..6 {
            let row = x2.row(i);
            let s = match act {
                ActQuant::DynamicPerRow => row.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0,
                ActQuant::DynamicPerTensor => x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0,
                ActQuant::Static { scale } => scale,
            };
            let xq: Vec<f64> = row
                .iter()
                .map(|&v| {
                    f64::from((v * (1.0 / s)).round_ties_even().clamp(-127.0, 127.0)) * f64::from(s)
                })
                .collect();
            for j in 0..24 {
                let dot: f64 = (0..40).map(|k| xq[k] * wd[[j, k]]).sum::<f64>()
                    + f64::from(lin.bias.as_ref().unwrap().value()[j]);
                assert!(
                    (dot - f64::from(y[[i, j]])).abs() < 1e-4,
                    "{act:?} {i} {j}: {dot} vs {}",
                    y[[i, j]]
                );
            }
        }
        assert!(q.backward(&y).is_err());
        assert_eq!(Layer::<f32>::cost(&q, &[40]).unwrap().macs, 40 * 24);
    }
}

#[test]
fn qlinear_rejects_bad_inputs() {
    let lin = Linear::<f32>::new(8, 4, false, &mut StdRng::seed_from_u64(1));
    let mut q = QLinear::from_linear(&lin, ActQuant::DynamicPerRow).unwrap();
    assert!(
        q.forward(&ArrayD::<f32>::zeros(vec![2, 7]), Mode::Eval)
            .is_err()
    );
    let mut bad = ArrayD::zeros(vec![2, 8]);
    bad[[1, 3]] = f32::NAN;
    assert!(q.forward(&bad, Mode::Eval).is_err());
    let w4 = QTensor::quantize_slice(&[0.5; 32], &[4, 8], IntScheme::new(4).per_group(8)).unwrap();
    assert!(QLinear::from_qtensor(&w4, None, ActQuant::DynamicPerRow).is_err());
    assert_eq!(q.size_bytes(), 32 + 16);
}

#[test]
fn int4_linear_equals_dequantized_float_linear() {
    let lin = Linear::<f32>::new(320, 150, true, &mut StdRng::seed_from_u64(9));
    for affine in [false, true] {
        let mut q = Int4Linear::from_linear(&lin, 32, affine).unwrap();
        let deq: ArrayD<f32> = q.weight().dequantize();
        let mut reference =
            Linear::from_arrays(deq, Some(lin.bias.as_ref().unwrap().value().clone()));
        // 1 to 4 rows take the fused dequantize-and-dot path, more rows the tiled GEMM.
        for m in [1, 2, 3, 4, 5, 9] {
            let x = input(&[m, 320], 1.1);
            let y = q.forward(&x, Mode::Eval).unwrap();
            let yr = reference.forward(&x, Mode::Eval).unwrap();
            let err = max_abs_diff(&y, &yr);
            assert!(err < 1e-4, "{m} rows: {err}");
        }
        let x = input(&[5, 320], 1.1);
        let y = q.forward(&x, Mode::Eval).unwrap();
        assert_eq!(
            q.size_bytes(),
            320 * 150 / 2 + 150 * 10 * 4 + if affine { 150 * 10 / 2 } else { 0 } + 150 * 4
        );
        assert!(q.backward(&y).is_err());
    }
    assert!(Int4Linear::from_linear(&lin, 3, false).is_err());
}

#[test]
fn qconv_matches_float_conv_closely() {
    let mut rng = StdRng::seed_from_u64(4);
    for cfg in [
        Conv2dConfig::new(3, 8, 3).padding(1),
        Conv2dConfig::new(4, 6, (3, 2))
            .stride(2)
            .padding((1, 0))
            .dilation((1, 2)),
        Conv2dConfig::new(4, 4, 3).groups(2).padding(1),
    ] {
        let mut conv = Conv2d::<f32>::new(cfg, &mut rng).unwrap();
        let mut q = QConv2d::from_conv(&conv).unwrap();
        let x = input(&[2, cfg.in_channels, 7, 9], 0.2);
        let y = conv.forward(&x, Mode::Eval).unwrap();
        let yq = q.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.shape(), yq.shape());
        let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&y, &yq);
        assert!(err < 0.02 * f64::from(scale.max(1.0)), "{cfg:?}: {err}");
        assert_eq!(
            Layer::<f32>::cost(&q, &[cfg.in_channels, 7, 9]).unwrap(),
            conv.cost(&[cfg.in_channels, 7, 9]).unwrap()
        );
    }
}

proptest! {
    #[test]
    fn nibble_dequant_paths_agree(bytes in prop::collection::vec(any::<u8>(), 0..80), zp in prop::option::of(0i32..16)) {
        let mut a = vec![0.0f32; 2 * bytes.len()];
        let mut b = vec![0.0f32; 2 * bytes.len()];
        dequantize_nibbles(&bytes, 0.37, zp, &mut a);
        dequantize_nibbles_portable(&bytes, 0.37, zp, &mut b);
        prop_assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}

proptest! {
    #[test]
    fn int4_row_dot_equals_dequantize_then_dot(
        groups in 1usize..9,
        half in prop::sample::select(vec![1usize, 4, 8, 11, 16]),
        seed in any::<u64>(),
        affine: bool,
    ) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let group = 2 * half;
        let nbytes = groups * half;
        let bytes: Vec<u8> = (0..nbytes).map(|_| rng.random()).collect();
        let scales: Vec<f32> = (0..groups).map(|_| rng.random_range(0.01f32..2.0)).collect();
        let zps: Vec<i32> = if affine { (0..groups).map(|_| rng.random_range(0..16)).collect() } else { vec![] };
        let x: Vec<f32> = (0..2 * nbytes).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let xe: Vec<f32> = x.iter().step_by(2).copied().collect();
        let xo: Vec<f32> = x.iter().skip(1).step_by(2).copied().collect();
        let got = int4_row_dot(&bytes, group, &scales, &zps, &xe, &xo);
        let portable = int4_row_dot_portable(&bytes, group, &scales, &zps, &xe, &xo);
        prop_assert_eq!(got.to_bits(), portable.to_bits());
        // Reference: dequantize each group, then an f64 dot.
        let mut w = vec![0.0f32; 2 * nbytes];
        for g in 0..groups {
            dequantize_nibbles(
                &bytes[g * half..(g + 1) * half],
                scales[g],
                zps.get(g).copied(),
                &mut w[g * group..(g + 1) * group],
            );
        }
        let want: f64 = w.iter().zip(&x).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        let mag: f64 = w.iter().zip(&x).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum();
        prop_assert!((f64::from(got) - want).abs() <= 1e-5 * (1.0 + mag), "{} vs {}", got, want);
    }
}

/// The integer convolution computed naively: each image's symmetric codes
/// (`round(x / s) `, `s = absmax / 127`, through the kernels' `x * (1 / s) + 128`), the
/// per-channel int8 weight codes, exact `i64` sums over the taps inside the image, then
/// `acc * (s * s_w) + b` in `f32`.
fn qconv_reference(conv: &Conv2d<f32>, x: &ArrayD<f32>) -> Vec<f32> {
    let cfg = conv.config();
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = cfg.output_hw(h, w).unwrap();
    let (kh, kw) = cfg.kernel;
    let (cpg, opg) = (cfg.in_per_group(), cfg.out_per_group());
    let spec = ConvSpec::new(cfg.stride, cfg.padding, cfg.dilation, cfg.groups);
    let wq = QTensor::quantize(
        &conv.weight.effective().view(),
        IntScheme::int8_per_channel(),
    )
    .unwrap();
    let bias = conv.bias.as_ref().map(|b| b.effective().into_owned());
    let xs = x.as_slice().unwrap();
    let mut out = Vec::new();
    for b in 0..n {
        let img = &xs[b * c * h * w..(b + 1) * c * h * w];
        let amax = img.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 && (127.0 / amax).is_finite() {
            amax / 127.0
        } else {
            1.0
        };
        let inv = 1.0 / s;
        let codes: Vec<i64> = img
            .iter()
            .map(|&v| (v * inv + 128.0).clamp(1.0, 255.0).round_ties_even() as i64 - 128)
            .collect();
        for o in 0..cfg.out_channels {
            let grp = o / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0i64;
                    for ci in 0..cpg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let Some((iy, ix)) = spec.tap((oy, ox), (i, j), (h, w)) else {
                                    continue;
                                };
                                let xc = codes[((grp * cpg + ci) * h + iy) * w + ix];
                                let wc = wq.data()[((o * cpg + ci) * kh + i) * kw + j];
                                acc += xc * i64::from(wc as i8);
                            }
                        }
                    }
                    let bv = bias.as_ref().map_or(0.0, |b| b[o]);
                    out.push(acc as i32 as f32 * (s * wq.scales()[o]) + bv);
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The channels-last im2col and the fused epilogue give exactly the integer reference,
    /// for any stride, padding, dilation and groups, with and without bias.
    #[test]
    fn qconv_equals_the_integer_reference_bit_for_bit(
        cg in 1usize..5, og in 1usize..6, groups in 1usize..3, k in 1usize..4,
        s in 1usize..3, p in 0usize..2, d in 1usize..3, h in 1usize..9, w in 1usize..9,
        n in 1usize..4, bias: bool, seed in any::<u64>(),
    ) {
        let cfg = Conv2dConfig::new(cg * groups, og * groups, k)
            .stride(s).padding(p).dilation(d).groups(groups).bias(bias);
        prop_assume!(cfg.output_hw(h, w).is_ok());
        let conv = Conv2d::<f32>::new(cfg, &mut StdRng::seed_from_u64(seed)).unwrap();
        let mut q = QConv2d::from_conv(&conv).unwrap();
        let x = input(&[n, cfg.in_channels, h, w], (seed % 97) as f32 * 0.1);
        let y = q.forward(&x, Mode::Eval).unwrap();
        let want = qconv_reference(&conv, &x);
        let got: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(got, want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}
