//! Sequence distillation: the weighted objective (gradients, invariants), the warm-up
//! schedule, gradient clipping and masked token gather/scatter.

use compress_core::{Module, Param, ParamKind, ParamPath, ParamVisitor, ParamVisitorMut};
use compress_distill::{
    Decay, EmbeddingObjective, EncoderOutput, HintLoss, InfoNceConfig, KdConfig, TeacherTargets,
    WarmupSchedule, clip_grad_norm, cosine_embedding_loss, gather_tokens, info_nce_loss, kd_loss,
    kl_div, scatter_tokens,
};
use compress_nn::{PaddingMask, Sequential};
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::{Array2, Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::{logits_with_labels, matrix_pair};

fn random2(rng: &mut StdRng, r: usize, c: usize) -> Array2<f64> {
    Array2::from_shape_simple_fn((r, c), || rng.random_range(-1.0..1.0))
}

fn random3(rng: &mut StdRng, b: usize, s: usize, c: usize) -> Array3<f64> {
    Array3::from_shape_simple_fn((b, s, c), || rng.random_range(-1.0..1.0))
}

/// A batch of 3 sequences (lengths 4, 2, 3, padded to 4), student width 5 and teacher
/// width 5 (identity hint) and 7 (projected hint).
struct Fixture {
    student: EncoderOutput<f64>,
    teacher: TeacherTargets<f64>,
    hints: Vec<HintLoss<f64>>,
}

fn fixture(seed: u64) -> Fixture {
    let mut rng = StdRng::seed_from_u64(seed);
    let mask = PaddingMask::from_lengths(&[4, 2, 3], 4).unwrap();
    let student = EncoderOutput {
        pooled: random2(&mut rng, 3, 5),
        hidden: vec![random3(&mut rng, 3, 4, 5), random3(&mut rng, 3, 4, 5)],
        mask,
    };
    let teacher = TeacherTargets {
        pooled: random2(&mut rng, 3, 5),
        tokens: vec![random2(&mut rng, 9, 5), random2(&mut rng, 9, 7)],
    };
    let hints = vec![
        HintLoss::new(Sequential::new()).with_weight(0.7).unwrap(),
        HintLoss::linear(5, 7, &mut rng).with_weight(0.3).unwrap(),
    ];
    Fixture {
        student,
        teacher,
        hints,
    }
}

fn full_objective() -> EmbeddingObjective {
    EmbeddingObjective {
        cosine: 1.0,
        mse: 0.5,
        info_nce: 0.25,
        info_nce_config: InfoNceConfig {
            temperature: 0.2,
            symmetric: true,
        },
        hint: 1.0,
    }
}

#[test]
fn objective_gradients_match_finite_differences() {
    let obj = full_objective();
    let mut f = fixture(1);
    let (value, grad) = obj
        .compute(&f.student, &f.teacher, &mut f.hints, true)
        .unwrap();
    let parts = value.cosine + value.mse + value.info_nce + value.hint;
    assert!((value.total - parts).abs() < 1e-12 && value.hint > 0.0);
    let numeric = fd_grad(
        |p| {
            let mut out = f.student.clone();
            out.pooled = p.clone();
            obj.compute(&out, &f.teacher, &mut f.hints, false)
                .unwrap()
                .0
                .total
        },
        &f.student.pooled.clone(),
        1e-6,
    );
    assert_grad_close(&grad.pooled, &numeric, 1e-7, 1e-5);
    for k in 0..2 {
        let numeric = fd_grad(
            |h| {
                let mut out = f.student.clone();
                out.hidden[k] = h.clone();
                obj.compute(&out, &f.teacher, &mut f.hints, false)
                    .unwrap()
                    .0
                    .total
            },
            &f.student.hidden[k].clone(),
            1e-6,
        );
        let analytic = grad.hidden[k].as_ref().unwrap();
        assert_grad_close(analytic, &numeric, 1e-7, 1e-5);
        // Padding positions get no gradient.
        assert!(
            analytic
                .slice(ndarray::s![1, 2.., ..])
                .iter()
                .all(|&v| v == 0.0)
        );
    }
}

#[test]
fn each_term_alone_has_the_gradient_of_its_loss() {
    let mut f = fixture(2);
    let (s, t) = (&f.student.pooled, &f.teacher.pooled);
    let (cos, cos_g) = cosine_embedding_loss(s, t).unwrap();
    let cfg = InfoNceConfig::default();
    let (nce, nce_g) = info_nce_loss(s, t, &cfg).unwrap();
    let none = EncoderOutput {
        hidden: Vec::new(),
        ..f.student.clone()
    };
    let targets = TeacherTargets {
        tokens: Vec::new(),
        ..f.teacher.clone()
    };
    let (v, g) = EmbeddingObjective::default()
        .compute(&none, &targets, &mut [], true)
        .unwrap();
    assert_eq!((v.total, &g.pooled), (cos, &cos_g));
    let obj = EmbeddingObjective {
        cosine: 0.0,
        ..EmbeddingObjective::default()
    }
    .with_info_nce(2.0, cfg.temperature);
    let (v, g) = obj.compute(&none, &targets, &mut [], true).unwrap();
    assert!((v.total - 2.0 * nce).abs() < 1e-12);
    assert_grad_close(&g.pooled, &(nce_g * 2.0), 1e-12, 0.0);
    // Mismatched hint counts are an error, not a panic.
    assert!(
        EmbeddingObjective::default()
            .compute(&f.student, &targets, &mut f.hints, true)
            .is_err()
    );
}

#[test]
fn invalid_objectives_name_the_weight() {
    let bad = EmbeddingObjective {
        mse: -1.0,
        ..EmbeddingObjective::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("mse"));
    let zero = EmbeddingObjective {
        cosine: 0.0,
        ..EmbeddingObjective::default()
    };
    assert!(zero.validate().unwrap_err().to_string().contains("zero"));
    let temp = EmbeddingObjective::default().with_info_nce(1.0, 0.0);
    assert!(
        temp.validate()
            .unwrap_err()
            .to_string()
            .contains("temperature")
    );
}

#[test]
fn warmup_then_decay_reaches_the_floor() {
    for decay in [Decay::Linear, Decay::Cosine] {
        let s = WarmupSchedule {
            warmup: 5,
            total: 50,
            decay,
            min_factor: 0.1,
        };
        let f: Vec<f64> = (0..50).map(|i| s.factor(i)).collect();
        assert!(f[..5].windows(2).all(|w| w[0] < w[1]), "{f:?}");
        assert_eq!(f[5], 1.0);
        assert!(f[5..].windows(2).all(|w| w[0] >= w[1]), "{f:?}");
        assert!((f[49] - 0.1).abs() < 1e-12);
        assert!((s.factor(1000) - 0.1).abs() < 1e-12);
    }
}

/// Two parameters with gradients, as a module.
#[derive(Debug)]
struct Two(Param<f64>, Param<f64>, Param<f64>);

impl Module<f64> for Two {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f64>) {
        path.scoped("a", |p| self.0.visit(p, v));
        path.scoped("b", |p| self.1.visit(p, v));
        path.scoped("buf", |p| self.2.visit(p, v));
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<f64>,
    ) -> compress_core::Result<()> {
        path.scoped("a", |p| self.0.visit_mut(p, v))?;
        path.scoped("b", |p| self.1.visit_mut(p, v))?;
        path.scoped("buf", |p| self.2.visit_mut(p, v))
    }
}

fn two(ga: &[f64], gb: &[f64]) -> Two {
    let mut a = Param::new(ArrayD::zeros(IxDyn(&[ga.len()])));
    a.accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[ga.len()]), ga.to_vec()).unwrap())
        .unwrap();
    let mut b = Param::new(ArrayD::zeros(IxDyn(&[gb.len()])));
    b.accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[gb.len()]), gb.to_vec()).unwrap())
        .unwrap();
    let mut buf = Param::with_kind(ArrayD::zeros(IxDyn(&[1])), ParamKind::Buffer);
    buf.accumulate_grad(ArrayD::from_elem(IxDyn(&[1]), 100.0))
        .unwrap();
    Two(a, b, buf)
}

#[test]
fn clipping_scales_the_global_norm_and_keeps_direction() {
    let mut m = two(&[3.0, 0.0], &[4.0]);
    let norm = clip_grad_norm(&mut m, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    assert!((m.0.grad().unwrap()[0] - 0.6).abs() < 1e-12);
    assert!((m.1.grad().unwrap()[0] - 0.8).abs() < 1e-12);
    assert_eq!(m.2.grad().unwrap()[0], 100.0, "buffers are not clipped");
    // Below the threshold nothing changes.
    let mut m = two(&[0.3], &[0.4]);
    assert!((clip_grad_norm(&mut m, 1.0).unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(m.0.grad().unwrap()[0], 0.3);
    assert!(clip_grad_norm(&mut m, 0.0).is_err());
    let mut m = two(&[f64::NAN], &[0.4]);
    assert!(
        clip_grad_norm(&mut m, 1.0)
            .unwrap_err()
            .to_string()
            .contains("a.grad")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn symmetric_info_nce_is_symmetric_in_student_and_teacher(
        (s, t) in matrix_pair(6, 2, 5, 2.0),
        tau in 0.05f64..2.0,
    ) {
        let cfg = InfoNceConfig { temperature: tau, symmetric: true };
        let (a, _) = info_nce_loss(&s, &t, &cfg).unwrap();
        let (b, _) = info_nce_loss(&t, &s, &cfg).unwrap();
        prop_assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }

    #[test]
    fn cosine_loss_is_zero_iff_every_row_is_aligned(
        (s, t) in matrix_pair(5, 2, 5, 2.0),
        k in 0.1f64..10.0,
    ) {
        prop_assume!(t.rows().into_iter().all(|r| r.dot(&r) > 1e-2));
        prop_assume!(s.rows().into_iter().all(|r| r.dot(&r) > 1e-2));
        let (aligned, _) = cosine_embedding_loss(&(&t * k), &t).unwrap();
        prop_assert!(aligned.abs() < 1e-12);
        let (l, _) = cosine_embedding_loss(&s, &t).unwrap();
        let all_aligned = s.rows().into_iter().zip(t.rows()).all(|(a, b)| {
            (a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt()) - 1.0).abs() < 1e-9
        });
        prop_assert_eq!(l.abs() < 1e-9, all_aligned);
    }

    #[test]
    fn kd_with_alpha_one_is_t_squared_kl((s, t, labels) in logits_with_labels(5, 6, 4.0), temp in 0.5f64..10.0) {
        let out = kd_loss(&s, &t, &labels, &KdConfig::new(temp, 1.0).unwrap()).unwrap();
        let (kl, _) = kl_div(&s, &t, temp).unwrap();
        prop_assert!((out.loss - temp * temp * kl).abs() < 1e-9 * (1.0 + out.loss.abs()));
    }

    #[test]
    fn gather_then_scatter_keeps_real_tokens_and_zeroes_padding(
        lengths in proptest::collection::vec(0usize..5, 1..4),
        seed in 0u64..1000,
    ) {
        let seq = lengths.iter().copied().max().unwrap_or(0);
        let mask = PaddingMask::from_lengths(&lengths, seq).unwrap();
        let x = random3(&mut StdRng::seed_from_u64(seed), lengths.len(), seq, 3);
        let rows = gather_tokens(&x, &mask).unwrap();
        prop_assert_eq!(rows.nrows(), lengths.iter().sum::<usize>());
        let back = scatter_tokens(&rows, &mask).unwrap();
        for (b, &l) in lengths.iter().enumerate() {
            for t in 0..seq {
                for c in 0..3 {
                    let want = if t < l { x[[b, t, c]] } else { 0.0 };
                    prop_assert_eq!(back[[b, t, c]], want);
                }
            }
        }
    }
}
