//! One quantization of an input read by several [`DynamicQLinear`] layers (the query, key
//! and value projections of an attention block all read the same hidden states).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use compress_core::surgery::{Walk, walk_layers_mut};
use compress_core::{Float, Layer};

use super::rows::Scratch;
use super::{DynamicQLinear, TokenQuant};
use crate::QuantError;

/// A handle shared by layers that may read the same input: the first of them to see an
/// input quantizes it and keeps a copy of it with its codes; a following layer whose input
/// is bit for bit the same (checked in full, not assumed) and that quantizes the same way
/// reuses the codes instead of quantizing again. Results are exactly those of unshared
/// layers; the saving is the quantization pass (row ranges and codes) of every layer but
/// the first. Clones refer to the same state.
#[derive(Debug, Clone, Default)]
pub struct InputShare(Arc<Mutex<Shared>>);

#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The last quantized input (empty when none is valid).
    x: Vec<f32>,
    /// Its rows, row stride and quantization.
    key: (usize, usize, Option<TokenQuant>),
    pub(crate) scratch: Scratch,
    /// How many calls reused the codes (for tests).
    #[cfg(test)]
    pub(crate) hits: usize,
}

impl InputShare {
    /// A new, empty share.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the shared scratch holding the codes of `x` (`m` rows of `k`, row stride
    /// `lda`, quantized by `act`), quantizing them first unless the last input was the same.
    pub(crate) fn with_codes<R>(
        &self,
        (x, m, k, lda): (&[f32], usize, usize, usize),
        act: TokenQuant,
        what: &str,
        f: impl FnOnce(&mut Scratch) -> R,
    ) -> Result<R, QuantError> {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (m, lda, Some(act));
        let same = s.key == key
            && s.x.len() == x.len()
            && s.x.iter().zip(x).all(|(a, b)| a.to_bits() == b.to_bits());
        if same {
            #[cfg(test)]
            {
                s.hits += 1;
            }
        } else {
            s.x.clear();
            s.key = (0, 0, None);
            s.scratch.quantize(what, x, m, k, lda, act)?;
            s.x.extend_from_slice(x);
            s.key = key;
        }
        Ok(f(&mut s.scratch))
    }

    #[cfg(test)]
    pub(crate) fn hits(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).hits
    }
}

/// Links the query, key and value projections (paths ending in `self.query`, `self.key`,
/// `self.value` under one parent) that are [`DynamicQLinear`] layers below `model` through
/// one [`InputShare`] per attention block, so that their common input is quantized once.
/// Returns the number of layers linked.
///
/// # Errors
///
/// None in practice (the walk only changes layers in place).
pub fn share_attention_inputs<F: Float>(model: &mut dyn Layer<F>) -> Result<usize, QuantError> {
    let mut shares: HashMap<String, InputShare> = HashMap::new();
    let mut linked = 0;
    walk_layers_mut(model, &mut |path, slot| {
        let path = path.to_string();
        let parent = ["self.query", "self.key", "self.value"]
            .iter()
            .find_map(|s| path.strip_suffix(s));
        if let (Some(parent), Some(q)) = (parent, slot.downcast_mut::<DynamicQLinear>()) {
            let share = shares.entry(parent.to_string()).or_default();
            q.set_input_share(Some(share.clone()));
            linked += 1;
        }
        Ok(Walk::Descend)
    })?;
    Ok(linked)
}
