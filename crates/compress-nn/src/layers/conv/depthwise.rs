//! Direct depthwise convolution (`groups == in_channels`): no im2col.
//!
//! Each input plane is copied once into a zero-padded scratch plane, so no tap ever needs
//! a bounds test, and every loop runs over equal-length contiguous slices of one output
//! row, which LLVM vectorises. The 3x3, stride-1 forward (any dilation) does all nine
//! multiply-adds per output element in one pass; other shapes go tap by tap over the
//! (L1-resident) output row. The backward pass scatters into a padded gradient plane and
//! keeps the weight-gradient sums in per-column lanes (an element-wise, vectorisable
//! update) that are added up once per plane.
//!
//! These bodies are `#[inline(always)]`: [`super::kernels`] compiles them once portably
//! and once per vector extension, and picks a build at run time.

use compress_core::Float;

use super::Conv2dConfig;
use super::geom::ConvGeometry;

/// Shapes of a depthwise call: batch `n`, input channels `c`, channel multiplier `mult`
/// (output channel `o` reads input channel `o / mult`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DwShape {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) mult: usize,
}

/// The operands of a depthwise call: shapes, input `x` (`[n, c, h, w]`), weight `w`
/// (`[c * mult, 1, kh, kw]`) and geometry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dw<'a, F> {
    pub(crate) s: DwShape,
    pub(crate) x: &'a [F],
    pub(crate) w: &'a [F],
    pub(crate) g: &'a ConvGeometry,
}

impl<'a, F> Dw<'a, F> {
    /// The operands of `cfg` (depthwise) on a batch of `n` images `x` with weight `w`.
    pub(crate) fn new(
        n: usize,
        cfg: &Conv2dConfig,
        x: &'a [F],
        w: &'a [F],
        g: &'a ConvGeometry,
    ) -> Self {
        let c = cfg.in_channels;
        let s = DwShape {
            n,
            c,
            mult: cfg.out_channels / c,
        };
        Self { s, x, w, g }
    }
}

/// A zero-padded copy of one input plane (`rows x cols`); without padding, the plane
/// itself is used.
struct Padded<F> {
    buf: Vec<F>,
    rows: usize,
    cols: usize,
    on: bool,
}

impl<F: Float> Padded<F> {
    #[inline(always)]
    fn new(g: &ConvGeometry) -> Self {
        let on = g.ph > 0 || g.pw > 0;
        let (rows, cols) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
        let buf = if on {
            vec![F::zero(); rows * cols]
        } else {
            Vec::new()
        };
        Self {
            buf,
            rows,
            cols,
            on,
        }
    }

    /// The padded plane of `xp` (`h x w`). The borders stay zero: only the interior is
    /// ever overwritten.
    #[inline(always)]
    fn load<'a>(&'a mut self, xp: &'a [F], g: &ConvGeometry) -> &'a [F] {
        if !self.on {
            return xp;
        }
        for (r, row) in xp.chunks_exact(g.w).enumerate() {
            self.buf[(r + g.ph) * self.cols + g.pw..][..g.w].copy_from_slice(row);
        }
        &self.buf
    }
}

/// Appends to `out` the depthwise convolution (`[n, c * mult, oh, ow]`) of `x`
/// (`[n, c, h, w]`) with `w` (`[c * mult, 1, kh, kw]`) plus `bias`.
///
/// Preconditions (the layer validated them): `x.len() == n * c * h * w`,
/// `w.len() == c * mult * kh * kw`, `bias` has `c * mult` entries, `g` holds the output
/// size given by the output-size formula.
#[inline(always)]
pub(crate) fn forward<F: Float>(a: Dw<'_, F>, bias: Option<&[F]>, out: &mut Vec<F>) {
    let Dw { s, x, w, g } = a;
    let (pin, pout, kk) = (g.h * g.w, g.out_len(), g.kh * g.kw);
    if pout == 0 || pin == 0 {
        out.resize(out.len() + s.n * s.c * s.mult * pout, F::zero());
        return;
    }
    let mut pad = Padded::new(g);
    let pcols = pad.cols;
    out.reserve(s.n * s.c * s.mult * pout);
    for b in 0..s.n {
        for ch in 0..s.c {
            let src = pad.load(&x[(b * s.c + ch) * pin..][..pin], g);
            for o in ch * s.mult..(ch + 1) * s.mult {
                let start = out.len();
                out.resize(start + pout, F::zero());
                let bv = bias.map_or(F::zero(), |bs| bs[o]);
                plane(src, pcols, &w[o * kk..][..kk], bv, g, &mut out[start..]);
            }
        }
    }
}

/// One output plane from one zero-padded input plane (`pcols` wide).
#[inline(always)]
fn plane<F: Float>(src: &[F], pcols: usize, wk: &[F], bias: F, g: &ConvGeometry, out: &mut [F]) {
    let ow = g.ow;
    if g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 {
        let (dh, dw) = (g.dh, g.dw);
        let w9: [F; 9] = std::array::from_fn(|k| wk[k]);
        for (o, orow) in out.chunks_exact_mut(ow).enumerate() {
            let r0 = &src[o * pcols..][..ow + 2 * dw];
            let r1 = &src[(o + dh) * pcols..][..ow + 2 * dw];
            let r2 = &src[(o + 2 * dh) * pcols..][..ow + 2 * dw];
            row_3x3(orow, [r0, r1, r2], &w9, Some(bias), dw);
        }
        return;
    }
    for (o, orow) in out.chunks_exact_mut(ow).enumerate() {
        orow.fill(bias);
        for i in 0..g.kh {
            let prow = &src[(o * g.sh + i * g.dh) * pcols..][..pcols];
            for j in 0..g.kw {
                let wv = wk[i * g.kw + j];
                let taps = &prow[j * g.dw..];
                if g.sw == 1 {
                    for (d, &v) in orow.iter_mut().zip(&taps[..ow]) {
                        *d += wv * v;
                    }
                } else {
                    for (d, &v) in orow.iter_mut().zip(taps.iter().step_by(g.sw)) {
                        *d += wv * v;
                    }
                }
            }
        }
    }
}

/// `out[q] = base + sum_{i, j} w[i][j] * rows[i][q + j * d]`, one pass, nine taps, where
/// `base` is `bias` or, without one, `out[q]` itself (accumulation).
#[inline(always)]
fn row_3x3<F: Float>(out: &mut [F], rows: [&[F]; 3], w: &[F; 9], bias: Option<F>, d: usize) {
    let n = out.len();
    let [r0, r1, r2] = rows;
    let (a0, a1, a2) = (&r0[..n], &r0[d..d + n], &r0[2 * d..2 * d + n]);
    let (b0, b1, b2) = (&r1[..n], &r1[d..d + n], &r1[2 * d..2 * d + n]);
    let (c0, c1, c2) = (&r2[..n], &r2[d..d + n], &r2[2 * d..2 * d + n]);
    for q in 0..n {
        let top = w[0] * a0[q] + w[1] * a1[q] + w[2] * a2[q];
        let mid = w[3] * b0[q] + w[4] * b1[q] + w[5] * b2[q];
        let bot = w[6] * c0[q] + w[7] * c1[q] + w[8] * c2[q];
        out[q] = bias.unwrap_or(out[q]) + top + mid + bot;
    }
}

/// Writes the input gradient into `dx` (`[n, c, h, w]`, every element overwritten) and
/// adds the weight gradient to `dw` (`[c * mult, 1, kh, kw]`), given the layer input `x`,
/// weight `w` and output gradient `gout` (`[n, c * mult, oh, ow]`).
///
/// For 3x3, stride 1, the input gradient is gathered, not scattered: it is the
/// correlation of the zero-padded output gradient with the flipped kernel, the forward
/// row kernel again. Other shapes scatter tap by tap into a padded gradient plane.
///
/// Preconditions as for [`forward`], plus `gout.len() == n * c * mult * oh * ow`,
/// `dx.len() == x.len()`, `dw.len() == w.len()`.
#[inline(always)]
pub(crate) fn backward<F: Float>(a: Dw<'_, F>, gout: &[F], dx: &mut [F], dw: &mut [F]) {
    let Dw { s, x, w, g } = a;
    let (pin, pout, kk) = (g.h * g.w, g.out_len(), g.kh * g.kw);
    if pout == 0 || pin == 0 {
        dx.fill(F::zero());
        return;
    }
    let oc = s.c * s.mult;
    let fused = g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1;
    let mut pad = Padded::new(g);
    let (prows, pcols) = (pad.rows, pad.cols);
    // Scatter target (general shapes) or zero-padded output gradient (3x3 stride 1).
    let mut dpad = vec![F::zero(); if fused { 0 } else { prows * pcols }];
    let (grows, gcols) = (g.oh + 4 * g.dh, g.ow + 4 * g.dw);
    let mut gpad = vec![F::zero(); if fused { grows * gcols } else { 0 }];
    // Lane `k * ow + q` sums tap `k`'s weight gradient over output column `q`.
    let mut lanes = vec![F::zero(); kk * g.ow];
    for b in 0..s.n {
        for ch in 0..s.c {
            let src = pad.load(&x[(b * s.c + ch) * pin..][..pin], g);
            let dxp = &mut dx[(b * s.c + ch) * pin..][..pin];
            if fused {
                dxp.fill(F::zero());
            } else {
                dpad.fill(F::zero());
            }
            for o in ch * s.mult..(ch + 1) * s.mult {
                let gp = &gout[(b * oc + o) * pout..][..pout];
                let wk = &w[o * kk..][..kk];
                lanes.fill(F::zero());
                weight_lanes(src, pcols, gp, g, &mut lanes);
                for (d, lane) in dw[o * kk..][..kk].iter_mut().zip(lanes.chunks_exact(g.ow)) {
                    *d += lane.iter().fold(F::zero(), |a, &v| a + v);
                }
                if fused {
                    for (r, row) in gp.chunks_exact(g.ow).enumerate() {
                        gpad[(r + 2 * g.dh) * gcols + 2 * g.dw..][..g.ow].copy_from_slice(row);
                    }
                    let flipped: [F; 9] = std::array::from_fn(|k| wk[8 - k]);
                    for (r, row) in dxp.chunks_exact_mut(g.w).enumerate() {
                        let at = |i: usize| {
                            &gpad[(r + g.ph + i * g.dh) * gcols + g.pw..][..g.w + 2 * g.dw]
                        };
                        row_3x3(row, [at(0), at(1), at(2)], &flipped, None, g.dw);
                    }
                } else {
                    scatter_plane(wk, gp, g, pcols, &mut dpad);
                }
            }
            if !fused {
                for (r, row) in dxp.chunks_exact_mut(g.w).enumerate() {
                    row.copy_from_slice(&dpad[(r + g.ph) * pcols + g.pw..][..g.w]);
                }
            }
        }
    }
}

/// Adds `gout * x` for every tap into the weight-gradient `lanes` (`[kh * kw, ow]`): an
/// element-wise update over each output row.
#[inline(always)]
fn weight_lanes<F: Float>(src: &[F], pcols: usize, gout: &[F], g: &ConvGeometry, lanes: &mut [F]) {
    let ow = g.ow;
    for (o, grow) in gout.chunks_exact(ow).enumerate() {
        for i in 0..g.kh {
            let base = (o * g.sh + i * g.dh) * pcols;
            for j in 0..g.kw {
                let lane = &mut lanes[(i * g.kw + j) * ow..][..ow];
                let start = base + j * g.dw;
                if g.sw == 1 {
                    let xs = &src[start..][..ow];
                    for q in 0..ow {
                        lane[q] += grow[q] * xs[q];
                    }
                } else {
                    let xs = &src[start..][..(ow - 1) * g.sw + 1];
                    for (q, (l, &gv)) in lane.iter_mut().zip(grow).enumerate() {
                        *l += gv * xs[q * g.sw];
                    }
                }
            }
        }
    }
}

/// Scatters `w * gout` into the padded input gradient `dpad` (`pcols` wide), tap by tap.
#[inline(always)]
fn scatter_plane<F: Float>(wk: &[F], gout: &[F], g: &ConvGeometry, pcols: usize, dpad: &mut [F]) {
    let ow = g.ow;
    for (o, grow) in gout.chunks_exact(ow).enumerate() {
        for i in 0..g.kh {
            let base = (o * g.sh + i * g.dh) * pcols;
            for j in 0..g.kw {
                let wv = wk[i * g.kw + j];
                let start = base + j * g.dw;
                if g.sw == 1 {
                    for (d, &gv) in dpad[start..][..ow].iter_mut().zip(grow) {
                        *d += wv * gv;
                    }
                } else {
                    let ds = &mut dpad[start..][..(ow - 1) * g.sw + 1];
                    for (q, &gv) in grow.iter().enumerate() {
                        ds[q * g.sw] += wv * gv;
                    }
                }
            }
        }
    }
}
