//! Concrete `f32` / `f64` loops behind the generic optimizers and losses.
//!
//! Everything in compress-nn is generic over `F: Float`, and generic code is compiled in the
//! crate that names the type: a user's crate, at the user's opt-level. A debug build would
//! then run every element-wise loop unoptimised (100x slower) even with
//! `[profile.dev.package."*"] opt-level = 3`. The hot loops are therefore written once here
//! as generic bodies, instantiated for `f32` and `f64` by non-generic `#[inline(never)]`
//! functions (compiled in this crate, at its opt-level), and reached from the generic API by
//! [`compress_core::concrete!`].

use compress_core::concrete;

concrete! {
    /// Plain SGD: `w -= lr * (g + wd * w)`.
    pub(crate) fn sgd(w: mut; g: slice; lr: scalar, wd: scalar) {
        for (w, &g) in w.iter_mut().zip(g) {
            *w = *w - lr * (g + wd * *w);
        }
    }
}

concrete! {
    /// SGD with (Nesterov) momentum: `v = mu v + d`, `w -= lr * (nesterov ? d + mu v : v)`
    /// with `d = g + wd * w`.
    pub(crate) fn sgd_momentum(w: mut, v: mut; g: slice; lr: scalar, wd: scalar, mu: scalar; nesterov: bool) {
        for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
            let d = g + wd * *w;
            *v = mu * *v + d;
            let step = if nesterov { d + mu * *v } else { *v };
            *w -= lr * step;
        }
    }
}

concrete! {
    /// Adam / AdamW: moments `m`, `v` with bias corrections `c1`, `c2`; `wd` coupled into the
    /// gradient or (decoupled) applied to the weight.
    pub(crate) fn adam(
        w: mut, m: mut, v: mut; g: slice;
        lr: scalar, b1: scalar, b2: scalar, c1: scalar, c2: scalar, eps: scalar, wd: scalar;
        decoupled: bool
    ) {
        let one = F::one();
        for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = if decoupled { g } else { g + wd * *w };
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            let upd = (*m / c1) / ((*v / c2).sqrt() + eps);
            let decay = if decoupled { wd * *w } else { F::zero() };
            *w -= lr * (upd + decay);
        }
    }
}

concrete! {
    /// Row-wise softmax cross-entropy on `[rows, cols]` logits, in the operation order of
    /// [`log_softmax`](crate::loss::log_softmax): writes `(softmax - onehot) * inv_n` into
    /// `grad` and each row's `log p[label]` into `logp_label`; `labels` are already checked.
    pub(crate) fn softmax_xent_rows(grad: mut, logp_label: mut; logits: slice; inv_n: scalar; labels: &[usize]) {
        let cols = logits.len() / logp_label.len().max(1);
        for (((row, g), lp), &y) in logits
            .chunks_exact(cols)
            .zip(grad.chunks_exact_mut(cols))
            .zip(logp_label.iter_mut())
            .zip(labels)
        {
            let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
            let lse = row.iter().fold(F::zero(), |a, &v| a + (v - m).exp()).ln() + m;
            *lp = row[y] - lse;
            for (gj, &x) in g.iter_mut().zip(row) {
                *gj = (x - lse).exp();
            }
            g[y] -= F::one();
            for gj in g.iter_mut() {
                *gj *= inv_n;
            }
        }
    }
}

concrete! {
    /// Row-wise log-softmax of `[rows, cols]` values into `out`.
    pub(crate) fn log_softmax_rows(out: mut; x: slice; ; cols: usize) {
        for (row, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
            let m = row.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
            let lse = row.iter().fold(F::zero(), |a, &v| a + (v - m).exp()).ln() + m;
            for (o, &v) in o.iter_mut().zip(row) {
                *o = v - lse;
            }
        }
    }
}

concrete! {
    /// Every row of `y` (rows of `b.len()` columns) set to `b`: a Linear's output before
    /// the product is added to it.
    pub(crate) fn fill_rows(y: mut; b: slice;) {
        if b.is_empty() {
            return;
        }
        for row in y.chunks_exact_mut(b.len()) {
            row.copy_from_slice(b);
        }
    }
}

concrete! {
    /// `acc[j] += sum_r g[r, j]` over the rows of `g` (rows of `acc.len()` columns): a
    /// bias gradient.
    pub(crate) fn add_column_sums(acc: mut; g: slice;) {
        if acc.is_empty() {
            return;
        }
        for row in g.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}
