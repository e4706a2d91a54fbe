//! im2col / col2im for the general (GEMM) convolution path, and the channels-last im2col
//! of the integer convolution.
//!
//! [`im2col`]: for one image and one group of `c` channels (NCHW planes), `cols` is
//! `[c * kh * kw, oh * ow]` row-major: row `(ch * kh + i) * kw + j` holds, for every output
//! position, the input pixel under kernel tap `(i, j)` of channel `ch` (`pad` in the
//! padding). [`im2col_nhwc`]: for one channels-last image, row `p` of the output holds the
//! `kh * kw * cn` inputs of output position `p` in `(i, j, ch)` order, so every tap is one
//! contiguous copy of the pixel's channels.
//!
//! Both are generic over the element (`f32` for the float layers, `u8` codes with their zero
//! point as `pad` for `compress-quant`'s `QConv2d`).

use compress_core::Float;

use super::geom::{ConvGeometry, src};

/// Fills `cols` (`[c * kh * kw, oh * ow]`, see the module docs) from `x` (`c` planes of
/// `h * w`), writing `pad` where a tap falls in the padding.
///
/// ```
/// use compress_nn::{Conv2dConfig, ConvGeometry, im2col};
/// // One 2x2 channel, 2x2 kernel, padding 1: 3x3 outputs.
/// let g = ConvGeometry::new(&Conv2dConfig::new(1, 1, 2).padding(1), 2, 2).unwrap();
/// let mut cols = vec![0u8; 4 * 9];
/// im2col(&[1, 2, 3, 4], 1, &g, 9, &mut cols);
/// // Tap (0, 0) reads the pixel up-left of each output: only the last 2x2 outputs see pixels.
/// assert_eq!(&cols[..9], &[9, 9, 9, 9, 1, 2, 9, 3, 4]);
/// ```
///
/// # Panics
///
/// If `x` holds fewer than `c * h * w` or `cols` fewer than `c * kh * kw * oh * ow` elements.
pub fn im2col<T: Copy>(x: &[T], c: usize, g: &ConvGeometry, pad: T, cols: &mut [T]) {
    let (plane_len, l) = (g.h * g.w, g.out_len());
    assert!(
        x.len() >= c * plane_len && cols.len() >= c * g.taps() * l,
        "im2col: input or columns too short"
    );
    for ch in 0..c {
        let plane = &x[ch * plane_len..(ch + 1) * plane_len];
        for i in 0..g.kh {
            let (r0, r1) = g.rows(i);
            let off_h = g.off_h(i);
            for j in 0..g.kw {
                let (q0, q1) = g.cols(j);
                let off_w = g.off_w(j);
                let row = &mut cols[((ch * g.kh + i) * g.kw + j) * l..][..l];
                row[..r0 * g.ow].fill(pad);
                row[r1 * g.ow..].fill(pad);
                for o in r0..r1 {
                    let src_row = &plane[src(o, g.sh, off_h) * g.w..][..g.w];
                    let dst = &mut row[o * g.ow..(o + 1) * g.ow];
                    dst[..q0].fill(pad);
                    dst[q1..].fill(pad);
                    if q0 == q1 {
                        continue;
                    }
                    if g.sw == 1 {
                        let s0 = src(q0, 1, off_w);
                        dst[q0..q1].copy_from_slice(&src_row[s0..s0 + (q1 - q0)]);
                    } else {
                        for (q, d) in dst[q0..q1].iter_mut().enumerate() {
                            *d = src_row[src(q0 + q, g.sw, off_w)];
                        }
                    }
                }
            }
        }
    }
}

/// Channels-last im2col: from `x`, one image `[h, w, c]` (NHWC), fills row `p` (stride `lda`)
/// of `out` for every output position `p = oy * ow + ox` with the inputs of channels
/// `c0..c0 + cn` under each kernel tap, in `(i, j, ch)` order (`pad` in the padding). The
/// `lda - kh * kw * cn` trailing elements of each row are left as they are. Without
/// dilation and with all channels (`c0 == 0`, `cn == c`), the `kw` taps of a kernel row that
/// lie inside the image are one contiguous copy of `kw * c` elements.
///
/// ```
/// use compress_nn::{Conv2dConfig, ConvGeometry, im2col_nhwc};
/// // A 2x2 image with 2 channels (pixel values 10 * pixel + channel), 2x2 kernel, no padding.
/// let x = [0u8, 1, 10, 11, 20, 21, 30, 31];
/// let g = ConvGeometry::new(&Conv2dConfig::new(2, 1, 2), 2, 2).unwrap();
/// let mut out = vec![0u8; 8];
/// im2col_nhwc(&x, 2, (0, 2), &g, 0, 8, &mut out);
/// assert_eq!(out, x); // one output position: the whole image in (i, j, ch) order
/// ```
///
/// # Panics
///
/// If `c0 + cn > c`, `lda < kh * kw * cn`, `x` holds fewer than `h * w * c` elements or `out`
/// fewer than `oh * ow * lda`.
#[allow(clippy::too_many_arguments)]
pub fn im2col_nhwc<T: Copy>(
    x: &[T],
    c: usize,
    (c0, cn): (usize, usize),
    g: &ConvGeometry,
    pad: T,
    lda: usize,
    out: &mut [T],
) {
    let k = g.taps() * cn;
    assert!(
        c0 + cn <= c && lda >= k,
        "im2col_nhwc: channels or row stride"
    );
    assert!(
        x.len() >= g.h * g.w * c && out.len() >= g.out_len() * lda,
        "im2col_nhwc: input or output too short"
    );
    let whole = c0 == 0 && cn == c && g.dw == 1;
    let kwc = g.kw * cn;
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let row = &mut out[(oy * g.ow + ox) * lda..][..k];
            // First input column of the kernel, and whether the whole kernel row is inside.
            let ix0 = (ox * g.sw) as isize - g.pw as isize;
            let inside_w = ix0 >= 0 && ix0 as usize + g.kw <= g.w;
            for i in 0..g.kh {
                let dst = &mut row[i * kwc..(i + 1) * kwc];
                let iy = (oy * g.sh) as isize + g.off_h(i);
                if iy < 0 || iy as usize >= g.h {
                    dst.fill(pad);
                    continue;
                }
                let line = &x[iy as usize * g.w * c..(iy as usize + 1) * g.w * c];
                if whole && inside_w {
                    copy_run(dst, &line[ix0 as usize * c..][..kwc]);
                    continue;
                }
                for (j, tap) in dst.chunks_exact_mut(cn).enumerate() {
                    let ix = (ox * g.sw) as isize + g.off_w(j);
                    if ix < 0 || ix as usize >= g.w {
                        tap.fill(pad);
                    } else {
                        copy_run(tap, &line[ix as usize * c + c0..][..cn]);
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, with the short runs of few-channel images (a 3-wide kernel
/// row of one channel is 3 elements) copied inline instead of through a `memmove` call each.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => {
                    let d: &mut [T; $n] = dst.try_into().expect("length checked");
                    *d = src.try_into().expect("same length");
                })*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 12 16);
}

/// Adds `cols` (`[c * kh * kw, oh * ow]`) back into `dx` (`c` planes of `h * w`):
/// the adjoint of [`im2col`].
pub(crate) fn col2im_add<F: Float>(cols: &[F], c: usize, g: &ConvGeometry, dx: &mut [F]) {
    let (plane_len, l) = (g.h * g.w, g.out_len());
    for ch in 0..c {
        let plane = &mut dx[ch * plane_len..(ch + 1) * plane_len];
        for i in 0..g.kh {
            let (r0, r1) = g.rows(i);
            let off_h = g.off_h(i);
            for j in 0..g.kw {
                let (q0, q1) = g.cols(j);
                if q0 == q1 {
                    continue;
                }
                let off_w = g.off_w(j);
                let row = &cols[((ch * g.kh + i) * g.kw + j) * l..][..l];
                for o in r0..r1 {
                    let dst_row = &mut plane[src(o, g.sh, off_h) * g.w..][..g.w];
                    let s = &row[o * g.ow + q0..o * g.ow + q1];
                    if g.sw == 1 {
                        let d0 = src(q0, 1, off_w);
                        for (d, &v) in dst_row[d0..d0 + (q1 - q0)].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (q, &v) in s.iter().enumerate() {
                            dst_row[src(q0 + q, g.sw, off_w)] += v;
                        }
                    }
                }
            }
        }
    }
}
