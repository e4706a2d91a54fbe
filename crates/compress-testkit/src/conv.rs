//! The 2-D convolution by its definition, for tests of the fast convolution paths (float
//! and integer) to compare against.

use ndarray::{ArrayD, IxDyn};

/// Stride, zero padding and dilation (each `(height, width)`) and channel groups of a
/// convolution over NCHW images, without the library's configuration type: the
/// reference knows nothing of the code it checks.
///
/// ```
/// use compress_testkit::ConvSpec;
/// let spec = ConvSpec::new((2, 2), (1, 1), (1, 1), 1);
/// // Output (0, 0) of a 3x3 kernel: tap (0, 0) is in the padding, tap (1, 1) reads pixel (0, 0).
/// assert_eq!(spec.tap((0, 0), (0, 0), (5, 5)), None);
/// assert_eq!(spec.tap((0, 0), (1, 1), (5, 5)), Some((0, 0)));
/// assert_eq!(spec.output_hw((5, 5), (3, 3)), Some((3, 3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Stride.
    pub stride: (usize, usize),
    /// Zero padding on each side.
    pub padding: (usize, usize),
    /// Dilation.
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
}

impl ConvSpec {
    /// A specification from its four fields.
    pub fn new(
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Self {
        Self {
            stride,
            padding,
            dilation,
            groups,
        }
    }

    /// The input pixel `(row, column)` that kernel tap `tap` reads for output position
    /// `out` in an image of `hw` pixels: `out * stride + tap * dilation - padding` per
    /// axis, or `None` where that falls in the padding.
    pub fn tap(
        &self,
        out: (usize, usize),
        tap: (usize, usize),
        hw: (usize, usize),
    ) -> Option<(usize, usize)> {
        let axis = |o: usize, k: usize, s: usize, d: usize, p: usize, n: usize| {
            let i = (o * s + k * d) as isize - p as isize;
            (i >= 0 && (i as usize) < n).then_some(i as usize)
        };
        let (s, d, p) = (self.stride, self.dilation, self.padding);
        Some((
            axis(out.0, tap.0, s.0, d.0, p.0, hw.0)?,
            axis(out.1, tap.1, s.1, d.1, p.1, hw.1)?,
        ))
    }

    /// The output size for an input of `hw` pixels and a `kernel`:
    /// `(n + 2 p - d (k - 1) - 1) / s + 1` per axis, or `None` when the dilated kernel does
    /// not fit in the padded input.
    pub fn output_hw(&self, hw: (usize, usize), kernel: (usize, usize)) -> Option<(usize, usize)> {
        let axis = |n: usize, k: usize, s: usize, p: usize, d: usize| {
            let (span, padded) = (d * (k.max(1) - 1) + 1, n + 2 * p);
            (padded >= span).then(|| (padded - span) / s + 1)
        };
        let (s, p, d) = (self.stride, self.padding, self.dilation);
        Some((
            axis(hw.0, kernel.0, s.0, p.0, d.0)?,
            axis(hw.1, kernel.1, s.1, p.1, d.1)?,
        ))
    }

    /// The convolution of `x` (`[n, c, h, w]`) with `w` (`[o, c / groups, kh, kw]`) plus
    /// `b` (`[o]`), in `f64`: for every output, the bias and then the products of the taps
    /// inside the image, in (input channel, kernel row, kernel column) order.
    ///
    /// # Panics
    ///
    /// If the shapes do not fit together or the kernel does not fit in the padded input.
    pub fn conv2d(&self, x: &ArrayD<f64>, w: &ArrayD<f64>, b: Option<&ArrayD<f64>>) -> ArrayD<f64> {
        let &[n, c, h, wd] = x.shape() else {
            panic!("reference conv2d: input {:?} is not NCHW", x.shape())
        };
        let &[o, cg, kh, kw] = w.shape() else {
            panic!(
                "reference conv2d: weight {:?} is not [o, c/g, kh, kw]",
                w.shape()
            )
        };
        assert_eq!(cg * self.groups, c, "reference conv2d: channels per group");
        let (oh, ow) = self
            .output_hw((h, wd), (kh, kw))
            .expect("reference conv2d: the kernel fits");
        let og = o / self.groups;
        let mut y = ArrayD::zeros(IxDyn(&[n, o, oh, ow]));
        for bi in 0..n {
            for oc in 0..o {
                let grp = oc / og;
                for r in 0..oh {
                    for q in 0..ow {
                        let mut s = b.map_or(0.0, |b| b[oc]);
                        for ci in 0..cg {
                            for i in 0..kh {
                                for j in 0..kw {
                                    if let Some((ih, iw)) = self.tap((r, q), (i, j), (h, wd)) {
                                        s += w[[oc, ci, i, j]] * x[[bi, grp * cg + ci, ih, iw]];
                                    }
                                }
                            }
                        }
                        y[[bi, oc, r, q]] = s;
                    }
                }
            }
        }
        y
    }
}
