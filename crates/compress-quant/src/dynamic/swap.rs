//! Turning a float model's linear layers into [`DynamicQLinear`] in place.

use compress_core::{Float, Layer};
use compress_nn::Linear;

use super::{DynamicQLinear, share_attention_inputs};
use crate::QuantError;
use compress_core::surgery::replace_layers;

/// Replaces every [`Linear`] below `model` for which `select(path)` holds by a
/// [`DynamicQLinear`] (W8A8: int8 per-channel weights, per-token int8 activations), in the
/// model's replaceable slots (`Box<dyn Layer>` children: a `Sequential`, a transformer
/// encoder's projections). All replacements are built first, so on error the model is
/// unchanged. The query, key and value projections of each attention block are then linked
/// so that their common input is quantized once ([`share_attention_inputs`]). Returns the
/// replaced paths in walk order.
///
/// # Errors
///
/// The first quantization error ([`DynamicQLinear::from_linear`]).
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::models::mlp;
/// use compress_quant::quantize_dynamic;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[8, 16, 4], &mut StdRng::seed_from_u64(0));
/// let x = ArrayD::from_elem(vec![2, 8], 0.5f32);
/// let before = net.forward(&x, Mode::Eval).unwrap();
/// assert_eq!(quantize_dynamic(&mut net, |_| true).unwrap(), ["0", "2"]);
/// let after = net.forward(&x, Mode::Eval).unwrap();
/// assert!((&before - &after).iter().all(|d| d.abs() < 0.05));
/// ```
pub fn quantize_dynamic<F: Float>(
    model: &mut dyn Layer<F>,
    mut select: impl FnMut(&str) -> bool,
) -> Result<Vec<String>, QuantError> {
    let replaced = replace_layers(model, |path, l| {
        let lin = l.as_any().downcast_ref::<Linear<F>>()?;
        select(path).then(|| DynamicQLinear::from_linear(lin).map(|q| Box::new(q) as _))
    })?;
    share_attention_inputs(model)?;
    Ok(replaced)
}
