//! Swapping float layers for integer ones anywhere in a model.

use compress_core::surgery::replace_layers;
use compress_core::{Float, Layer};
use compress_nn::{Conv2d, Linear};

use crate::{ActQuant, QConv2d, QLinear, QuantError};

/// Replaces every [`Linear`] below `model` by a [`QLinear`] (int8 per-channel weights,
/// activations quantized as `act`) and, when `convs` is set, every [`Conv2d`] by a
/// [`QConv2d`], for layers where `select(path)` holds. Works on any model that lists its
/// children (see [`compress_core::surgery`]): a `Sequential`, a user's struct with
/// residual connections. Layers stored as concrete fields cannot change type and are left
/// in float. Every replacement is built before the first one is made, so on error the
/// model is unchanged. Returns the replaced paths in walk order.
///
/// # Errors
///
/// The first quantization error, with its type kept ([`QuantError`]).
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::models::mlp;
/// use compress_quant::{ActQuant, quantize_layers};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[8, 16, 4], &mut StdRng::seed_from_u64(0));
/// let x = ArrayD::from_elem(vec![2, 8], 0.5f32);
/// let before = net.forward(&x, Mode::Eval).unwrap();
/// let paths = quantize_layers(&mut net, ActQuant::DynamicPerRow, true, |_| true).unwrap();
/// assert_eq!(paths, ["0", "2"]);
/// let after = net.forward(&x, Mode::Eval).unwrap();
/// assert!((&before - &after).iter().all(|d| d.abs() < 0.05));
/// ```
pub fn quantize_layers<F: Float>(
    model: &mut dyn Layer<F>,
    act: ActQuant,
    convs: bool,
    mut select: impl FnMut(&str) -> bool,
) -> Result<Vec<String>, QuantError> {
    replace_layers(model, |path, l| {
        let any = l.as_any();
        let lin = any.downcast_ref::<Linear<F>>();
        let conv = any.downcast_ref::<Conv2d<F>>().filter(|_| convs);
        if (lin.is_none() && conv.is_none()) || !select(path) {
            return None;
        }
        Some(match (lin, conv) {
            (Some(lin), _) => QLinear::from_linear(lin, act).map(|q| Box::new(q) as _),
            (None, Some(conv)) => QConv2d::from_conv(conv).map(|q| Box::new(q) as _),
            (None, None) => return None,
        })
    })
}
