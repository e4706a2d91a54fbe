//! im2col / col2im for the general (GEMM) convolution path.
//!
//! For one image and one group of `c` channels, `cols` is `[c * kh * kw, oh * ow]`
//! row-major: row `(ch * kh + i) * kw + j` holds, for every output position, the input
//! pixel under kernel tap `(i, j)` of channel `ch` (zero in the padding).

use compress_core::Float;

use super::geom::{Geom, src};

/// Fills `cols` (`[c * kh * kw, oh * ow]`) from `x` (`c` planes of `h * w`).
pub(crate) fn im2col<F: Float>(x: &[F], c: usize, g: &Geom, cols: &mut [F]) {
    let (plane_len, l) = (g.h * g.w, g.out_len());
    debug_assert!(x.len() >= c * plane_len && cols.len() >= c * g.kh * g.kw * l);
    for ch in 0..c {
        let plane = &x[ch * plane_len..(ch + 1) * plane_len];
        for i in 0..g.kh {
            let (r0, r1) = g.rows(i);
            let off_h = g.off_h(i);
            for j in 0..g.kw {
                let (q0, q1) = g.cols(j);
                let off_w = g.off_w(j);
                let row = &mut cols[((ch * g.kh + i) * g.kw + j) * l..][..l];
                row[..r0 * g.ow].fill(F::zero());
                row[r1 * g.ow..].fill(F::zero());
                for o in r0..r1 {
                    let src_row = &plane[src(o, g.sh, off_h) * g.w..][..g.w];
                    let dst = &mut row[o * g.ow..(o + 1) * g.ow];
                    dst[..q0].fill(F::zero());
                    dst[q1..].fill(F::zero());
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

/// Adds `cols` (`[c * kh * kw, oh * ow]`) back into `dx` (`c` planes of `h * w`):
/// the adjoint of [`im2col`].
pub(crate) fn col2im_add<F: Float>(cols: &[F], c: usize, g: &Geom, dx: &mut [F]) {
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
