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

/// How removing output units of layer `producer` propagates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) producer: usize,
    /// Layers strictly between producer and consumer, with their role.
    pub(crate) between: Vec<(usize, Between)>,
    /// The `Linear` or `Conv2d` that consumes the producer's outputs.
    pub(crate) consumer: usize,
    /// Columns of the consumer per producer channel (1 unless a flatten is in between).
    pub(crate) block: usize,
}

pub(crate) fn is_conv_dense<F: Float>(l: &dyn Layer<F>) -> Option<bool> {
    l.as_any()
        .downcast_ref::<Conv2d<F>>()
        .map(|c| c.config().groups == 1)
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
        "Conv2d" if is_conv_dense(prod.as_ref()) == Some(true) => {}
        "Conv2d" => {
            return Err(unsupported(
                i,
                "Conv2d",
                "is grouped; only groups = 1 can be shrunk",
            ));
        }
        other => return Err(unsupported(i, other, "is not a Linear or Conv2d")),
    }
    let shapes = seq.layer_costs(input_shape)?;
    let mut between = Vec::new();
    let mut block = 1;
    for (j, l) in layers.iter().enumerate().skip(i + 1) {
        let role = match l.name() {
            "ReLU" | "ReLU6" | "Tanh" | "Sigmoid" | "HardSwish" | "Dropout" => Between::Elementwise,
            "MaxPool2d" | "AvgPool2d" | "GlobalAvgPool" => Between::Channelwise,
            "BatchNorm1d" | "BatchNorm2d" => Between::BatchNorm,
            "Flatten" => {
                let in_shape = &shapes[j - 1].output_shape;
                let b: usize = in_shape.iter().skip(1).product();
                block *= b;
                Between::Flatten { block: b }
            }
            "Linear" => {
                return Ok(Plan {
                    producer: i,
                    between,
                    consumer: j,
                    block,
                });
            }
            "Conv2d" => {
                if block != 1 {
                    return Err(unsupported(j, "Conv2d", "follows a Flatten"));
                }
                if is_conv_dense(l.as_ref()) != Some(true) {
                    return Err(unsupported(
                        j,
                        "Conv2d",
                        "is grouped (depthwise); its input channels cannot be removed alone",
                    ));
                }
                return Ok(Plan {
                    producer: i,
                    between,
                    consumer: j,
                    block,
                });
            }
            other => {
                return Err(unsupported(j, other, "cannot carry removed channels"));
            }
        };
        between.push((j, role));
    }
    Err(unsupported(
        i,
        prod.name(),
        "is the last weighted layer: its outputs are the model's outputs",
    ))
}

/// Indices of the layers whose outputs can be removed (a `Linear` or dense `Conv2d` followed,
/// through supported layers, by another one).
pub fn prunable_layers<F: Float>(seq: &Sequential<F>, input_shape: &[usize]) -> Vec<usize> {
    (0..seq.len())
        .filter(|&i| plan(seq, i, input_shape).is_ok())
        .collect()
}
