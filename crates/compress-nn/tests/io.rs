//! safetensors save/load round trips and errors.

use std::path::PathBuf;

use compress_core::{CoreError, Layer, Mode, Module, Param};
use compress_nn::io::{
    load_safetensors, load_safetensors_bytes, save_safetensors, to_safetensors_bytes,
};
use compress_nn::models::small_cnn;
use compress_nn::{Linear, NnError, Sequential};
use compress_testkit::Affine;
use ndarray::ArrayD;
use rand::{SeedableRng, rngs::StdRng};
use safetensors::tensor::{Dtype, TensorView};

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "compress-nn-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_through_a_file_keeps_outputs() {
    let dir = temp_dir("io");
    let path = dir.join("cnn.safetensors");
    let mut a = small_cnn::<f32, _>(1, 8, 10, &mut StdRng::seed_from_u64(1));
    // Move the running statistics away from their initial values.
    a.forward(&ArrayD::from_elem(vec![4, 1, 8, 8], 0.5), Mode::Train)
        .unwrap();
    save_safetensors(&a, &path).unwrap();
    let mut b = small_cnn::<f32, _>(1, 8, 10, &mut StdRng::seed_from_u64(2));
    let unused = load_safetensors(&mut b, &path).unwrap();
    assert!(unused.is_empty());
    assert_eq!(a.state_dict(), b.state_dict());
    let x = ArrayD::from_shape_fn(vec![3, 1, 8, 8], |d| (d[2] * d[3]) as f32 / 64.0);
    assert_eq!(
        a.forward(&x, Mode::Eval).unwrap(),
        b.forward(&x, Mode::Eval).unwrap()
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f64_models_store_f64_and_f32_files_load_into_f64() {
    let mut rng = StdRng::seed_from_u64(3);
    let a = Linear::<f64>::new(3, 2, true, &mut rng);
    let bytes = to_safetensors_bytes(&a).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("weight").unwrap().dtype(), Dtype::F64);
    assert_eq!(st.tensor("bias").unwrap().shape(), &[2]);
    let a32 = Linear::<f32>::new(3, 2, true, &mut rng);
    let bytes32 = to_safetensors_bytes(&a32).unwrap();
    let mut b = Linear::<f64>::new(3, 2, true, &mut rng);
    load_safetensors_bytes(&mut b, &bytes32, "mem").unwrap();
    assert_eq!(
        b.weight.value().mapv(|v| v as f32),
        a32.weight.value().clone()
    );
}

#[test]
fn effective_values_are_saved() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut a = Linear::<f32>::new(3, 2, false, &mut rng);
    a.weight
        .push_parametrization(Box::new(Affine::scale(0.0)))
        .unwrap();
    let mut b = Linear::<f32>::new(3, 2, false, &mut rng);
    load_safetensors_bytes(&mut b, &to_safetensors_bytes(&a).unwrap(), "mem").unwrap();
    assert!(b.weight.value().iter().all(|&v| v == 0.0));
}

#[test]
fn mismatches_are_errors_naming_the_path() {
    let mut rng = StdRng::seed_from_u64(5);
    let a = Sequential::<f32>::new().with(Linear::new(3, 2, true, &mut rng));
    let bytes = to_safetensors_bytes(&a).unwrap();
    let mut wrong = Sequential::<f32>::new().with(Linear::new(4, 2, true, &mut rng));
    match load_safetensors_bytes(&mut wrong, &bytes, "mem").unwrap_err() {
        NnError::Core(CoreError::ShapeMismatch {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, "0.weight");
            assert_eq!((expected, actual), (vec![2, 4], vec![2, 3]));
        }
        e => panic!("{e}"),
    }
    let mut bigger = Sequential::<f32>::new()
        .with(Linear::new(3, 2, true, &mut rng))
        .with(Linear::new(2, 2, true, &mut rng));
    match load_safetensors_bytes(&mut bigger, &bytes, "mem").unwrap_err() {
        NnError::Core(CoreError::MissingParam { path }) => assert_eq!(path, "1.weight"),
        e => panic!("{e}"),
    }
    // Extra tensors are reported, not loaded.
    let mut smaller = compress_core::ParamDict::<f32>::new();
    smaller.insert("0.bias", Param::new(ArrayD::zeros(vec![2])));
    let unused = load_safetensors_bytes(&mut smaller, &bytes, "mem").unwrap();
    assert_eq!(unused, vec!["0.weight".to_string()]);
    // Integer tensors cannot be loaded into float parameters.
    let data = [1u8, 0, 0, 0, 2, 0, 0, 0];
    let view = TensorView::new(Dtype::I32, vec![2], &data).unwrap();
    let ints = safetensors::serialize([("0.bias", view)], None).unwrap();
    match load_safetensors_bytes(&mut smaller, &ints, "ints.safetensors").unwrap_err() {
        NnError::Format { path, reason } => {
            assert_eq!(path, "ints.safetensors");
            assert!(
                reason.contains("0.bias") && reason.contains("I32"),
                "{reason}"
            );
        }
        e => panic!("{e}"),
    }
    // Garbage and truncated data.
    assert!(matches!(
        load_safetensors_bytes(&mut smaller, b"not a file", "junk").unwrap_err(),
        NnError::Format { .. }
    ));
    assert!(matches!(
        load_safetensors_bytes(&mut wrong, &bytes[..bytes.len() - 3], "cut").unwrap_err(),
        NnError::Format { .. }
    ));
    let missing = std::env::temp_dir().join("compress-nn-no-such-file.safetensors");
    match load_safetensors(&mut wrong, &missing).unwrap_err() {
        NnError::Io { path, .. } => assert!(path.contains("no-such-file")),
        e => panic!("{e}"),
    }
}
