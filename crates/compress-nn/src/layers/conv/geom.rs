//! Convolution geometry shared by the im2col and depthwise kernels (and by `compress-quant`'s
//! integer convolution, through [`ConvGeometry`] and the public im2col functions).

use compress_core::Result;

use super::Conv2dConfig;

/// Sizes of one convolution on one image, all in elements: input and output height and
/// width, kernel, stride, padding and dilation per axis.
///
/// ```
/// use compress_nn::{Conv2dConfig, ConvGeometry};
/// let g = ConvGeometry::new(&Conv2dConfig::new(3, 8, 3).padding(1).stride(2), 9, 9).unwrap();
/// assert_eq!((g.oh, g.ow, g.out_len()), (5, 5, 25));
/// // Output row 0 reads input rows -1..=1: kernel row 0 is in the padding there.
/// assert_eq!(g.rows(0), (1, 5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Vertical padding (each side).
    pub ph: usize,
    /// Horizontal padding (each side).
    pub pw: usize,
    /// Vertical dilation.
    pub dh: usize,
    /// Horizontal dilation.
    pub dw: usize,
}

impl ConvGeometry {
    /// The geometry of `cfg` on an `h x w` input.
    ///
    /// # Errors
    ///
    /// As [`Conv2dConfig::output_hw`]: an invalid configuration, or a dilated kernel larger
    /// than the padded input.
    pub fn new(cfg: &Conv2dConfig, h: usize, w: usize) -> Result<Self> {
        let (oh, ow) = cfg.output_hw(h, w)?;
        Ok(Self::with_output(cfg, h, w, oh, ow))
    }

    /// The geometry with an output size already computed by [`Conv2dConfig::output_hw`].
    pub(crate) fn with_output(
        cfg: &Conv2dConfig,
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
    ) -> Self {
        Self {
            h,
            w,
            oh,
            ow,
            kh: cfg.kernel.0,
            kw: cfg.kernel.1,
            sh: cfg.stride.0,
            sw: cfg.stride.1,
            ph: cfg.padding.0,
            pw: cfg.padding.1,
            dh: cfg.dilation.0,
            dw: cfg.dilation.1,
        }
    }

    /// Output positions per channel (`oh * ow`).
    pub fn out_len(&self) -> usize {
        self.oh * self.ow
    }

    /// Kernel taps (`kh * kw`).
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Input row offset of kernel row `i` (input row = output row * sh + offset).
    pub fn off_h(&self, i: usize) -> isize {
        (i * self.dh) as isize - self.ph as isize
    }

    /// Input column offset of kernel column `j`.
    pub fn off_w(&self, j: usize) -> isize {
        (j * self.dw) as isize - self.pw as isize
    }

    /// Output rows `[lo, hi)` whose input row for kernel row `i` lies inside the image.
    pub fn rows(&self, i: usize) -> (usize, usize) {
        valid_range(self.h, self.oh, self.sh, self.off_h(i))
    }

    /// Output columns `[lo, hi)` whose input column for kernel column `j` lies inside the
    /// image.
    pub fn cols(&self, j: usize) -> (usize, usize) {
        valid_range(self.w, self.ow, self.sw, self.off_w(j))
    }
}

/// Output indices `o` in `[lo, hi)` with `0 <= o * s + off < n`, clipped to `[0, out)`.
pub(crate) fn valid_range(n: usize, out: usize, s: usize, off: isize) -> (usize, usize) {
    let s_i = s as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off + s_i - 1) / s_i) as usize
    };
    let last = n as isize - 1 - off;
    if last < 0 {
        return (0, 0);
    }
    let hi = out.min((last / s_i) as usize + 1);
    if lo >= hi { (0, 0) } else { (lo, hi) }
}

/// Input index `o * s + off` for an output index known to be in the valid range.
#[inline]
pub(crate) fn src(o: usize, s: usize, off: isize) -> usize {
    ((o * s) as isize + off) as usize
}
