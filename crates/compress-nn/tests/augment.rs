//! `RandomShift`: every training image is a zero-filled translation of its input by at most
//! `max_shift` pixels, all shifts occur, eval is the identity, backward is the adjoint, and
//! bad shapes and settings are typed errors.

use std::collections::HashSet;

use compress_core::{CoreError, Layer, Mode};
use compress_nn::RandomShift;
use compress_testkit::seeded_tensor;
use ndarray::ArrayD;
use proptest::prelude::*;

/// Image `n`, channel `ch` of `x` (`[N, C*H*W]`) translated by `(dy, dx)`, zero-filled.
fn translated(x: &ArrayD<f64>, n: usize, dims: [usize; 3], dy: isize, dx: isize) -> Vec<f64> {
    let [c, h, w] = dims;
    let row = x.index_axis(ndarray::Axis(0), n);
    let src: Vec<f64> = row.iter().copied().collect();
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for i in 0..h as isize {
            for j in 0..w as isize {
                let (si, sj) = (i - dy, j - dx);
                if (0..h as isize).contains(&si) && (0..w as isize).contains(&sj) {
                    out[(ch * h + i as usize) * w + j as usize] =
                        src[(ch * h + si as usize) * w + sj as usize];
                }
            }
        }
    }
    out
}

/// The shift that maps image `n` of `x` to image `n` of `y`, if one within `m` does.
fn shift_of(
    x: &ArrayD<f64>,
    y: &ArrayD<f64>,
    n: usize,
    dims: [usize; 3],
    m: isize,
) -> Option<(isize, isize)> {
    let got: Vec<f64> = y.index_axis(ndarray::Axis(0), n).iter().copied().collect();
    (-m..=m)
        .flat_map(|dy| (-m..=m).map(move |dx| (dy, dx)))
        .find(|&(dy, dx)| translated(x, n, dims, dy, dx) == got)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn train_images_are_translations_and_backward_is_the_adjoint(
        c in 1usize..3, h in 3usize..7, w in 3usize..7, m in 0usize..3, n in 1usize..6, seed in 0u64..1000,
    ) {
        prop_assume!(m < h.min(w));
        let dims = [c, h, w];
        let mut jitter = RandomShift::<f64>::new(c, h, w, m, seed).unwrap();
        // Distinct positive values, so each translation is recognisable.
        let x = seeded_tensor::<f64>(&[n, c * h * w], seed).mapv(|v| v.abs() + 1.0);
        prop_assert_eq!(jitter.forward(&x, Mode::Eval).unwrap(), x.clone());
        let y = jitter.forward(&x, Mode::Train).unwrap();
        for i in 0..n {
            prop_assert!(shift_of(&x, &y, i, dims, m as isize).is_some(), "image {} is no translation", i);
        }
        // <T x, g> == <x, T' g>.
        let g = seeded_tensor::<f64>(&[n, c * h * w], seed + 1);
        let back = jitter.backward(&g).unwrap();
        let lhs = (&y * &g).sum();
        let rhs = (&x * &back).sum();
        prop_assert!((lhs - rhs).abs() <= 1e-9 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
        // The 4-D layout gives the same images.
        jitter.reseed(seed);
        let flat = jitter.forward(&x, Mode::Train).unwrap();
        jitter.reseed(seed);
        let x4 = x.clone().into_shape_with_order(vec![n, c, h, w]).unwrap();
        let y4 = jitter.forward(&x4, Mode::Train).unwrap();
        prop_assert_eq!(y4.into_shape_with_order(vec![n, c * h * w]).unwrap(), flat);
    }
}

#[test]
fn every_shift_within_the_range_occurs() {
    let dims = [1, 6, 6];
    let mut jitter = RandomShift::<f64>::new(1, 6, 6, 2, 4).unwrap();
    let x = seeded_tensor::<f64>(&[600, 36], 5).mapv(|v| v.abs() + 1.0);
    let y = jitter.forward(&x, Mode::Train).unwrap();
    let seen: HashSet<_> = (0..600)
        .map(|n| shift_of(&x, &y, n, dims, 2).unwrap())
        .collect();
    assert_eq!(seen.len(), 25, "{seen:?}");
}

#[test]
fn bad_settings_and_shapes_are_typed_errors() {
    let name = |e: CoreError| match e {
        CoreError::InvalidConfig { name, .. } => name,
        e => panic!("expected InvalidConfig, got {e:?}"),
    };
    assert_eq!(
        name(RandomShift::<f32>::new(0, 28, 28, 2, 0).unwrap_err()),
        "channels"
    );
    assert_eq!(
        name(RandomShift::<f32>::new(1, 28, 0, 2, 0).unwrap_err()),
        "width"
    );
    assert_eq!(
        name(RandomShift::<f32>::new(1, 2, 28, 2, 0).unwrap_err()),
        "max_shift"
    );
    let mut jitter = RandomShift::<f32>::new(1, 28, 28, 2, 0).unwrap();
    assert!(matches!(
        jitter.backward(&ArrayD::zeros(vec![1, 784])),
        Err(CoreError::InvalidState { .. })
    ));
    for bad in [vec![2, 783], vec![2, 1, 28, 27], vec![784]] {
        match jitter.forward(&ArrayD::zeros(bad.clone()), Mode::Train) {
            Err(CoreError::ShapeMismatch { .. }) => {}
            r => panic!("{bad:?}: expected a shape error, got {r:?}"),
        }
    }
    assert_eq!(jitter.cost(&[784]).unwrap().macs, 0);
    assert!(jitter.cost(&[785]).is_err());
    jitter
        .forward(&ArrayD::zeros(vec![3, 784]), Mode::Train)
        .unwrap();
    assert!(jitter.backward(&ArrayD::zeros(vec![2, 784])).is_err());
}
