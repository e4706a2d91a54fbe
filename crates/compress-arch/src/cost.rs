//! Closed-form parameter and MAC counts of standard convolutions and each efficient block,
//! per sample, written from the papers' formulas (not by running `cost`); the tests check
//! that they equal what each block's [`Layer::cost`](compress_core::Layer::cost) counts.
//!
//! Conventions (the same as compress-nn's `cost`): a convolution's MACs are
//! `Ho Wo N (M / groups) K^2`; a batch norm has `2 C` parameters (scale and shift; running
//! statistics are buffers, not parameters) and `C H W` MACs (one multiply-add per element
//! once folded); activations, pooling, concatenation, shuffles and residual additions cost
//! no MACs. Convolutions followed by a batch norm have no bias. The parts are reported
//! separately in [`BlockCost`].

use crate::blocks::{
    FireConfig, GhostConfig, InvertedConfig, MobileNetConfig, Pointwise, SeparableConfig,
    ShuffleConfig, XceptionConfig,
};

/// A closed-form per-sample cost, split by kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockCost {
    /// Output shape per sample.
    pub output: Vec<usize>,
    /// Convolution and linear weights.
    pub weights: usize,
    /// Biases.
    pub biases: usize,
    /// Batch-norm scales and shifts.
    pub norm_params: usize,
    /// MACs of convolutions and linear layers.
    pub weight_macs: u64,
    /// MACs of batch norms.
    pub norm_macs: u64,
}

impl BlockCost {
    /// All parameters: weights, biases and batch-norm parameters.
    pub fn params(&self) -> usize {
        self.weights + self.biases + self.norm_params
    }

    /// All MACs.
    pub fn macs(&self) -> u64 {
        self.weight_macs + self.norm_macs
    }

    fn add(&mut self, other: &BlockCost) {
        self.weights += other.weights;
        self.biases += other.biases;
        self.norm_params += other.norm_params;
        self.weight_macs += other.weight_macs;
        self.norm_macs += other.norm_macs;
        self.output.clone_from(&other.output);
    }
}

/// Output side of a `K x K` convolution (or 3x3 pool) with padding `K / 2` (odd `K`) and
/// stride `s`: `(h - 1) / s + 1 = ceil(h / s)`.
pub fn same_out(h: usize, stride: usize) -> usize {
    if h == 0 {
        0
    } else {
        (h - 1) / stride.max(1) + 1
    }
}

fn u(x: usize) -> u64 {
    x as u64
}

/// A standard `K x K` convolution `M -> N` (padding `K / 2`, stride `s`, no bias), plus a
/// batch norm when `bn`: weights `N M K^2`, MACs `N M K^2 Ho Wo`.
pub fn standard_conv(
    m: usize,
    n: usize,
    k: usize,
    stride: usize,
    h: usize,
    w: usize,
    bn: bool,
) -> BlockCost {
    let (ho, wo) = (same_out(h, stride), same_out(w, stride));
    BlockCost {
        output: vec![n, ho, wo],
        weights: n * m * k * k,
        biases: 0,
        norm_params: if bn { 2 * n } else { 0 },
        weight_macs: u(n * m * k * k * ho * wo),
        norm_macs: if bn { u(n * ho * wo) } else { 0 },
    }
}

/// The depthwise separable / standard cost ratio, `1/N + 1/K^2` (weights and MACs alike).
///
/// ```
/// let r = compress_arch::cost::separable_ratio(64, 3);
/// assert!((r - (1.0 / 64.0 + 1.0 / 9.0)).abs() < 1e-15); // ~ 7.9x fewer
/// ```
pub fn separable_ratio(n: usize, k: usize) -> f64 {
    1.0 / n as f64 + 1.0 / (k * k) as f64
}

/// [`DepthwiseSeparableConv`](crate::blocks::DepthwiseSeparableConv): weights
/// `M K^2 + M N`, MACs `(M K^2 + M N) Ho Wo`; BN `2M + 2N` parameters, `(M + N) Ho Wo` MACs
/// (the second BN only with `pointwise_bn_act`). With a Ghost pointwise stage, the
/// pointwise part is [`ghost_module`] at `Ho x Wo`.
pub fn depthwise_separable(cfg: &SeparableConfig, h: usize, w: usize) -> BlockCost {
    let (m, n, k) = (cfg.in_channels, cfg.out_channels, cfg.kernel);
    let (ho, wo) = (same_out(h, cfg.stride), same_out(w, cfg.stride));
    let p = ho * wo;
    let mut c = BlockCost {
        output: vec![m, ho, wo],
        weights: m * k * k,
        biases: 0,
        norm_params: 2 * m,
        weight_macs: u(m * k * k * p),
        norm_macs: u(m * p),
    };
    match cfg.pointwise {
        Pointwise::Conv => {
            let bn = cfg.pointwise_bn_act;
            c.add(&BlockCost {
                output: vec![n, ho, wo],
                weights: m * n,
                biases: 0,
                norm_params: if bn { 2 * n } else { 0 },
                weight_macs: u(m * n * p),
                norm_macs: if bn { u(n * p) } else { 0 },
            });
        }
        Pointwise::Ghost(s) => c.add(&ghost_module(&GhostConfig::new(m, n).ratio(s), ho, wo)),
    }
    c
}

/// [`GhostModule`](crate::blocks::GhostModule) with `m = ceil(N / s)`: weights
/// `m M K^2 + m (s - 1) d^2`, MACs that times `Ho Wo`; BN `2 m s` parameters and `m s Ho Wo`
/// MACs.
pub fn ghost_module(cfg: &GhostConfig, h: usize, w: usize) -> BlockCost {
    let (mm, k, d, s) = (cfg.in_channels, cfg.kernel, cfg.dw_kernel, cfg.ratio);
    let m = cfg.out_channels.div_ceil(s);
    let (ho, wo) = (same_out(h, cfg.stride), same_out(w, cfg.stride));
    let weights = m * mm * k * k + m * (s - 1) * d * d;
    BlockCost {
        output: vec![cfg.out_channels, ho, wo],
        weights,
        biases: 0,
        norm_params: 2 * m * s,
        weight_macs: u(weights * ho * wo),
        norm_macs: u(m * s * ho * wo),
    }
}

/// [`InvertedResidual`](crate::blocks::InvertedResidual): weights
/// `t M^2 [t > 1] + t M K^2 + t M N`, MACs `t M^2 H W [t > 1] + (t M K^2 + t M N) Ho Wo`;
/// BN `2 (tM [t > 1] + tM + N)` parameters and `tM H W [t > 1] + (tM + N) Ho Wo` MACs.
pub fn inverted_residual(cfg: &InvertedConfig, h: usize, w: usize) -> BlockCost {
    let (m, n, t, k) = (cfg.in_channels, cfg.out_channels, cfg.expansion, cfg.kernel);
    let hid = t * m;
    let (ho, wo) = (same_out(h, cfg.stride), same_out(w, cfg.stride));
    let (p_in, p_out) = (h * w, ho * wo);
    let e = usize::from(t != 1);
    BlockCost {
        output: vec![n, ho, wo],
        weights: e * hid * m + hid * k * k + hid * n,
        biases: 0,
        norm_params: 2 * (e * hid + hid + n),
        weight_macs: u(e * hid * m * p_in + (hid * k * k + hid * n) * p_out),
        norm_macs: u(e * hid * p_in + (hid + n) * p_out),
    }
}

/// [`ShuffleUnit`](crate::blocks::ShuffleUnit) with branch output `N'` (`N` at stride 1,
/// `N - M` at stride 2): weights `M B / g + 9 B + B N' / g`, MACs
/// `(M B / g) H W + (9 B + B N' / g) Ho Wo`; BN `2 (2B + N')` parameters and
/// `B H W + (B + N') Ho Wo` MACs.
pub fn shuffle_unit(cfg: &ShuffleConfig, h: usize, w: usize) -> BlockCost {
    let (m, b, g) = (cfg.in_channels, cfg.bottleneck, cfg.groups);
    let nb = cfg.branch_channels();
    let (ho, wo) = (same_out(h, cfg.stride), same_out(w, cfg.stride));
    let (p_in, p_out) = (h * w, ho * wo);
    BlockCost {
        output: vec![cfg.out_channels, ho, wo],
        weights: m * b / g + 9 * b + b * nb / g,
        biases: 0,
        norm_params: 2 * (2 * b + nb),
        weight_macs: u(m * b / g * p_in + (9 * b + b * nb / g) * p_out),
        norm_macs: u(b * p_in + (b + nb) * p_out),
    }
}

/// [`Fire`](crate::blocks::Fire): weights `M S + S E1 + 9 S E3`, biases `S + E1 + E3`,
/// MACs `(M S + S E1 + 9 S E3) H W`.
pub fn fire(cfg: &FireConfig, h: usize, w: usize) -> BlockCost {
    let (m, s, e1, e3) = (cfg.in_channels, cfg.squeeze, cfg.expand1x1, cfg.expand3x3);
    let weights = m * s + s * e1 + 9 * s * e3;
    BlockCost {
        output: vec![e1 + e3, h, w],
        weights,
        biases: s + e1 + e3,
        norm_params: 0,
        weight_macs: u(weights * h * w),
        norm_macs: 0,
    }
}

/// [`XceptionBlock`](crate::blocks::XceptionBlock): weights
/// `9 M + M N + (reps - 1)(9 N + N^2)` (+ `M N` for a projecting shortcut), MACs those
/// times `H W` (the shortcut's times `Ho Wo`); BN `2 N` parameters per separable convolution
/// and for the shortcut, `N H W` MACs each (`N Ho Wo` for the shortcut).
pub fn xception_block(cfg: &XceptionConfig, h: usize, w: usize) -> BlockCost {
    let (m, n, r) = (cfg.in_channels, cfg.out_channels, cfg.reps);
    let (ho, wo) = (same_out(h, cfg.stride), same_out(w, cfg.stride));
    let stack = 9 * m + m * n + (r - 1) * (9 * n + n * n);
    let proj = usize::from(cfg.projects());
    BlockCost {
        output: vec![n, ho, wo],
        weights: stack + proj * m * n,
        biases: 0,
        norm_params: 2 * n * (r + proj),
        weight_macs: u(stack * h * w + proj * m * n * ho * wo),
        norm_macs: u(r * n * h * w + proj * n * ho * wo),
    }
}

/// The whole [`MobileNetConfig`] network at its input shape: stem [`standard_conv`] (3x3,
/// with BN), each block's [`depthwise_separable`], and the classifier
/// (`C classes` weights and MACs, `classes` biases).
pub fn mobilenet_v1(cfg: &MobileNetConfig) -> BlockCost {
    let [c_in, side, _] = cfg.input_shape();
    let stem = cfg.width(cfg.stem_channels);
    let mut total = standard_conv(c_in, stem, 3, cfg.stem_stride, side, side, true);
    let (mut c, mut h) = (stem, total.output[1]);
    for &(out, stride) in &cfg.blocks {
        let n = cfg.width(out);
        let b = depthwise_separable(
            &SeparableConfig::new(c, n, 3)
                .stride(stride)
                .pointwise(cfg.pointwise),
            h,
            h,
        );
        h = b.output[1];
        total.add(&b);
        c = n;
    }
    total.add(&BlockCost {
        output: vec![cfg.classes],
        weights: c * cfg.classes,
        biases: cfg.classes,
        norm_params: 0,
        weight_macs: u(c * cfg.classes),
        norm_macs: 0,
    });
    total
}
