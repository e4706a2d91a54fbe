//! Fixture access shared by the integration tests.

use std::path::PathBuf;

use ndarray::{Array2, ArrayD, IxDyn};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

/// The tiny BERT fixture directory.
pub(crate) fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")
}

/// The reference tensors (`make_fixture.py`).
pub(crate) struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub(crate) fn load() -> Self {
        let bytes = std::fs::read(fixture_dir().join("reference.safetensors")).unwrap();
        Self { bytes }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    /// An f64 tensor.
    pub(crate) fn f64(&self, name: &str) -> ArrayD<f64> {
        let st = self.view();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F64, "{name}");
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(IxDyn(t.shape()), v).unwrap()
    }

    /// An i64 matrix as usize.
    pub(crate) fn ids(&self, name: &str) -> Array2<usize> {
        let st = self.view();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
            .collect();
        Array2::from_shape_vec((t.shape()[0], t.shape()[1]), v).unwrap()
    }
}

/// Largest absolute difference.
pub(crate) fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
