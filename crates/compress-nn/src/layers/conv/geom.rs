//! Convolution geometry shared by the im2col and depthwise kernels.

use super::Conv2dConfig;

/// Sizes of one convolution on one image, all in elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    /// Input height and width.
    pub(crate) h: usize,
    pub(crate) w: usize,
    /// Output height and width.
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
}

impl Geom {
    pub(crate) fn new(cfg: &Conv2dConfig, h: usize, w: usize, oh: usize, ow: usize) -> Self {
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

    /// Output positions per channel.
    pub(crate) fn out_len(&self) -> usize {
        self.oh * self.ow
    }

    /// Input row offset of kernel row `i` (input row = output row * sh + offset).
    pub(crate) fn off_h(&self, i: usize) -> isize {
        (i * self.dh) as isize - self.ph as isize
    }

    /// Input column offset of kernel column `j`.
    pub(crate) fn off_w(&self, j: usize) -> isize {
        (j * self.dw) as isize - self.pw as isize
    }

    /// Output rows whose input row for kernel row `i` lies inside the image.
    pub(crate) fn rows(&self, i: usize) -> (usize, usize) {
        valid_range(self.h, self.oh, self.sh, self.off_h(i))
    }

    /// Output columns whose input column for kernel column `j` lies inside the image.
    pub(crate) fn cols(&self, j: usize) -> (usize, usize) {
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
