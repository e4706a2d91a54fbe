//! Calibration methods, observers and observer layers.

use compress_core::{Layer, Mode};
use compress_nn::models::mlp;
use compress_quant::calibrate::{attach_observers, calibrate, detach_observers};
use compress_quant::{
    Calibration, IntScheme, Observer, calibrate_range, quantize_calibrated, sqnr_db,
};
use ndarray::ArrayD;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn gaussian_with_outliers(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..n)
        .map(|_| {
            // Box-Muller
            let (u, v): (f32, f32) = (rng.random_range(1e-6..1.0), rng.random_range(0.0..1.0));
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect();
    x.extend([40.0, -35.0]);
    x
}

#[test]
fn methods_clip_outliers_except_minmax() {
    let x = gaussian_with_outliers(20_000, 1);
    let s = IntScheme::new(8);
    let (lo, hi) = calibrate_range(&x, Calibration::MinMax, s).unwrap();
    assert_eq!((lo, hi), (-35.0, 40.0));
    // (at 8 bits the MSE-optimal range keeps two outliers among 20k values; at 4 bits not)
    for (m, s) in [
        (Calibration::Percentile { percentile: 99.9 }, s),
        (Calibration::Mse, IntScheme::new(4)),
        (Calibration::Entropy, s),
    ] {
        let (lo, hi) = calibrate_range(&x, m, s).unwrap();
        assert!(hi < 20.0 && lo > -20.0 && hi > 1.0, "{m:?}: [{lo}, {hi}]");
    }
}

#[test]
fn mse_calibration_beats_minmax_at_4_bits() {
    let x = gaussian_with_outliers(20_000, 2);
    let s = IntScheme::new(4);
    let err = |m| {
        let q = quantize_calibrated(&x, &[x.len()], s, m).unwrap();
        sqnr_db(&x, q.dequantize::<f32>().as_slice().unwrap())
    };
    let (a, b) = (err(Calibration::MinMax), err(Calibration::Mse));
    assert!(b > a + 3.0, "mse {b} dB vs minmax {a} dB");
}

#[test]
fn moving_average_follows_batches() {
    let mut o = Observer::new(
        Calibration::MovingAverageMinMax { momentum: 0.5 },
        IntScheme::new(8),
    );
    o.observe(&[-1.0, 1.0]).unwrap();
    o.observe(&[-3.0, 3.0]).unwrap();
    assert_eq!(o.range().unwrap(), (-2.0, 2.0));
    assert_eq!(o.batches(), 2);
}

#[test]
fn observer_errors() {
    let o = Observer::new(Calibration::MinMax, IntScheme::new(8));
    assert!(o.range().is_err());
    let mut o = Observer::new(Calibration::MinMax, IntScheme::new(8));
    assert!(o.observe(&[1.0, f32::NAN]).is_err());
    let mut o = Observer::new(
        Calibration::Percentile { percentile: 20.0 },
        IntScheme::new(8),
    );
    assert!(o.observe(&[1.0]).is_err());
}

#[test]
fn per_channel_calibration_has_one_range_per_channel() {
    let x: Vec<f32> = (0..4 * 256)
        .map(|i| ((i % 256) as f32 * 0.1).sin() * (1 + i / 256) as f32)
        .collect();
    let q = quantize_calibrated(
        &x,
        &[4, 256],
        IntScheme::new(8).per_channel(0),
        Calibration::Mse,
    )
    .unwrap();
    assert_eq!(q.scales().len(), 4);
    assert!(q.scales()[3] > q.scales()[0] * 2.0);
}

#[test]
fn observer_layers_record_activation_ranges() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = mlp::<f32, _>(&[8, 16, 4], &mut rng);
    let x = ArrayD::from_shape_fn(vec![32, 8], |ix| ((ix[0] * 8 + ix[1]) as f32 * 0.13).sin());
    let before = net.forward(&x, Mode::Eval).unwrap();
    let names_before = compress_core::Module::named_params(&net);
    let n = attach_observers(&mut net, |_, l| {
        (l.name() == "Linear")
            .then(|| Observer::new(Calibration::MinMax, IntScheme::new(8).affine()))
    });
    assert_eq!(n, 2);
    // paths unchanged by the wrappers
    assert_eq!(compress_core::Module::named_params(&net), names_before);
    calibrate(&mut net, &x, 10).unwrap();
    let obs = detach_observers(&mut net);
    assert_eq!(
        obs.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["0", "2"]
    );
    assert_eq!(obs[0].1.batches(), 4);
    let (lo, hi) = obs[0].1.range().unwrap();
    let xmin = x.iter().cloned().fold(f32::INFINITY, f32::min);
    let xmax = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!((lo, hi), (xmin, xmax));
    // the second observer sees ReLU outputs
    assert!(obs[1].1.range().unwrap().0 >= 0.0);
    // the model is restored
    assert_eq!(net.forward(&x, Mode::Eval).unwrap(), before);
}
