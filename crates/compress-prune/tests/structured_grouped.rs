//! Structured shrinking through depthwise convs (MobileNet dw → pw pairs) and into grouped
//! convs: outputs preserved when removed units are zero, fewer params and MACs, typed errors.

use compress_core::{Float, Layer, Mode, Param};
use compress_nn::{
    BatchNorm2d, Conv2d, Conv2dConfig, Flatten, GlobalAvgPool, Linear, ReLU, Sequential,
};
use compress_prune::{
    Mask, PruneError, ShrinkConfig, UnitCriterion, attach_mask, mask_of, prunable_layers,
    prune_structured, shrink_layer,
};
use compress_testkit::{max_abs_diff, seeded_tensor};
use ndarray::Axis;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use crate::common::out;

fn zero_rows<F: Float>(p: &mut Param<F>, rows: &[usize]) {
    for &r in rows {
        p.value_mut().index_axis_mut(Axis(0), r).fill(F::zero());
    }
}

fn expand(idx: &[usize], m: usize) -> Vec<usize> {
    idx.iter().flat_map(|&c| c * m..(c + 1) * m).collect()
}

/// Conv(3→c) → BN → ReLU → dw(c→c·m) → BN → ReLU → [dw(c·m→c·m·m2) → ReLU] →
/// pw(→p) → GAP → Flatten → Linear(p→4). Returns the net and the pointwise conv's index.
fn mobilenet(
    c: usize,
    m: usize,
    m2: Option<usize>,
    p: usize,
    seed: u64,
) -> (Sequential<f64>, usize) {
    let rng = &mut StdRng::seed_from_u64(seed);
    let conv = |cfg: Conv2dConfig, rng: &mut StdRng| Conv2d::<f64>::new(cfg, rng).unwrap();
    let mut net = Sequential::new()
        .with(conv(Conv2dConfig::new(3, c, 3).padding(1), rng))
        .with(BatchNorm2d::new(c))
        .with(ReLU::new())
        .with(conv(
            Conv2dConfig::new(c, c * m, 3).padding(1).groups(c),
            rng,
        ))
        .with(BatchNorm2d::new(c * m))
        .with(ReLU::new());
    let mut width = c * m;
    if let Some(m2) = m2 {
        net.push(conv(
            Conv2dConfig::new(width, width * m2, 3)
                .padding(1)
                .groups(width),
            rng,
        ));
        net.push(ReLU::new());
        width *= m2;
    }
    let pw = net.len();
    net.push(conv(Conv2dConfig::new(width, p, 1), rng));
    net.push(GlobalAvgPool::new());
    net.push(Flatten::new());
    net.push(Linear::new(p, 4, true, rng));
    (net, pw)
}

/// Zeroes every parameter that the removal of conv-0 channels outside `keep` touches.
fn kill_channels(net: &mut Sequential<f64>, c: usize, keep: &[usize], pw: usize) {
    let removed: Vec<usize> = (0..c).filter(|u| !keep.contains(u)).collect();
    let conv = net.get_mut::<Conv2d<f64>>(0).unwrap();
    zero_rows(&mut conv.weight, &removed);
    zero_rows(conv.bias.as_mut().unwrap(), &removed);
    let bn = net.get_mut::<BatchNorm2d<f64>>(1).unwrap();
    zero_rows(bn.weight_mut(), &removed);
    zero_rows(bn.bias_mut(), &removed);
    let mut rows = removed;
    for j in 3..pw {
        if let Some(dw) = net.get_mut::<Conv2d<f64>>(j) {
            rows = expand(&rows, dw.config().out_per_group());
            zero_rows(&mut dw.weight, &rows);
            zero_rows(dw.bias.as_mut().unwrap(), &rows);
        } else if let Some(bn) = net.get_mut::<BatchNorm2d<f64>>(j) {
            zero_rows(bn.weight_mut(), &rows);
            zero_rows(bn.bias_mut(), &rows);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn mobilenet_shrinks_through_depthwise_exactly(
        c in 2usize..6,
        m in 1usize..3,
        m2 in proptest::option::of(1usize..3),
        p in 2usize..6,
        seed in 0u64..1000,
        picks in proptest::collection::vec(any::<bool>(), 6),
    ) {
        let (mut net, pw) = mobilenet(c, m, m2, p, seed);
        let shape = [3, 5, 5];
        let x = seeded_tensor::<f64>(&[3, 3, 5, 5], seed + 1);
        // Train-mode passes give the batch norms non-trivial running statistics.
        for _ in 0..2 {
            net.forward(&x, Mode::Train).unwrap();
        }
        prop_assert_eq!(prunable_layers(&net, &shape), vec![0, pw]);
        let keep: Vec<usize> = (0..c).filter(|&u| u == 0 || picks[u]).collect();
        let keep_pw: Vec<usize> = (0..p).filter(|&u| u == 1 || !picks[u]).collect();
        kill_channels(&mut net, c, &keep, pw);
        {
            let removed: Vec<usize> = (0..p).filter(|u| !keep_pw.contains(u)).collect();
            let conv = net.get_mut::<Conv2d<f64>>(pw).unwrap();
            zero_rows(&mut conv.weight, &removed);
            zero_rows(conv.bias.as_mut().unwrap(), &removed);
        }
        let before = out(&mut net, &x);
        let cost_before = net.cost(&shape).unwrap();
        shrink_layer(&mut net, 0, &keep, &shape).unwrap();
        shrink_layer(&mut net, pw, &keep_pw, &shape).unwrap();
        let after = out(&mut net, &x);
        prop_assert!(max_abs_diff(&before, &after) < 1e-5, "diff {}", max_abs_diff(&before, &after));
        let dw = net.get::<Conv2d<f64>>(3).unwrap().config();
        prop_assert!(dw.is_depthwise());
        prop_assert_eq!((dw.in_channels, dw.out_channels), (keep.len(), keep.len() * m));
        let total = m * m2.unwrap_or(1);
        prop_assert_eq!(net.get::<Conv2d<f64>>(pw).unwrap().in_channels(), keep.len() * total);
        prop_assert_eq!(net.get::<BatchNorm2d<f64>>(4).unwrap().channels(), keep.len() * m);
        let cost_after = net.cost(&shape).unwrap();
        let shrunk = keep.len() < c || keep_pw.len() < p;
        prop_assert_eq!(cost_after.params < cost_before.params, shrunk);
        prop_assert_eq!(cost_after.macs < cost_before.macs, shrunk);
        // The shrunk model still trains.
        let y = net.forward(&x, Mode::Train).unwrap();
        net.backward(&y).unwrap();
    }
}

#[test]
fn prune_structured_goes_through_depthwise_and_keeps_masks() {
    let (mut net, pw) = mobilenet(8, 2, None, 6, 3);
    let shape = [3, 6, 6];
    let x = seeded_tensor::<f64>(&[2, 3, 6, 6], 9);
    net.forward(&x, Mode::Train).unwrap();
    kill_channels(&mut net, 8, &[0, 2, 4, 6], pw);
    {
        let conv = net.get_mut::<Conv2d<f64>>(pw).unwrap();
        zero_rows(&mut conv.weight, &[1, 4, 5]);
        zero_rows(conv.bias.as_mut().unwrap(), &[1, 4, 5]);
        // A mask on the depthwise weight is restricted with it.
        let dw = net.get_mut::<Conv2d<f64>>(3).unwrap();
        let mut keep = vec![true; 16 * 9];
        keep[4 * 9] = false; // first filter of kept channel 2
        attach_mask(
            &mut dw.weight,
            Mask::from_keep(&[16, 1, 3, 3], &keep).unwrap(),
        )
        .unwrap();
    }
    let before = out(&mut net, &x);
    let cfg = ShrinkConfig::new(0.5).criterion(UnitCriterion::L1);
    let r = prune_structured(&mut net, &cfg, &shape, None).unwrap();
    assert_eq!(
        r.layers
            .iter()
            .map(|l| (l.index, l.after))
            .collect::<Vec<_>>(),
        vec![(0, 4), (pw, 3)]
    );
    assert!(max_abs_diff(&before, &out(&mut net, &x)) < 1e-10);
    assert!(r.params_after < r.params_before && r.macs_after < r.macs_before);
    let dw = net.get::<Conv2d<f64>>(3).unwrap();
    let mask = mask_of(&dw.weight).unwrap();
    assert_eq!(mask.array().shape(), &[8, 1, 3, 3]);
    assert_eq!(mask.pruned(), 1);
    assert!(!mask.keeps(2 * 9)); // now the first filter of kept channel 1
}

fn grouped_net(rng: &mut StdRng) -> Sequential<f64> {
    Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 8, 1), rng).unwrap())
        .with(ReLU::new())
        .with(Conv2d::new(Conv2dConfig::new(8, 6, 3).groups(2), rng).unwrap())
        .with(Flatten::new())
        .with(Linear::new(6 * 2 * 2, 3, true, rng))
}

#[test]
fn grouped_consumer_loses_the_same_inputs_in_every_group() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut net = grouped_net(&mut rng);
    let shape = [2, 4, 4];
    let x = seeded_tensor::<f64>(&[3, 2, 4, 4], 2);
    assert_eq!(prunable_layers(&net, &shape), vec![0]);
    // 3 of 4 in group 0 but 1 of 4 in group 1: typed error, nothing changed.
    let err = shrink_layer(&mut net, 0, &[0, 1, 2, 5], &shape).unwrap_err();
    assert!(
        matches!(err, PruneError::Unsupported { index: 2, .. }),
        "{err}"
    );
    assert_eq!(net.get::<Conv2d<f64>>(0).unwrap().out_channels(), 8);
    {
        let conv = net.get_mut::<Conv2d<f64>>(0).unwrap();
        zero_rows(&mut conv.weight, &[1, 3, 4, 6]);
        zero_rows(conv.bias.as_mut().unwrap(), &[1, 3, 4, 6]);
    }
    let before = out(&mut net, &x);
    shrink_layer(&mut net, 0, &[0, 2, 5, 7], &shape).unwrap();
    assert!(max_abs_diff(&before, &out(&mut net, &x)) < 1e-10);
    let g = net.get::<Conv2d<f64>>(2).unwrap().config();
    assert_eq!((g.in_channels, g.out_channels, g.groups), (4, 6, 2));
    // prune_structured picks the same number per group.
    let mut net = grouped_net(&mut rng);
    let r = prune_structured(&mut net, &ShrinkConfig::new(0.6), &shape, None).unwrap();
    assert_eq!(r.layers[0].after, 4); // 8 - round(4.8) = 3, 2 per group
    assert_eq!(out(&mut net, &x).shape(), &[3, 3]);
}

#[test]
fn depthwise_and_grouped_producers_are_typed_errors() {
    let (mut net, _) = mobilenet(4, 1, None, 3, 0);
    let shape = [3, 5, 5];
    let err = shrink_layer(&mut net, 3, &[0, 1], &shape).unwrap_err();
    assert!(
        matches!(&err, PruneError::Unsupported { index: 3, reason, .. } if reason.contains("depthwise")),
        "{err}"
    );
    let mut rng = StdRng::seed_from_u64(0);
    let mut g = grouped_net(&mut rng);
    assert!(matches!(
        shrink_layer(&mut g, 2, &[0, 1, 2], &[2, 4, 4]),
        Err(PruneError::Unsupported { index: 2, .. })
    ));
    // A depthwise conv whose outputs are the model's outputs: nothing consumes the removal.
    let mut tail = Sequential::<f64>::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 4, 1), &mut rng).unwrap())
        .with(Conv2d::new(Conv2dConfig::new(4, 4, 3).groups(4), &mut rng).unwrap());
    assert!(matches!(
        shrink_layer(&mut tail, 0, &[0, 1], &[2, 5, 5]),
        Err(PruneError::Unsupported { index: 1, .. })
    ));
    assert_eq!(prunable_layers(&tail, &[2, 5, 5]), Vec::<usize>::new());
}
