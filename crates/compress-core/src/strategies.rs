//! Proptest strategies for tensors and small models (feature `proptest`).
//!
//! ```
//! use compress_core::strategies::{tensor, special_tensor, param_dict};
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//!
//! let mut runner = TestRunner::deterministic();
//! let t = tensor(vec![3, 4], -1.0f32..1.0).new_tree(&mut runner).unwrap().current();
//! assert_eq!(t.shape(), &[3, 4]);
//! let s = special_tensor::<f32>(vec![8]).new_tree(&mut runner).unwrap().current();
//! assert_eq!(s.len(), 8);
//! let m = param_dict::<f32>(3, 16).new_tree(&mut runner).unwrap().current();
//! // Each layer contributes a weight and a bias.
//! assert!(m.len() % 2 == 0 && (2..=6).contains(&m.len()));
//! ```

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use crate::{Float, Param, ParamDict, ParamKind};

/// Tensors of exactly `shape` with elements drawn from `range` (e.g. `-1.0f32..1.0`).
///
/// # Panics
///
/// Never: the generated vectors always have the shape's element count.
pub fn tensor<F>(shape: Vec<usize>, range: std::ops::Range<F>) -> impl Strategy<Value = ArrayD<F>>
where
    F: Float,
    std::ops::Range<F>: Strategy<Value = F>,
{
    let n: usize = shape.iter().product();
    proptest::collection::vec(range, n).prop_map(move |v| {
        ArrayD::from_shape_vec(IxDyn(&shape), v).expect("length equals the shape's product")
    })
}

/// Shapes of rank `1..=max_rank` with each dimension in `1..=max_dim`.
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1..=max_dim.max(1), 1..=max_rank.max(1))
}

/// Random-shaped tensors (rank `1..=max_rank`, dims `1..=max_dim`) with values in `[-scale, scale]`.
///
/// # Panics
///
/// Never: the generated vectors always have the shape's element count.
pub fn any_tensor<F: Float>(
    max_rank: usize,
    max_dim: usize,
    scale: f64,
) -> impl Strategy<Value = ArrayD<F>> {
    shape(max_rank, max_dim).prop_flat_map(move |s| {
        let n: usize = s.iter().product();
        proptest::collection::vec(-scale..=scale, n).prop_map(move |v| {
            ArrayD::from_shape_vec(IxDyn(&s), v.into_iter().map(F::lit).collect())
                .expect("length equals the shape's product")
        })
    })
}

/// Tensors of `shape` that mix ordinary values with the special ones that break naive code:
/// exact zeros, ties, huge and tiny magnitudes, negative zero, NaN and infinities.
///
/// # Panics
///
/// Never: the generated vectors always have the shape's element count.
pub fn special_tensor<F: Float>(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<F>> {
    let n: usize = shape.iter().product();
    let elem = prop_oneof![
        4 => -1.0f64..1.0,
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(0.5),
        1 => Just(1.0e30),
        1 => Just(1.0e-30),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ];
    proptest::collection::vec(elem, n).prop_map(move |v| {
        ArrayD::from_shape_vec(IxDyn(&shape), v.into_iter().map(F::lit).collect())
            .expect("length equals the shape's product")
    })
}

/// Small random models: 1..=`max_layers` layers named `layers.{i}.weight` (2-D) and
/// `layers.{i}.bias` (1-D), dims `1..=max_dim`, finite values in `[-1, 1]`.
///
/// # Panics
///
/// Never: the generated vectors always have the shape's element count.
pub fn param_dict<F: Float>(
    max_layers: usize,
    max_dim: usize,
) -> impl Strategy<Value = ParamDict<F>> {
    let layer = (1..=max_dim.max(1), 1..=max_dim.max(1)).prop_flat_map(|(o, i)| {
        (
            proptest::collection::vec(-1.0f64..1.0, o * i),
            proptest::collection::vec(-1.0f64..1.0, o),
        )
            .prop_map(move |(w, b)| (o, i, w, b))
    });
    proptest::collection::vec(layer, 1..=max_layers.max(1)).prop_map(|layers| {
        let mut d = ParamDict::new();
        for (k, (o, i, w, b)) in layers.into_iter().enumerate() {
            let w = ArrayD::from_shape_vec(IxDyn(&[o, i]), w.into_iter().map(F::lit).collect())
                .expect("o*i values");
            let b = ArrayD::from_shape_vec(IxDyn(&[o]), b.into_iter().map(F::lit).collect())
                .expect("o values");
            d.insert(format!("layers.{k}.weight"), Param::new(w));
            d.insert(
                format!("layers.{k}.bias"),
                Param::with_kind(b, ParamKind::Bias),
            );
        }
        d
    })
}
