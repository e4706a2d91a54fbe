//! Quantization by layer path on a residual model that is not a `Sequential`, and
//! quantization errors that keep their type through a visitor.

use compress_core::{Layer, Mode, ParamFilter};
use compress_nn::models::{ResidualMlp, mlp};
use compress_quant::calibrate::{ObserverLayer, attach_observers, calibrate, detach_observers};
use compress_quant::{
    ActQuant, Calibration, IntScheme, Observer, QLinear, QuantError, attach_fake_quant,
    quantize_layers,
};
use compress_testkit::{max_abs_diff, seeded_tensor};
use rand::{SeedableRng, rngs::StdRng};

fn residual() -> ResidualMlp<f32> {
    ResidualMlp::new(10, 12, 20, 2, 4, &mut StdRng::seed_from_u64(9))
}

#[test]
fn residual_model_swaps_selected_linears_for_qlinear() {
    let mut net = residual();
    let x = seeded_tensor::<f32>(&[6, 10], 1);
    let before = net.forward(&x, Mode::Eval).unwrap();
    let paths = quantize_layers(&mut net, ActQuant::DynamicPerRow, true, |p| p != "head").unwrap();
    assert_eq!(
        paths,
        [
            "input",
            "blocks.0.fc1",
            "blocks.0.fc2",
            "blocks.1.fc1",
            "blocks.1.fc2"
        ]
    );
    assert!(net.blocks[1].fc2.as_ref().as_any().is::<QLinear>());
    assert_eq!(net.head.name(), "Linear");
    let after = net.forward(&x, Mode::Eval).unwrap();
    let scale = before.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&before, &after) < 0.05 * f64::from(scale));
}

#[test]
fn residual_model_observers_see_each_block_input() {
    let mut net = residual();
    let x = seeded_tensor::<f32>(&[16, 10], 2);
    let before = net.forward(&x, Mode::Eval).unwrap();
    let n = attach_observers(&mut net, |path, l| {
        (l.name() == "Linear" && path.ends_with("fc1"))
            .then(|| Observer::new(Calibration::MinMax, IntScheme::new(8).affine()))
    });
    assert_eq!(n, 2);
    assert!(
        net.blocks[0]
            .fc1
            .as_ref()
            .as_any()
            .is::<ObserverLayer<f32>>()
    );
    calibrate(&mut net, &x, 8).unwrap();
    let obs = detach_observers(&mut net);
    let paths: Vec<&str> = obs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["blocks.0.fc1", "blocks.1.fc1"]);
    assert_eq!(obs[0].1.batches(), 2);
    // Block 0's fc1 reads the input projection's output: its observed range is that one's.
    let h = net.input.forward(&x, Mode::Eval).unwrap();
    let lo = h.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = h.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(obs[0].1.range().unwrap(), (lo, hi));
    assert_eq!(net.forward(&x, Mode::Eval).unwrap(), before);
}

#[test]
fn a_quant_error_from_a_visitor_keeps_its_type_and_path() {
    let mut net = mlp::<f32, _>(&[6, 4, 2], &mut StdRng::seed_from_u64(0));
    // Groups of 4 along the last axis: `0.weight` is [4, 6] and 4 does not divide 6.
    let err = attach_fake_quant(
        &mut net,
        &ParamFilter::new(),
        IntScheme::new(4).per_group(4),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            QuantError::GroupSize { path, group_size: 4, len: 6, .. } if path == "0.weight"
        ),
        "{err:?}"
    );
}
