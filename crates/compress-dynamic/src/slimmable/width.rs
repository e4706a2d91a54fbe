//! Width multipliers and active channel counts.

use compress_core::CoreError;

use crate::{DynamicError, Result};

/// Tolerance when comparing width multipliers.
pub(crate) const WIDTH_EPS: f64 = 1e-9;

/// Channels active at width multiplier `w` out of `channels`: `ceil(w * channels)`, at
/// least 1 (a tiny tolerance absorbs float noise such as `0.3 * 10 = 3.0000000000000004`).
///
/// ```
/// use compress_dynamic::active_channels;
/// assert_eq!(active_channels(0.25, 64), 16);
/// assert_eq!(active_channels(0.3, 10), 3);
/// assert_eq!(active_channels(0.34, 10), 4);
/// assert_eq!(active_channels(0.01, 10), 1);
/// ```
pub fn active_channels(w: f64, channels: usize) -> usize {
    let c = (w * channels as f64 - 1e-7).ceil();
    (c.max(1.0) as usize).min(channels.max(1))
}

/// Checks that `w` is a width multiplier in `(0, 1]`.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] naming the value otherwise.
pub fn check_width(w: f64) -> Result<()> {
    if w > 0.0 && w <= 1.0 + WIDTH_EPS {
        Ok(())
    } else {
        Err(CoreError::config("width", format!("{w} is not in (0, 1]")).into())
    }
}

/// The width state a slimmable layer keeps: which of its sides follow the width multiplier
/// (a network's first layer keeps its input, its classifier its output) and the multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlimSides {
    slim_in: bool,
    slim_out: bool,
    width: f64,
}

impl SlimSides {
    /// At full width.
    pub(crate) fn new(slim_in: bool, slim_out: bool) -> Self {
        Self {
            slim_in,
            slim_out,
            width: 1.0,
        }
    }

    /// Active input channels of `full`.
    pub(crate) fn active_in(&self, full: usize) -> usize {
        self.active(self.slim_in, full)
    }

    /// Active output channels of `full`.
    pub(crate) fn active_out(&self, full: usize) -> usize {
        self.active(self.slim_out, full)
    }

    fn active(&self, slim: bool, full: usize) -> usize {
        if slim {
            active_channels(self.width, full)
        } else {
            full
        }
    }

    /// Switches to width `w` (see [`check_width`]; above 1 within the tolerance counts as 1).
    pub(crate) fn set_width(&mut self, w: f64) -> Result<()> {
        check_width(w)?;
        self.width = w.min(1.0);
        Ok(())
    }

    /// The current width multiplier.
    pub(crate) fn width(&self) -> f64 {
        self.width
    }
}

/// Index of `w` in `widths` (within a tiny tolerance).
pub(crate) fn width_index(layer: &str, widths: &[f64], w: f64) -> Result<usize> {
    widths
        .iter()
        .position(|&v| (v - w).abs() <= WIDTH_EPS)
        .ok_or_else(|| DynamicError::UnknownWidth {
            layer: layer.to_string(),
            width: w,
            available: widths.to_vec(),
        })
}

/// A layer that can run at a reduced width.
pub trait Slimmable {
    /// Switches to width multiplier `w`.
    ///
    /// # Errors
    ///
    /// A width outside `(0, 1]`, or (for layers with per-width state, such as
    /// [`SwitchableBatchNorm`](crate::SwitchableBatchNorm)) a width not configured.
    fn set_width(&mut self, w: f64) -> Result<()>;

    /// The current width multiplier.
    fn width(&self) -> f64;
}
