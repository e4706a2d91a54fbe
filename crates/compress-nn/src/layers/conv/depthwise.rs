//! Direct depthwise convolution (`groups == in_channels`): no im2col, each output plane
//! is a sum of shifted, scaled copies of one input plane, accumulated row by row in cache.

use compress_core::Float;

use super::geom::{Geom, src};

/// Shapes of a depthwise call: batch `n`, input channels `c`, channel multiplier `mult`
/// (output channel `o` reads input channel `o / mult`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Depthwise {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) mult: usize,
}

impl Depthwise {
    /// Appends to `out` (`[n, c * mult, oh, ow]`, written plane by plane so each is hot in
    /// cache while it is accumulated) the depthwise convolution of `x` (`[n, c, h, w]`) with
    /// `w` (`[c * mult, 1, kh, kw]`) plus `bias`.
    pub(crate) fn forward<F: Float>(
        &self,
        x: &[F],
        w: &[F],
        bias: Option<&[F]>,
        g: &Geom,
        out: &mut Vec<F>,
    ) {
        let (pin, pout, kk) = (g.h * g.w, g.out_len(), g.kh * g.kw);
        let oc = self.c * self.mult;
        for b in 0..self.n {
            for o in 0..oc {
                let ch = o / self.mult;
                let xp = &x[(b * self.c + ch) * pin..][..pin];
                let start = out.len();
                out.resize(start + pout, bias.map_or(F::zero(), |bs| bs[o]));
                let op = &mut out[start..];
                forward_plane(xp, &w[o * kk..(o + 1) * kk], g, op);
            }
        }
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

/// One plane: `out += sum over taps of w[i, j] * shifted x`.
fn forward_plane<F: Float>(x: &[F], wk: &[F], g: &Geom, out: &mut [F]) {
    if g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 {
        forward_plane_3x3(x, wk, g, out);
        return;
    }
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
            for o in r0..r1 {
                let src_row = &x[src(o, g.sh, off_h) * g.w..][..g.w];
                let dst = &mut out[o * g.ow + q0..o * g.ow + q1];
                if g.sw == 1 {
                    let s0 = src(q0, 1, off_w);
                    for (d, &v) in dst.iter_mut().zip(&src_row[s0..s0 + (q1 - q0)]) {
                        *d += wv * v;
                    }
                } else {
                    for (q, d) in dst.iter_mut().enumerate() {
                        *d += wv * src_row[src(q0 + q, g.sw, off_w)];
                    }
                }
            }
        }
    }
}

/// The 3x3, stride-1, dilation-1 case: each output row reads its (up to) three input rows
/// once and does all their multiply-adds per element in one pass.
fn forward_plane_3x3<F: Float>(x: &[F], wk: &[F], g: &Geom, out: &mut [F]) {
    // Columns where all three horizontal taps are inside the row.
    let (a0, a1) = g.cols(0);
    let (c0, c1) = g.cols(2);
    let (lo, hi) = (a0.max(c0), a1.min(c1).max(a0.max(c0)));
    let len = hi - lo;
    let offs = [g.off_w(0), g.off_w(1), g.off_w(2)];
    for o in 0..g.oh {
        let dst = &mut out[o * g.ow..(o + 1) * g.ow];
        let mut rows: [Option<&[F]>; 3] = [None; 3];
        for (i, r) in rows.iter_mut().enumerate() {
            let (r0, r1) = g.rows(i);
            if (r0..r1).contains(&o) {
                *r = Some(&x[src(o, 1, g.off_h(i)) * g.w..][..g.w]);
            }
        }
        if len > 0 {
            // Interior: fused taps, equal-length slices so the loop vectorizes.
            let starts = offs.map(|off| src(lo, 1, off));
            let d = &mut dst[lo..hi];
            match rows {
                [Some(r0), Some(r1), Some(r2)] => {
                    let (p0, p1, p2) = (
                        window(r0, starts[0], len),
                        window(r0, starts[1], len),
                        window(r0, starts[2], len),
                    );
                    let (q0, q1, q2) = (
                        window(r1, starts[0], len),
                        window(r1, starts[1], len),
                        window(r1, starts[2], len),
                    );
                    let (s0, s1, s2) = (
                        window(r2, starts[0], len),
                        window(r2, starts[1], len),
                        window(r2, starts[2], len),
                    );
                    let w: [F; 9] = std::array::from_fn(|k| wk[k]);
                    for k in 0..len {
                        d[k] += w[0] * p0[k]
                            + w[1] * p1[k]
                            + w[2] * p2[k]
                            + (w[3] * q0[k] + w[4] * q1[k] + w[5] * q2[k])
                            + (w[6] * s0[k] + w[7] * s1[k] + w[8] * s2[k]);
                    }
                }
                _ => {
                    for (i, row) in rows.iter().enumerate() {
                        let Some(row) = row else { continue };
                        let (t0, t1, t2) = (
                            window(row, starts[0], len),
                            window(row, starts[1], len),
                            window(row, starts[2], len),
                        );
                        let (w0, w1, w2) = (wk[i * 3], wk[i * 3 + 1], wk[i * 3 + 2]);
                        for k in 0..len {
                            d[k] += w0 * t0[k] + w1 * t1[k] + w2 * t2[k];
                        }
                    }
                }
            }
        }
        // Border columns, tap by tap.
        for (i, row) in rows.iter().enumerate() {
            let Some(row) = row else { continue };
            for (j, &off_w) in offs.iter().enumerate() {
                let wv = wk[i * 3 + j];
                let (q0, q1) = g.cols(j);
                for q in (q0..q1).filter(|&q| q < lo || q >= hi) {
                    dst[q] += wv * row[src(q, 1, off_w)];
                }
            }
        }
    }
}

/// `row[start..start + len]`.
#[inline]
fn window<F>(row: &[F], start: usize, len: usize) -> &[F] {
    &row[start..start + len]
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
