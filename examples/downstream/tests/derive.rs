//! `#[derive(Module)]` from the facade: nested modules, Vec/Option/Box fields, generic `F`,
//! skipped fields, renamed and flattened fields, bias marks.

use netcompress::ndarray::ArrayD;
use netcompress::nn::{Linear, ReLU};
use netcompress::prelude::*;
use netcompress::prune::{PruneConfig, prune};
use netcompress::rand::{SeedableRng, rngs::StdRng};

#[derive(Debug, Module)]
struct Attention<F: Float> {
    #[module(rename = "query")]
    q: Linear<F>,
    #[module(rename = "key")]
    k: Linear<F>,
    out: Option<Linear<F>>,
    #[module(bias)]
    shift: Param<F>,
    #[module(skip)]
    heads: usize,
}

#[derive(Debug, Module)]
struct Encoder<F: Float> {
    layers: Vec<Attention<F>>,
    act: ReLU<F>,
    #[module(flatten)]
    head: Box<Linear<F>>,
}

/// No type parameter: the scalar comes from the fields.
#[derive(Module)]
struct Tiny(Param<f64>, #[module(skip)] &'static str);

fn attention(d: usize, rng: &mut StdRng, out: bool) -> Attention<f32> {
    Attention {
        q: Linear::new(d, d, true, rng),
        k: Linear::new(d, d, true, rng),
        out: out.then(|| Linear::new(d, d, true, rng)),
        shift: Param::new(ArrayD::zeros(vec![d])),
        heads: 2,
    }
}

#[test]
fn derived_walks_name_every_parameter_in_declaration_order() {
    let mut rng = StdRng::seed_from_u64(0);
    let enc = Encoder {
        layers: vec![attention(4, &mut rng, true), attention(4, &mut rng, false)],
        act: ReLU::new(),
        head: Box::new(Linear::new(4, 2, true, &mut rng)),
    };
    let paths: Vec<String> = enc.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        [
            "layers.0.query.weight",
            "layers.0.query.bias",
            "layers.0.key.weight",
            "layers.0.key.bias",
            "layers.0.out.weight",
            "layers.0.out.bias",
            "layers.0.shift",
            "layers.1.query.weight",
            "layers.1.query.bias",
            "layers.1.key.weight",
            "layers.1.key.bias",
            "layers.1.shift",
            "weight",
            "bias",
        ]
    );
    assert_eq!(enc.layers[0].heads, 2);
    let tiny = Tiny(Param::new(ArrayD::zeros(vec![3, 3])), "unused");
    assert_eq!(Module::<f64>::num_params(&tiny), 9);
    assert_eq!(tiny.1, "unused");
}

#[test]
fn mutable_walks_reach_every_parameter_and_mark_biases() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut enc = Encoder {
        layers: vec![attention(6, &mut rng, true)],
        act: ReLU::new(),
        head: Box::new(Linear::new(6, 3, true, &mut rng)),
    };
    assert_eq!(enc.layers[0].shift.kind(), ParamKind::Weight);
    let report = prune(&mut enc, &PruneConfig::new(0.5)).unwrap();
    assert_eq!(enc.layers[0].shift.kind(), ParamKind::Bias);
    let pruned: Vec<&str> = report.params.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        pruned,
        [
            "layers.0.query.weight",
            "layers.0.key.weight",
            "layers.0.out.weight",
            "weight"
        ]
    );
    let mut seen = 0;
    enc.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            p.value_mut().fill(1.0);
            seen += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, 9);
    let stored = enc.stored_dict();
    assert!(stored.iter().all(|(_, v)| v.iter().all(|&x| x == 1.0)));
    // The masks stay attached: the effective weights keep the pruned zeros.
    assert_eq!(
        ModelStats::of(&enc).nonzero,
        enc.num_params() - report.pruned()
    );
}
