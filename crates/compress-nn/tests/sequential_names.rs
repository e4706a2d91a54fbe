//! Sequential's layer names: indices by default, given names on request, both as the
//! parameter-path and layer-path segments.

use compress_core::surgery::{find_layer, layer_paths};
use compress_core::{CoreError, Module};
use compress_nn::{Linear, ReLU, Sequential};
use rand::{SeedableRng, rngs::StdRng};

fn lin(i: usize, o: usize) -> Linear<f32> {
    Linear::new(i, o, true, &mut StdRng::seed_from_u64(1))
}

#[test]
fn names_become_path_segments() {
    let mut s = Sequential::<f32>::new()
        .with_named("fc1", lin(3, 4))
        .unwrap()
        .with(ReLU::new());
    s.push_named("head", lin(4, 2)).unwrap();
    assert_eq!(s.names(), ["fc1", "1", "head"]);
    let params: Vec<String> = s.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(
        params,
        ["fc1.weight", "fc1.bias", "head.weight", "head.bias"]
    );
    assert!(find_layer(&s, "head").unwrap().is::<Linear<f32>>());
    let paths: Vec<String> = layer_paths(&s).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["fc1", "1", "head"]);
    assert_eq!(s.get_named::<Linear<f32>>("fc1").unwrap().out_features(), 4);
    assert!(s.get_named::<ReLU<f32>>("fc1").is_none());
    let costs = s.named_costs(&[3]).unwrap();
    assert_eq!(costs[2].0, "head");
    assert_eq!(costs[2].1.params, 10);
}

#[test]
fn bad_or_taken_names_are_typed_errors() {
    let mut s = Sequential::<f32>::new().with_named("a", lin(2, 2)).unwrap();
    for bad in ["a", "", "3", "x.y"] {
        let e = s.push_named(bad, lin(2, 2)).unwrap_err();
        assert!(
            matches!(&e, CoreError::InvalidConfig { .. }) && e.to_string().contains("name"),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(s.len(), 1);
}

#[test]
fn insert_renumbers_index_names_only() {
    let mut s = Sequential::<f32>::new()
        .with(lin(2, 2))
        .with_named("mid", ReLU::new())
        .unwrap()
        .with(lin(2, 2));
    assert_eq!(s.names(), ["0", "mid", "2"]);
    s.insert_boxed(0, Box::new(ReLU::new())).unwrap();
    assert_eq!(s.names(), ["0", "1", "mid", "3"]);
    assert!(s.get::<Linear<f32>>(3).is_some());
    assert!(s.insert_boxed(9, Box::new(ReLU::new())).is_err());
}
