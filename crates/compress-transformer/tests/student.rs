//! Distillation students: layer selection, weight copy, the pooled encoder's gradients,
//! and a tiny teacher distilled into a tiny student.

use compress_core::{Mode, Module, Param, ParamPath};
use compress_distill::{
    EmbeddingObjective, SequenceDistillConfig, SequenceDistiller, SequenceEncoder, TeacherTargets,
};
use compress_nn::PoolingKind;
use compress_testkit::GradCheck;
use compress_transformer::{BertConfig, BertModel, PooledBert, every_kth_layer, truncated_student};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn tiny_config(layers: usize, std: f64) -> BertConfig {
    let mut cfg = BertConfig::new(40, 16, layers, 2, 32);
    cfg.max_position_embeddings = 32;
    cfg.initializer_range = std;
    cfg
}

/// `n` random sequences of 3..=max_len tokens (ids 1..vocab; 0 is padding).
fn sequences(n: usize, max_len: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(3..=max_len);
            (0..len).map(|_| rng.random_range(1..40)).collect()
        })
        .collect()
}

fn mean_cosine(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let n = a.nrows() as f64;
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt()))
        .sum::<f64>()
        / n
}

fn pooled(enc: &mut PooledBert<f64>, seqs: &[Vec<usize>]) -> Array2<f64> {
    let s: Vec<&[usize]> = seqs.iter().map(Vec::as_slice).collect();
    enc.encode(&s, &[], Mode::Eval).unwrap().pooled
}

#[test]
fn every_kth_layer_ends_with_the_last() {
    assert_eq!(every_kth_layer(6, 2).unwrap(), vec![1, 3, 5]);
    assert_eq!(every_kth_layer(6, 3).unwrap(), vec![2, 5]);
    assert_eq!(every_kth_layer(6, 1).unwrap(), (0..6).collect::<Vec<_>>());
    assert!(every_kth_layer(6, 0).unwrap_err().to_string().contains('k'));
    assert!(every_kth_layer(6, 7).is_err());
}

#[test]
fn truncated_student_copies_the_kept_layers_by_name() {
    let teacher = BertModel::<f64>::random(&tiny_config(4, 0.1), 3).unwrap();
    let student = truncated_student(&teacher, &[1, 3]).unwrap();
    assert_eq!(student.config.num_hidden_layers, 2);
    assert_eq!(student.encoder.layers.len(), 2);
    let t: std::collections::HashMap<_, _> = teacher.state_dict().into_iter().collect();
    for (name, value) in student.state_dict() {
        let source = match name.strip_prefix("encoder.layer.") {
            Some(rest) => {
                let (j, tail) = rest.split_once('.').unwrap();
                format!(
                    "encoder.layer.{}.{tail}",
                    [1, 3][j.parse::<usize>().unwrap()]
                )
            }
            None => name.clone(),
        };
        assert_eq!(&value, &t[&source], "{name} <- {source}");
    }
    let err = truncated_student(&teacher, &[0, 4])
        .unwrap_err()
        .to_string();
    assert!(err.contains("keep") && err.contains('4'), "{err}");
    assert!(truncated_student(&teacher, &[]).is_err());
}

#[test]
fn pooled_bert_gradients_match_finite_differences_with_hints() {
    for pooling in [PoolingKind::Mean, PoolingKind::Cls] {
        let mut cfg = tiny_config(2, 0.3);
        cfg.hidden_size = 8;
        cfg.intermediate_size = 12;
        let mut enc = PooledBert::new(BertModel::<f64>::random(&cfg, 5).unwrap(), pooling);
        enc.train_embeddings = true;
        let seqs = sequences(3, 5, 9);
        let s: Vec<&[usize]> = seqs.iter().map(Vec::as_slice).collect();
        let mut rng = StdRng::seed_from_u64(2);
        let tokens: usize = seqs.iter().map(Vec::len).sum();
        let teacher = TeacherTargets {
            pooled: Array2::from_shape_simple_fn((3, 8), || rng.random_range(-1.0..1.0)),
            tokens: vec![Array2::from_shape_simple_fn((tokens, 8), || {
                rng.random_range(-1.0..1.0)
            })],
        };
        let obj = EmbeddingObjective {
            mse: 0.5,
            ..EmbeddingObjective::default()
        }
        .with_info_nce(0.5, 0.5)
        .with_hints(1.0);
        let mut hints = vec![compress_distill::HintLoss::new(
            compress_nn::Sequential::new(),
        )];
        enc.zero_grad();
        let out = enc.encode(&s, &[0], Mode::Train).unwrap();
        let (_, g) = obj.compute(&out, &teacher, &mut hints, true).unwrap();
        enc.backward(&g.pooled, &g.hidden).unwrap();
        let report = GradCheck::new().samples(4).params(&mut enc, &mut |e| {
            let out = e.encode(&s, &[0], Mode::Eval).unwrap();
            obj.compute(&out, &teacher, &mut hints, false)
                .unwrap()
                .0
                .total
        });
        report.assert_close(1e-6, 1e-4);
        assert!(report.params.iter().any(|p| p.contains("word_embeddings")));
    }
}

#[test]
fn frozen_embeddings_get_no_gradient_and_backward_needs_a_training_encode() {
    let mut enc = PooledBert::new(
        BertModel::<f64>::random(&tiny_config(2, 0.1), 1).unwrap(),
        PoolingKind::Mean,
    );
    let seqs = sequences(2, 4, 1);
    let s: Vec<&[usize]> = seqs.iter().map(Vec::as_slice).collect();
    let g = Array2::ones((2, 16));
    assert!(enc.backward(&g, &[]).is_err());
    enc.encode(&s, &[], Mode::Train).unwrap();
    enc.backward(&g, &[]).unwrap();
    let mut with_grad = Vec::new();
    enc.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<f64>| {
            if p.grad().is_some_and(|g| g.iter().any(|&v| v != 0.0)) {
                with_grad.push(path.to_string());
            }
        },
    );
    assert!(!with_grad.is_empty() && with_grad.iter().all(|p| p.starts_with("encoder.")));
    assert!(enc.encode(&s, &[2], Mode::Eval).is_err());
    assert!(enc.encode(&[&[1, 2], &[]], &[], Mode::Eval).is_err());
}

#[test]
fn distilling_a_tiny_teacher_lowers_the_objective_and_raises_held_out_cosine() {
    let mut teacher = PooledBert::new(
        BertModel::<f64>::random(&tiny_config(4, 0.2), 11).unwrap(),
        PoolingKind::Mean,
    );
    let keep = every_kth_layer(4, 2).unwrap();
    let mut student = PooledBert::new(
        truncated_student(&teacher.model, &keep).unwrap(),
        PoolingKind::Mean,
    );
    let train = sequences(64, 10, 1);
    let held = sequences(24, 10, 2);
    let t_held = pooled(&mut teacher, &held);
    let before = mean_cosine(&pooled(&mut student, &held), &t_held);
    let config = SequenceDistillConfig {
        objective: EmbeddingObjective::default()
            .with_info_nce(0.1, 0.1)
            .with_hints(1.0),
        hint_layers: keep.iter().enumerate().map(|(s, &t)| (s, t)).collect(),
        epochs: 25,
        batch_size: 8,
        lr: 3e-3,
        ..SequenceDistillConfig::default()
    };
    let mut d = SequenceDistiller::new(&mut teacher, train, &[16, 16], config).unwrap();
    let loss_before = d.mean_loss(&mut student).unwrap();
    let mut steps = 0;
    let report = d.fit(&mut student, &mut |_| steps += 1).unwrap();
    let loss_after = d.mean_loss(&mut student).unwrap();
    let after = mean_cosine(&pooled(&mut student, &held), &t_held);
    assert_eq!(steps, report.steps);
    assert_eq!(report.steps, 25 * 8);
    assert!(
        loss_after.total < 0.5 * loss_before.total,
        "{loss_before:?} -> {loss_after:?}"
    );
    assert!(after > before + 0.1, "held-out cosine {before} -> {after}");
}
