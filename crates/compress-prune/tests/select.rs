//! The O(n) threshold against a sort-based reference, with ties and special values.

use compress_prune::{magnitude_mask_into, magnitude_prune_inplace, magnitude_threshold};
use proptest::prelude::*;

fn reference(values: &[f32], sparsity: f64) -> Vec<bool> {
    // Stable sort by |w| then index; prune the first k.
    let k = ((sparsity * values.len() as f64) - 1e-9).ceil().max(0.0) as usize;
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
    let mut pruned = vec![false; values.len()];
    for &i in &idx[..k.min(values.len())] {
        pruned[i] = true;
    }
    pruned
}

proptest! {
    #[test]
    fn mask_matches_stable_sort_reference(
        values in proptest::collection::vec(prop_oneof![
            4 => -1.0f32..1.0,
            1 => Just(0.0f32),
            1 => Just(-0.0f32),
            1 => Just(0.5f32),
            1 => Just(-0.5f32),
            1 => Just(1e30f32),
            1 => Just(1e-30f32),
        ], 0..300),
        sparsity in 0.0f64..0.999,
    ) {
        let mut mask = vec![0.0f32; values.len()];
        let k = magnitude_mask_into(&values, sparsity, &mut mask).unwrap();
        let want = reference(&values, sparsity);
        prop_assert_eq!(k, want.iter().filter(|&&p| p).count());
        for (m, p) in mask.iter().zip(&want) {
            prop_assert_eq!(*m == 0.0, *p);
        }
        let mut w = values.clone();
        prop_assert_eq!(magnitude_prune_inplace(&mut w, sparsity).unwrap(), k);
        for ((a, b), m) in w.iter().zip(&values).zip(&mask) {
            prop_assert_eq!(*a, if *m == 0.0 { 0.0 } else { *b });
        }
    }

    #[test]
    fn threshold_is_the_kth_magnitude(values in proptest::collection::vec(-10.0f64..10.0, 1..200), s in 0.01f64..0.99) {
        let t = magnitude_threshold(&values, s).unwrap();
        let mut mags: Vec<f64> = values.iter().map(|v| v.abs()).collect();
        mags.sort_by(f64::total_cmp);
        if t.pruned > 0 {
            prop_assert_eq!(t.value, mags[t.pruned - 1]);
            let below = mags.iter().filter(|&&m| m < t.value).count();
            prop_assert_eq!(t.ties, t.pruned - below);
        }
    }
}

#[test]
fn nan_and_inf_are_rejected_with_their_index() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let v = [0.1f32, 0.2, bad, 0.3];
        let mut m = [0.0f32; 4];
        let e = magnitude_mask_into(&v, 0.5, &mut m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("flat index 2"), "{e}");
    }
    let mut short = [0.0f32; 3];
    assert!(magnitude_mask_into(&[1.0f32; 4], 0.5, &mut short).is_err());
}

#[test]
fn all_equal_values_prune_exactly() {
    let v = vec![0.25f32; 1000];
    let mut m = vec![0.0f32; 1000];
    assert_eq!(magnitude_mask_into(&v, 0.9, &mut m).unwrap(), 900);
    assert_eq!(m.iter().filter(|&&x| x == 0.0).count(), 900);
    // The first 900 in order are the ones pruned.
    assert!(m[..900].iter().all(|&x| x == 0.0) && m[900..].iter().all(|&x| x == 1.0));
}
