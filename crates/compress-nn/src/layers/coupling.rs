//! The coupling groups a `Sequential` declares for structured shrinking.

use compress_core::{Coupled, CouplingGroup, CouplingRole, Float, Layer, Result};

use super::{Conv2d, Sequential};

/// The members for a layer's own output units: `weight` rows (scored) and `bias`.
fn outputs<F: Float>(
    group: &mut CouplingGroup,
    prefix: &str,
    layer: &dyn Layer<F>,
    role: CouplingRole,
    block: usize,
) {
    let mut has_bias = false;
    layer.visit(
        &mut compress_core::ParamPath::root(),
        &mut |p: &compress_core::ParamPath, _: &compress_core::Param<F>| {
            has_bias |= p.leaf() == "bias";
        },
    );
    group
        .members
        .push(Coupled::new(format!("{prefix}.weight"), 0, role).block(block));
    if has_bias {
        group
            .members
            .push(Coupled::new(format!("{prefix}.bias"), 0, CouplingRole::Follow).block(block));
    }
}

/// The group of layer `i`'s output units, if its removal can be carried to a consumer:
/// element-wise layers and pools pass units through, batch norms follow them, a flatten
/// turns a channel into a block of columns, a depthwise conv passes channel `c` on as its
/// `mult` filters; the first `Linear` or dense `Conv2d` consumes them. Grouped consumers
/// and anything else end without a group (`prune_structured` of compress-prune handles
/// grouped consumers on a `Sequential` itself).
fn group_of<F: Float>(
    seq: &Sequential<F>,
    i: usize,
    shapes: &[Vec<usize>],
) -> Option<CouplingGroup> {
    let layers = seq.layers();
    let producer = layers[i].as_ref();
    let conv = |l: &dyn Layer<F>| l.as_any().downcast_ref::<Conv2d<F>>().map(Conv2d::config);
    match producer.name() {
        "Linear" => {}
        "Conv2d" if conv(producer).is_some_and(|c| c.groups == 1) => {}
        _ => return None,
    }
    let mut g = CouplingGroup::new(i.to_string());
    outputs(&mut g, &i.to_string(), producer, CouplingRole::Produce, 1);
    // Indices per unit along the channel axis so far (depthwise multipliers compound).
    let mut expansion = 1;
    // Columns per channel after a flatten.
    let mut block = 1;
    for (j, l) in layers.iter().enumerate().skip(i + 1) {
        let l = l.as_ref();
        match l.name() {
            "ReLU" | "ReLU6" | "Tanh" | "Sigmoid" | "HardSwish" | "Dropout" | "MaxPool2d"
            | "AvgPool2d" | "GlobalAvgPool" => {}
            "BatchNorm1d" | "BatchNorm2d" if block == 1 => {
                for t in ["weight", "bias", "running_mean", "running_var"] {
                    g.members.push(
                        Coupled::new(format!("{j}.{t}"), 0, CouplingRole::Follow).block(expansion),
                    );
                }
            }
            "Flatten" => {
                block *= shapes[j].iter().skip(1).product::<usize>();
            }
            "Linear" => {
                g.members.push(
                    Coupled::new(format!("{j}.weight"), 1, CouplingRole::Consume)
                        .block(expansion * block),
                );
                return Some(g);
            }
            "Conv2d" if block == 1 => {
                let c = conv(l)?;
                if c.groups > 1 && c.is_depthwise() {
                    expansion *= c.out_per_group();
                    outputs(&mut g, &j.to_string(), l, CouplingRole::Follow, expansion);
                    continue;
                }
                if c.groups != 1 {
                    return None;
                }
                g.members.push(
                    Coupled::new(format!("{j}.weight"), 1, CouplingRole::Consume).block(expansion),
                );
                return Some(g);
            }
            _ => return None,
        }
    }
    None
}

/// One group per `Linear` or dense `Conv2d` whose outputs feed a later `Linear` or dense
/// `Conv2d` through the layers [`group_of`] can carry units through.
pub(crate) fn sequential_groups<F: Float>(
    seq: &Sequential<F>,
    input_shape: &[usize],
) -> Result<Vec<CouplingGroup>> {
    // shapes[j] = input shape of layer j.
    let mut shapes = vec![input_shape.to_vec()];
    for c in seq.layer_costs(input_shape)? {
        shapes.push(c.output_shape);
    }
    Ok((0..seq.len())
        .filter_map(|i| group_of(seq, i, &shapes))
        .collect())
}
