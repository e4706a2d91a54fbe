//! Direct depthwise convolution (`groups == in_channels`): no im2col, each output plane
//! is a sum of shifted, scaled copies of one input plane, accumulated row by row in cache.
//! The forward loop lives in [`super::kernels`].

use compress_core::Float;

use super::geom::{Geom, src};
use super::kernels::{DwShape, depthwise_forward};

/// Shapes of a depthwise call: batch `n`, input channels `c`, channel multiplier `mult`
/// (output channel `o` reads input channel `o / mult`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Depthwise {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) mult: usize,
}

impl Depthwise {
    /// Appends to `out` (`[n, c * mult, oh, ow]`) the depthwise convolution of `x`
    /// (`[n, c, h, w]`) with `w` (`[c * mult, 1, kh, kw]`) plus `bias`: see
    /// [`kernels::depthwise_forward`](super::kernels::depthwise_forward).
    pub(crate) fn forward<F: Float>(
        &self,
        x: &[F],
        w: &[F],
        bias: Option<&[F]>,
        g: &Geom,
        out: &mut Vec<F>,
    ) {
        let s = DwShape {
            n: self.n,
            c: self.c,
            mult: self.mult,
        };
        depthwise_forward(s, x, w, bias, g, out);
    }

    /// Adds the input gradient to `dx` (`[n, c, h, w]`) and the weight gradient to `dw`
    /// (`[c * mult, 1, kh, kw]`), given the output gradient `gout`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward<F: Float>(
        &self,
        x: &[F],
        w: &[F],
        gout: &[F],
        g: &Geom,
        dx: &mut [F],
        dw: &mut [F],
    ) {
        let (pin, pout, kk) = (g.h * g.w, g.out_len(), g.kh * g.kw);
        let oc = self.c * self.mult;
        for b in 0..self.n {
            for o in 0..oc {
                let ch = o / self.mult;
                let xp = &x[(b * self.c + ch) * pin..][..pin];
                let dxp = &mut dx[(b * self.c + ch) * pin..][..pin];
                let gp = &gout[(b * oc + o) * pout..][..pout];
                backward_plane(
                    xp,
                    &w[o * kk..(o + 1) * kk],
                    gp,
                    g,
                    dxp,
                    &mut dw[o * kk..(o + 1) * kk],
                );
            }
        }
    }
}

/// One plane of the backward pass.
fn backward_plane<F: Float>(x: &[F], wk: &[F], gout: &[F], g: &Geom, dx: &mut [F], dwk: &mut [F]) {
    for i in 0..g.kh {
        let (r0, r1) = g.rows(i);
        let off_h = g.off_h(i);
        for j in 0..g.kw {
            let (q0, q1) = g.cols(j);
            if q0 == q1 {
                continue;
            }
            let wv = wk[i * g.kw + j];
            let off_w = g.off_w(j);
            let mut acc = F::zero();
            for o in r0..r1 {
                let base = src(o, g.sh, off_h) * g.w;
                let gs = &gout[o * g.ow + q0..o * g.ow + q1];
                if g.sw == 1 {
                    let s0 = base + src(q0, 1, off_w);
                    let xs = &x[s0..s0 + (q1 - q0)];
                    acc += gs
                        .iter()
                        .zip(xs)
                        .fold(F::zero(), |a, (&gv, &xv)| a + gv * xv);
                    for (d, &gv) in dx[s0..s0 + (q1 - q0)].iter_mut().zip(gs) {
                        *d += wv * gv;
                    }
                } else {
                    for (q, &gv) in gs.iter().enumerate() {
                        let k = base + src(q0 + q, g.sw, off_w);
                        acc += gv * x[k];
                        dx[k] += wv * gv;
                    }
                }
            }
            dwk[i * g.kw + j] += acc;
        }
    }
}
