//! Default selection skips biases a user made with `Param::new` and 1-D parameters.

use netcompress::ndarray::ArrayD;
use netcompress::prelude::*;
use netcompress::prune::{PruneConfig, prune};
use netcompress::quant::{IntScheme, PtqConfig, quantize_model};
use netcompress::rand::{SeedableRng, rngs::StdRng};
use netcompress_downstream::TwoLayer;

#[test]
fn pruning_by_default_leaves_biases_made_with_param_new_alone() {
    let mut model = TwoLayer::new(16, 8, 4, &mut StdRng::seed_from_u64(2));
    let bias_before = model.fc1.bias.value().clone();
    assert_eq!(model.fc1.bias.kind(), ParamKind::Weight);
    let report = prune(&mut model, &PruneConfig::new(0.5)).unwrap();
    let pruned: Vec<&str> = report.params.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(pruned, ["fc1.weight", "fc2.weight"]);
    assert_eq!(model.fc1.bias.effective().as_ref(), &bias_before);
    assert!(model.fc1.weight.effective().sparsity() >= 0.4);
}

#[test]
fn quantization_by_default_leaves_biases_alone() {
    let model = TwoLayer::new(16, 8, 4, &mut StdRng::seed_from_u64(3));
    let (q, report) = quantize_model(&model, &PtqConfig::new(IntScheme::new(8))).unwrap();
    assert_eq!(report.params.len(), 2);
    assert!(q.get("fc1.bias").is_none() && q.get("fc1.weight").is_some());
}

#[test]
fn biases_and_vectors_are_selected_when_asked() {
    let filter = ParamFilter::new();
    let vector = Param::<f32>::new(ArrayD::ones(vec![5]));
    assert!(!filter.selects("layer.bias", &vector));
    assert!(!filter.selects("layer.gate", &vector));
    assert!(
        filter
            .clone()
            .with_vectors(true)
            .selects("layer.gate", &vector)
    );
    assert!(
        filter
            .clone()
            .with_bias(true)
            .selects("layer.bias", &vector)
    );

    let mut model = TwoLayer::new(16, 8, 4, &mut StdRng::seed_from_u64(4));
    let config = PruneConfig::new(0.5).filter(ParamFilter::new().with_bias(true));
    let report = prune(&mut model, &config).unwrap();
    assert_eq!(report.params.len(), 4);
    assert!(model.fc1.bias.effective().sparsity() > 0.0);
}

#[test]
fn pruning_zeroes_the_stored_weights_at_once() {
    let mut model = TwoLayer::new(16, 8, 4, &mut StdRng::seed_from_u64(5));
    let report = prune(&mut model, &PruneConfig::new(0.75)).unwrap();
    let stored_zeros = model
        .fc1
        .weight
        .value()
        .iter()
        .filter(|&&x| x == 0.0)
        .count()
        + model
            .fc2
            .weight
            .value()
            .iter()
            .filter(|&&x| x == 0.0)
            .count();
    assert_eq!(stored_zeros, report.pruned());
    netcompress::prune::remove_masks(&mut model, &ParamFilter::new()).unwrap();
    assert_eq!(
        ModelStats::of(&model).params - ModelStats::of(&model).nonzero,
        report.pruned()
    );
}

/// The guides are doctests of the facade; they must not send a facade user to sub-crates.
#[test]
fn guides_use_facade_paths_only() {
    let guides = [
        (
            "getting-started",
            include_str!("../../../docs/guide/getting-started.md"),
        ),
        ("pruning", include_str!("../../../docs/guide/pruning.md")),
        (
            "quantization",
            include_str!("../../../docs/guide/quantization.md"),
        ),
        (
            "clustering",
            include_str!("../../../docs/guide/clustering.md"),
        ),
        ("binary", include_str!("../../../docs/guide/binary.md")),
        (
            "distillation",
            include_str!("../../../docs/guide/distillation.md"),
        ),
        (
            "architecture",
            include_str!("../../../docs/guide/architecture.md"),
        ),
        ("lowrank", include_str!("../../../docs/guide/lowrank.md")),
        ("dynamic", include_str!("../../../docs/guide/dynamic.md")),
    ];
    for (name, text) in guides {
        for bad in ["use compress_", "use ndarray::", "use rand::"] {
            assert!(!text.contains(bad), "guide {name} contains `{bad}`");
        }
    }
    let pruning = guides[1].1;
    assert!(pruning.contains("weight_orig") && pruning.contains("zeroed at once"));
}
