//! Which layers of a `Sequential` can lose output units, and what else must change with them.

use compress_core::{Float, Layer};
use compress_nn::{Conv2d, Sequential};

use crate::{PruneError, Result};

/// What a layer between a producer and its consumer does to the producer's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Between {
    /// Element-wise (activations, dropout): channels and values pass through.
    Elementwise,
    /// Channel-preserving but not element-wise (pools).
    Channelwise,
    /// A batch norm whose channels must be removed too.
    BatchNorm,
    /// Flatten of a `[C, H, W]` (or `[C]`) input: channel `c` becomes the column block
    /// `c * block .. (c + 1) * block`.
    Flatten {
        /// Features per channel after flattening (`H * W`).
        block: usize,
    },
}

/// A depthwise `Conv2d` that removed channels pass through: removing its input channel `c`
/// removes its filters `c * mult .. (c + 1) * mult` and so those output channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassThrough {
    /// Index of the depthwise conv in the `Sequential`.
    pub(crate) index: usize,
    /// Its channel multiplier `out / in`.
    pub(crate) mult: usize,
    /// Layers after it up to the next weighted layer, with their role.
    pub(crate) between: Vec<(usize, Between)>,
}

/// How removing output units of layer `producer` propagates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) producer: usize,
    /// Layers strictly between producer and the first weighted layer, with their role.
    pub(crate) between: Vec<(usize, Between)>,
    /// Depthwise convs the removal passes through, in order.
    pub(crate) through: Vec<PassThrough>,
    /// The `Linear` or `Conv2d` that consumes the (expanded) channels and ends the removal.
    pub(crate) consumer: usize,
    /// Columns of the consumer per channel (1 unless a flatten is in between).
    pub(crate) block: usize,
    /// Groups of the consumer: 1 for a `Linear` or dense `Conv2d`, `g > 1` for a grouped
    /// (not depthwise) `Conv2d`, which loses the same number of inputs in every group.
    pub(crate) consumer_groups: usize,
}

impl Plan {
    /// Factor by which one producer unit expands through the depthwise convs.
    pub(crate) fn expansion(&self) -> usize {
        self.through.iter().map(|t| t.mult).product()
    }
}

/// The configuration of layer `l` if it is a `Conv2d`.
pub(crate) fn conv_config<F: Float>(l: &dyn Layer<F>) -> Option<compress_nn::Conv2dConfig> {
    l.as_any().downcast_ref::<Conv2d<F>>().map(Conv2d::config)
}

fn unsupported(index: usize, layer: &str, reason: impl Into<String>) -> PruneError {
    PruneError::Unsupported {
        index,
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

/// Output units (rows / filters) of layer `i`, if it is a `Linear` or a dense `Conv2d`.
pub(crate) fn width<F: Float>(seq: &Sequential<F>, i: usize) -> Option<usize> {
    let l = seq.layers().get(i)?;
    match l.name() {
        "Linear" | "Conv2d" => {
            let mut w = 0;
            l.visit(
                &mut compress_core::ParamPath::root(),
                &mut |p: &compress_core::ParamPath, v: &compress_core::Param<F>| {
                    if p.leaf() == "weight" {
                        w = v.shape()[0];
                    }
                },
            );
            Some(w)
        }
        _ => None,
    }
}

/// The propagation plan for removing outputs of layer `i`; `input_shape` is the model's
/// per-sample input shape (needed to size flatten blocks).
pub(crate) fn plan<F: Float>(seq: &Sequential<F>, i: usize, input_shape: &[usize]) -> Result<Plan> {
    let layers = seq.layers();
    let Some(prod) = layers.get(i) else {
        return Err(unsupported(
            i,
            "?",
            format!("does not exist ({} layers)", layers.len()),
        ));
    };
    match prod.name() {
        "Linear" => {}
        "Conv2d" => match conv_config(prod.as_ref()) {
            Some(c) if c.groups == 1 => {}
            Some(c) if c.is_depthwise() => {
                return Err(unsupported(
                    i,
                    "Conv2d",
                    format!(
                        "is depthwise ({} channels): its channel c is tied to input channel c; \
                         prune the layer that feeds it and the removal passes through it",
                        c.in_channels
                    ),
                ));
            }
            Some(c) => {
                return Err(unsupported(
                    i,
                    "Conv2d",
                    format!(
                        "is grouped (groups = {}); only groups = 1 layers can be pruned",
                        c.groups
                    ),
                ));
            }
            None => return Err(unsupported(i, "Conv2d", "is not a compress_nn::Conv2d")),
        },
        other => return Err(unsupported(i, other, "is not a Linear or Conv2d")),
    }
    let shapes = seq.layer_costs(input_shape)?;
    let mut between = Vec::new();
    let mut through: Vec<PassThrough> = Vec::new();
    let mut block = 1;
    // The consumer's index and group count.
    let (consumer, consumer_groups) = 'consumer: {
        for (j, l) in layers.iter().enumerate().skip(i + 1) {
            let role = match l.name() {
                "ReLU" | "ReLU6" | "Tanh" | "Sigmoid" | "HardSwish" | "Dropout" => {
                    Between::Elementwise
                }
                "MaxPool2d" | "AvgPool2d" | "GlobalAvgPool" => Between::Channelwise,
                "BatchNorm1d" | "BatchNorm2d" => Between::BatchNorm,
                "Flatten" => {
                    let in_shape = &shapes[j - 1].output_shape;
                    let b: usize = in_shape.iter().skip(1).product();
                    block *= b;
                    Between::Flatten { block: b }
                }
                "Linear" => break 'consumer (j, 1),
                "Conv2d" => {
                    if block != 1 {
                        return Err(unsupported(j, "Conv2d", "follows a Flatten"));
                    }
                    let Some(cfg) = conv_config(l.as_ref()) else {
                        return Err(unsupported(j, "Conv2d", "is not a compress_nn::Conv2d"));
                    };
                    if cfg.groups > 1 && cfg.is_depthwise() {
                        // Removal passes through: channel c takes its `mult` outputs with it.
                        through.push(PassThrough {
                            index: j,
                            mult: cfg.out_per_group(),
                            between: Vec::new(),
                        });
                        continue;
                    }
                    if cfg.groups > 1 && !through.is_empty() {
                        return Err(unsupported(
                            j,
                            "Conv2d",
                            format!(
                                "is grouped (groups = {}) after a depthwise conv; only a Linear or \
                             groups = 1 Conv2d can consume channels removed through a depthwise conv",
                                cfg.groups
                            ),
                        ));
                    }
                    break 'consumer (j, cfg.groups);
                }
                other => {
                    return Err(unsupported(j, other, "cannot carry removed channels"));
                }
            };
            match through.last_mut() {
                Some(t) => t.between.push((j, role)),
                None => between.push((j, role)),
            }
        }
        let (last, name) = through
            .last()
            .map_or((i, prod.name()), |t| (t.index, "Conv2d"));
        return Err(unsupported(
            last,
            name,
            "is the last weighted layer: its outputs are the model's outputs",
        ));
    };
    Ok(Plan {
        producer: i,
        between,
        through,
        consumer,
        block,
        consumer_groups,
    })
}

/// Indices of the layers whose outputs can be removed: a `Linear` or `groups = 1` `Conv2d`
/// followed, through supported layers (activations, dropout, pools, batch norms, flatten and
/// depthwise convs, which removed channels pass through), by a `Linear` or `Conv2d`.
/// Depthwise and grouped convs are never in the list themselves.
pub fn prunable_layers<F: Float>(seq: &Sequential<F>, input_shape: &[usize]) -> Vec<usize> {
    (0..seq.len())
        .filter(|&i| plan(seq, i, input_shape).is_ok())
        .collect()
}
