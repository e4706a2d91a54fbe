//! The visitor contract: each parameter once, unique stable paths, counts that add up.

use std::collections::HashSet;

use compress_core::strategies::param_dict;
use compress_core::{
    CoreError, ModelStats, Module, Param, ParamDict, ParamFilter, ParamKind, ParamPath,
    ParamVisitor, ParamVisitorMut, Precision, Result, glob_match,
};
use ndarray::ArrayD;
use proptest::prelude::*;

/// A user's own struct that implements only `Module` (no `Layer`).
struct Block {
    weight: Param<f32>,
    bias: Option<Param<f32>>,
    children: Vec<Box<dyn Module<f32>>>,
}

impl Module<f32> for Block {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
        path.scoped("bias", |p| self.bias.visit(p, v));
        path.scoped("children", |p| self.children.visit(p, v));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
        path.scoped("bias", |p| self.bias.visit_mut(p, v))?;
        path.scoped("children", |p| self.children.visit_mut(p, v))
    }
}

fn block() -> Block {
    let leaf = |v: f32| Param::new(ArrayD::from_elem(vec![2, 3], v));
    let mut child = ParamDict::new();
    child.insert("w", leaf(0.0));
    Block {
        weight: Param::new(ArrayD::from_shape_vec(vec![2, 2], vec![1.0, 0.0, 0.0, 2.0]).unwrap()),
        bias: Some(Param::with_kind(ArrayD::zeros(vec![2]), ParamKind::Bias)),
        children: vec![Box::new(leaf(1.0)), Box::new(child)],
    }
}

#[test]
fn user_struct_paths_and_stats() {
    let b = block();
    let names: Vec<String> = b.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(names, ["weight", "bias", "children.0", "children.1.w"]);
    let s = ModelStats::of(&b);
    assert_eq!(s.params, 4 + 2 + 6 + 6);
    assert_eq!(s.nonzero, 2 + 6);
    assert_eq!(s.bytes(Precision::F32), 18 * 4);
    assert_eq!(s.bytes(Precision::Bits(4)), 9);
    assert_eq!(b.num_params(), 18);
}

#[test]
fn visit_mut_stops_at_first_error() {
    let mut b = block();
    let mut seen = 0;
    let err = b
        .visit_mut(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, _: &mut Param<f32>| {
                seen += 1;
                if path.to_string() == "bias" {
                    return Err(CoreError::MissingParam {
                        path: path.to_string(),
                    });
                }
                Ok(())
            },
        )
        .unwrap_err();
    assert_eq!(seen, 2);
    assert!(err.to_string().contains("`bias`"));
}

#[test]
fn load_state_round_trips_and_names_bad_paths() {
    let mut b = block();
    let mut state = b.state_dict();
    state[0].1.fill(7.0);
    b.load_state(&state).unwrap();
    assert_eq!(b.weight.value()[[0, 0]], 7.0);
    state[1].1 = ArrayD::zeros(vec![3]);
    let err = b.load_state(&state).unwrap_err();
    assert!(
        matches!(err, CoreError::ShapeMismatch { ref path, .. } if path == "bias"),
        "{err}"
    );
    state.remove(1);
    let err = b.load_state(&state).unwrap_err();
    assert!(matches!(err, CoreError::MissingParam { ref path } if path == "bias"));
}

#[test]
fn load_state_partial_sets_present_entries_only() {
    let mut b = block();
    let mut state = b.state_dict();
    assert_eq!(state[1].0, "bias");
    state[0].1.fill(5.0);
    state.truncate(1);
    assert_eq!(b.load_state_partial(&state).unwrap(), 1);
    assert!(b.weight.value().iter().all(|&w| w == 5.0));
    assert!(b.bias.as_ref().unwrap().value().iter().all(|&x| x == 0.0));
    state[0].1 = ArrayD::zeros(vec![1]);
    let err = b.load_state_partial(&state).unwrap_err();
    assert!(
        matches!(err, CoreError::ShapeMismatch { ref path, .. } if path == "weight"),
        "{err}"
    );
}

#[test]
fn filter_defaults_skip_bias_and_norm() {
    let f = ParamFilter::new();
    assert!(f.matches("0.weight", ParamKind::Weight));
    assert!(!f.matches("0.bias", ParamKind::Bias));
    assert!(!f.matches("1.weight", ParamKind::Norm));
    assert!(!f.matches("1.running_mean", ParamKind::Buffer));
    let f = ParamFilter::new()
        .include("enc*")
        .exclude("*.3.*")
        .with_bias(true);
    assert!(f.matches("enc.0.bias", ParamKind::Bias));
    assert!(!f.matches("enc.3.weight", ParamKind::Weight));
    assert!(!f.matches("dec.0.weight", ParamKind::Weight));
    assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac") && glob_match("*", ""));
}

proptest! {
    #[test]
    fn each_param_visited_once_with_unique_paths(m in param_dict::<f32>(5, 8)) {
        let mut paths = Vec::new();
        let mut total = 0;
        m.visit(&mut ParamPath::root(), &mut |p: &ParamPath, q: &Param<f32>| {
            paths.push(p.to_string());
            total += q.len();
        });
        let unique: HashSet<_> = paths.iter().collect();
        prop_assert_eq!(unique.len(), paths.len());
        prop_assert_eq!(paths.len(), m.len());
        prop_assert_eq!(m.num_params(), total);
        let infos = m.named_params();
        prop_assert_eq!(infos.iter().map(|i| i.len).sum::<usize>(), total);
        // Mutable walk visits the same paths in the same order.
        let mut m2 = m.clone();
        let mut paths_mut = Vec::new();
        m2.visit_mut(&mut ParamPath::root(), &mut |p: &ParamPath, _: &mut Param<f32>| {
            paths_mut.push(p.to_string());
            Ok(())
        }).unwrap();
        prop_assert_eq!(paths, paths_mut);
    }

    #[test]
    fn nested_vectors_prefix_paths(n in 1usize..5, k in 1usize..4) {
        let inner: Vec<Param<f64>> = (0..k).map(|_| Param::new(ArrayD::zeros(vec![1]))).collect();
        let outer: Vec<Vec<Param<f64>>> = vec![inner; n];
        let names: Vec<String> = outer.named_params().into_iter().map(|p| p.path).collect();
        prop_assert_eq!(names.len(), n * k);
        prop_assert_eq!(&names[0], "0.0");
        let last = format!("{}.{}", n - 1, k - 1);
        prop_assert_eq!(names.last().unwrap(), &last);
    }
}
