//! Model statistics: parameters, non-zeros, sparsity and bytes at a storage precision.

use crate::{Float, Module, Param, ParamKind, ParamPath, TensorExt};

/// How parameters are stored, for byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (f16 or bf16).
    F16,
    /// 64-bit floats.
    F64,
    /// Packed integers of the given width (1..=8 bits), rounded up to whole bytes per tensor.
    Bits(u32),
}

impl Precision {
    /// Bytes to store `n` values (packed, rounded up to a whole byte).
    pub fn bytes_for(self, n: usize) -> usize {
        match self {
            Self::F32 => 4 * n,
            Self::F16 => 2 * n,
            Self::F64 => 8 * n,
            Self::Bits(b) => (n * b as usize).div_ceil(8),
        }
    }
}

/// Parameter statistics of a model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModelStats {
    /// Scalars in trainable parameters (weights, biases, norms; not buffers).
    pub params: usize,
    /// Of those, how many are not zero in the effective value.
    pub nonzero: usize,
}

impl ModelStats {
    /// Collects statistics from any [`Module`].
    ///
    /// ```
    /// use compress_core::{ModelStats, Param, ParamDict, Precision};
    /// use ndarray::ArrayD;
    /// let mut m = ParamDict::<f32>::new();
    /// m.insert("w", Param::new(ArrayD::from_shape_vec(vec![4], vec![0.0, 1.0, 0.0, 2.0]).unwrap()));
    /// let s = ModelStats::of(&m);
    /// assert_eq!((s.params, s.nonzero), (4, 2));
    /// assert_eq!(s.sparsity(), 0.5);
    /// assert_eq!(s.bytes(Precision::F32), 16);
    /// ```
    pub fn of<F: Float, M: Module<F> + ?Sized>(model: &M) -> Self {
        let mut s = Self::default();
        model.visit(
            &mut ParamPath::root(),
            &mut |_: &ParamPath, p: &Param<F>| {
                if p.kind() != ParamKind::Buffer {
                    s.params += p.len();
                    s.nonzero += p.effective().count_nonzero();
                }
            },
        );
        s
    }

    /// Fraction of zero parameters, `0` for a model without parameters.
    pub fn sparsity(&self) -> f64 {
        if self.params == 0 {
            0.0
        } else {
            1.0 - self.nonzero as f64 / self.params as f64
        }
    }

    /// Bytes of dense storage at `precision`.
    pub fn bytes(&self, precision: Precision) -> usize {
        precision.bytes_for(self.params)
    }
}
