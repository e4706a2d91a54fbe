//! Structured shrinking through declared coupling groups: a residual model that is not a
//! `Sequential`, the same result as `prune_structured` on `Sequential`s, and errors that
//! keep their type.

use compress_core::surgery::with_param_mut;
use compress_core::{CoreError, Coupled, CouplingRole, Layer, Mode, Module, Param, ParamPath};
use compress_nn::models::{ResidualMlp, mlp, small_cnn};
use compress_nn::train::TrainHooks;
use compress_nn::{Conv2d, Conv2dConfig, NnError, Sequential};
use compress_prune::{
    GradualPruning, IndexWidth, PolynomialSchedule, PruneConfig, PruneError, ShrinkConfig,
    SparseLinear, UnitCriterion, mask_of, prune, prune_coupled, prune_structured, sparsify_linears,
};
use compress_testkit::{max_abs_diff, seeded_tensor};
use ndarray::Axis;
use rand::{SeedableRng, rngs::StdRng};

use crate::common::out;

fn zero_index<F: compress_core::Float>(p: &mut Param<F>, axis: usize, idx: &[usize]) {
    for &i in idx {
        p.value_mut().index_axis_mut(Axis(axis), i).fill(F::zero());
    }
}

/// A residual MLP where stream features `stream` and hidden units `hidden` of every block
/// are dead (all their incoming weights and biases are zero).
fn residual_with_dead_units(stream: &[usize], hidden: &[usize]) -> ResidualMlp<f64> {
    let mut net = ResidualMlp::<f64>::new(12, 16, 24, 2, 5, &mut StdRng::seed_from_u64(7));
    let mut producers = vec!["input".to_string()];
    for b in 0..2 {
        producers.push(format!("blocks.{b}.fc2"));
        for t in ["weight", "bias"] {
            with_param_mut(&mut net, &format!("blocks.{b}.fc1.{t}"), |p| {
                zero_index(p, 0, hidden);
                Ok(())
            })
            .unwrap();
        }
    }
    for l in producers {
        for t in ["weight", "bias"] {
            with_param_mut(&mut net, &format!("{l}.{t}"), |p| {
                zero_index(p, 0, stream);
                Ok(())
            })
            .unwrap();
        }
    }
    net
}

#[test]
fn residual_model_loses_exactly_its_dead_units_and_keeps_its_outputs() {
    let mut net = residual_with_dead_units(&[1, 5, 9, 14], &[0, 3, 4, 10, 11, 20]);
    let x = seeded_tensor::<f64>(&[9, 12], 3);
    let before = net.forward(&x, Mode::Eval).unwrap();
    let cfg = ShrinkConfig::new(0.25).criterion(UnitCriterion::L1);
    let r = prune_coupled(&mut net, &cfg, &[12]).unwrap();
    let widths: Vec<(&str, usize, usize)> = r
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.before, g.after))
        .collect();
    assert_eq!(
        widths,
        [
            ("blocks.0.hidden", 24, 18),
            ("blocks.1.hidden", 24, 18),
            ("stream", 16, 12)
        ]
    );
    let shapes: Vec<(String, Vec<usize>)> = net
        .named_params()
        .into_iter()
        .map(|p| (p.path, p.shape))
        .collect();
    assert_eq!(shapes[0], ("input.weight".to_string(), vec![12, 12]));
    assert_eq!(shapes[2], ("blocks.0.fc1.weight".to_string(), vec![18, 12]));
    assert_eq!(shapes[4], ("blocks.0.fc2.weight".to_string(), vec![12, 18]));
    assert_eq!(shapes[10], ("head.weight".to_string(), vec![5, 12]));
    let after = net.forward(&x, Mode::Eval).unwrap();
    assert!(max_abs_diff(&before, &after) < 1e-12);
    assert!(r.params_after < r.params_before && r.macs_after < r.macs_before);
    assert_eq!(net.cost(&[12]).unwrap().macs, r.macs_after);
    // The shrunk model still trains.
    let y = net.forward(&x, Mode::Train).unwrap();
    net.backward(&y).unwrap();
}

#[test]
fn residual_model_keeps_masks_and_sparsifies_by_path() {
    let mut net = ResidualMlp::<f32>::new(10, 8, 16, 1, 3, &mut StdRng::seed_from_u64(1));
    prune(&mut net, &PruneConfig::new(0.8)).unwrap();
    prune_coupled(&mut net, &ShrinkConfig::new(0.5), &[10]).unwrap();
    // Masks are restricted to the kept units, not dropped.
    let mut masked = Vec::new();
    net.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<f32>| {
            if let Some(m) = mask_of(p) {
                assert_eq!(m.array().shape(), p.shape());
                masked.push(path.to_string());
            }
        },
    );
    assert_eq!(
        masked,
        [
            "input.weight",
            "blocks.0.fc1.weight",
            "blocks.0.fc2.weight",
            "head.weight"
        ]
    );
    let x = seeded_tensor::<f32>(&[4, 10], 2);
    let dense = out(&mut net, &x);
    let paths = sparsify_linears(&mut net, 0.0, IndexWidth::Auto).unwrap();
    assert_eq!(paths, ["input", "blocks.0.fc1", "blocks.0.fc2", "head"]);
    assert!(
        net.blocks[0]
            .fc1
            .as_ref()
            .as_any()
            .is::<SparseLinear<f32>>()
    );
    assert!(max_abs_diff(&dense, &out(&mut net, &x)) < 1e-5);
}

/// `prune_coupled` on a `Sequential` (groups declared by `Sequential` itself) shrinks the
/// same units as `prune_structured` and gives the same model.
fn same_as_prune_structured(make: &dyn Fn() -> Sequential<f64>, input: &[usize]) {
    for crit in [UnitCriterion::L1, UnitCriterion::L2] {
        let cfg = ShrinkConfig::new(0.4).criterion(crit);
        let (mut a, mut b) = (make(), make());
        let ra = prune_structured(&mut a, &cfg, input, None).unwrap();
        let rb = prune_coupled(&mut b, &cfg, input).unwrap();
        let wa: Vec<(usize, usize)> = ra.layers.iter().map(|l| (l.before, l.after)).collect();
        let wb: Vec<(usize, usize)> = rb.groups.iter().map(|g| (g.before, g.after)).collect();
        assert_eq!(wa, wb);
        assert_eq!(
            (ra.params_after, ra.macs_after),
            (rb.params_after, rb.macs_after)
        );
        assert_eq!(a.stored_dict(), b.stored_dict());
    }
}

#[test]
fn sequential_declared_groups_match_prune_structured() {
    same_as_prune_structured(
        &|| mlp(&[20, 30, 16, 4], &mut StdRng::seed_from_u64(3)),
        &[20],
    );
    same_as_prune_structured(
        &|| small_cnn(1, 8, 3, &mut StdRng::seed_from_u64(4)),
        &[1, 8, 8],
    );
    // Through a depthwise conv (multiplier 2) into a pointwise conv.
    same_as_prune_structured(
        &|| {
            let rng = &mut StdRng::seed_from_u64(5);
            Sequential::new()
                .with(Conv2d::new(Conv2dConfig::new(3, 6, 1), rng).unwrap())
                .with(Conv2d::new(Conv2dConfig::new(6, 12, 3).padding(1).groups(6), rng).unwrap())
                .with(Conv2d::new(Conv2dConfig::new(12, 5, 1), rng).unwrap())
        },
        &[3, 6, 6],
    );
}

#[test]
fn bad_declarations_and_criteria_are_typed_errors() {
    let mut net = ResidualMlp::<f32>::new(6, 4, 8, 1, 2, &mut StdRng::seed_from_u64(0));
    let apoz = ShrinkConfig::new(0.5).criterion(UnitCriterion::Apoz);
    assert!(matches!(
        prune_coupled(&mut net, &apoz, &[6]),
        Err(PruneError::Core(CoreError::InvalidConfig { .. }))
    ));
    assert!(matches!(
        prune_coupled(&mut net, &ShrinkConfig::new(1.5), &[6]),
        Err(PruneError::Sparsity { .. })
    ));
    let bad = compress_core::CouplingGroup::new("g")
        .with(Coupled::new("input.weight", 0, CouplingRole::Produce))
        .with(Coupled::new("head.weight", 0, CouplingRole::Consume));
    assert!(matches!(
        compress_prune::shrink_group(&mut net, &bad, &[0]),
        Err(PruneError::Core(CoreError::InvalidConfig { .. }))
    ));
}

#[test]
fn a_prune_error_raised_in_a_training_hook_keeps_its_type() {
    let mut net = mlp::<f32, _>(&[4, 6, 2], &mut StdRng::seed_from_u64(0));
    let mut hook = GradualPruning::new(
        PolynomialSchedule::new(0.0, 0.5, 0, 1, 2),
        PruneConfig::new(0.5).importance(compress_prune::Importance::Taylor),
    );
    // Taylor scores need gradients; the hook reports through the trainer's error type.
    let err: NnError = TrainHooks::<f32>::on_step(&mut hook, 1, &mut net).unwrap_err();
    let NnError::Core(core) = &err else {
        panic!("expected a core error, got {err:?}");
    };
    assert!(matches!(
        core.technique_error::<PruneError>(),
        Some(PruneError::NoGradient { path }) if path == "0.weight"
    ));
    // Converted back, it is the original variant.
    assert!(matches!(
        PruneError::from(err),
        PruneError::NoGradient { .. }
    ));
}
