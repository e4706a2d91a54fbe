//! `StreamingThreshold`: the chunked two-pass cut prunes exactly what the in-memory
//! magnitude mask prunes on the concatenation, and misuse is a typed error.

use compress_core::CoreError;
use compress_prune::{PruneError, StreamingThreshold, magnitude_mask_into, magnitude_threshold};
use proptest::prelude::*;

fn run(chunks: &[Vec<f32>], sparsity: f64) -> (StreamingThreshold, Vec<bool>) {
    let mut t = StreamingThreshold::new(sparsity).unwrap();
    for _ in 0..StreamingThreshold::PASSES {
        for c in chunks {
            t.observe(c).unwrap();
        }
        t.finish_pass().unwrap();
    }
    let mut keep = Vec::new();
    for c in chunks {
        keep.extend(t.keep_mask(c).unwrap());
    }
    (t, keep)
}

proptest! {
    #[test]
    fn chunked_cut_equals_the_in_memory_mask(
        chunks in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                6 => -4.0f32..4.0,
                1 => prop::sample::select(vec![0.0f32, -0.0, 0.5, -0.5, 1e-30, 3e38]),
            ], 0..60),
            1..6,
        ),
        sparsity in 0.0f64..0.999,
    ) {
        let all: Vec<f32> = chunks.concat();
        let (t, keep) = run(&chunks, sparsity);
        let mut mask = vec![0.0f32; all.len()];
        let pruned = magnitude_mask_into(&all, sparsity, &mut mask).unwrap();
        let want: Vec<bool> = mask.iter().map(|&m| m != 0.0).collect();
        prop_assert_eq!(&keep, &want);
        let th = t.threshold().unwrap();
        prop_assert_eq!(th.pruned, pruned);
        prop_assert_eq!(th, magnitude_threshold(&all, sparsity).unwrap());
    }
}

#[test]
fn misuse_and_bad_values_are_typed_errors() {
    assert!(matches!(
        StreamingThreshold::new(1.0),
        Err(PruneError::Sparsity { value, .. }) if value == 1.0
    ));
    let mut t = StreamingThreshold::new(0.5).unwrap();
    assert!(t.threshold().is_err());
    assert!(t.keep_mask(&[1.0]).is_err());
    t.observe(&[1.0, 2.0]).unwrap();
    match t.observe(&[3.0, f32::NAN]) {
        Err(PruneError::Core(CoreError::NonFinite { index, .. })) => assert_eq!(index, 3),
        other => panic!("{other:?}"),
    }
    t.finish_pass().unwrap();
    t.observe(&[1.0, 2.0, 3.0]).unwrap();
    let err = t.finish_pass().unwrap_err().to_string();
    assert!(err.contains('3') && err.contains('2'), "{err}");
    // A complete run refuses more data.
    let (mut done, _) = run(&[vec![1.0, -2.0]], 0.5);
    assert!(done.observe(&[1.0]).is_err());
    assert!(done.finish_pass().is_err());
}

#[test]
fn zero_sparsity_keeps_everything() {
    let (t, keep) = run(&[vec![0.0, 1.0], vec![-3.0]], 0.0);
    assert!(keep.iter().all(|&k| k));
    assert_eq!(t.threshold().unwrap().pruned, 0);
}
