//! The global magnitude threshold of data seen in chunks, for models larger than memory.

use compress_core::CoreError;

use super::Threshold;
use crate::Result;
use crate::error::check_sparsity;
use crate::select::target_count;

/// Order-preserving key of `|x|`: the bits of a non-negative `f32` sort like its value.
#[inline]
fn key(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// Where a finished [`StreamingThreshold`] cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    key: u32,
    ties: u64,
}

/// The exact magnitude cut over values that arrive in chunks (the tensors of a checkpoint
/// streamed from disk), in two passes over the same chunks and 512 KiB of memory whatever
/// the total size: the first pass histograms the high 16 bits of each `|w|`, the second the
/// low 16 bits inside the one high bucket that holds the cut.
///
/// It prunes what [`magnitude_mask`](crate::magnitude_mask) prunes on the concatenation of
/// the chunks: the `ceil(sparsity * n)` smallest `|w|`, ties broken by order (tested).
/// [`magnitude_threshold`](crate::magnitude_threshold) is the faster choice for data
/// already in memory.
///
/// ```
/// use compress_prune::StreamingThreshold;
/// # fn main() -> compress_prune::Result<()> {
/// let chunks = [vec![0.5f32, -0.1, 0.3], vec![-0.9, 0.2, 0.05]];
/// let mut t = StreamingThreshold::new(0.5)?;
/// for _ in 0..StreamingThreshold::PASSES {
///     for c in &chunks {
///         t.observe(c)?;
///     }
///     t.finish_pass()?;
/// }
/// assert_eq!(t.threshold()?.pruned, 3);
/// // Then, in the same order, which entries stay.
/// assert_eq!(t.keep_mask(&chunks[0])?, vec![true, false, true]);
/// assert_eq!(t.keep_mask(&chunks[1])?, vec![true, false, false]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StreamingThreshold {
    sparsity: f64,
    pass: usize,
    /// Values seen in the first pass, and so far in the current one.
    total: u64,
    seen: u64,
    hist: Vec<u64>,
    /// The high 16 bits of the cut and how many values lie in lower high buckets.
    high: u32,
    below: u64,
    cut: Option<Cut>,
    /// Equal-to-cut values still to prune while masking.
    ties_left: u64,
}

impl StreamingThreshold {
    /// Passes over the data before [`StreamingThreshold::threshold`] is known.
    pub const PASSES: usize = 2;

    /// A cut pruning the fraction `sparsity` of everything observed.
    ///
    /// # Errors
    ///
    /// [`PruneError::Sparsity`](crate::PruneError::Sparsity) unless `0 <= sparsity < 1`.
    pub fn new(sparsity: f64) -> Result<Self> {
        check_sparsity("sparsity", sparsity)?;
        Ok(Self {
            sparsity,
            pass: 0,
            total: 0,
            seen: 0,
            hist: vec![0; 1 << 16],
            high: 0,
            below: 0,
            cut: None,
            ties_left: 0,
        })
    }

    /// Feeds the next chunk of the current pass (chunks in the same order every pass).
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] for a NaN or infinite value (`index` counts from the
    /// start of the pass); [`CoreError::InvalidState`] after both passes.
    pub fn observe(&mut self, values: &[f32]) -> Result<()> {
        if self.pass >= Self::PASSES {
            return Err(state("observe after both passes"));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::NonFinite {
                path: "values".into(),
                index: self.seen as usize + i,
                value: f64::from(values[i]),
            }
            .into());
        }
        self.seen += values.len() as u64;
        if self.pass == 0 {
            for &v in values {
                self.hist[(key(v) >> 16) as usize] += 1;
            }
        } else {
            for &v in values {
                let k = key(v);
                if k >> 16 == self.high {
                    self.hist[(k & 0xffff) as usize] += 1;
                }
            }
        }
        Ok(())
    }

    /// Ends a pass; after the second the cut is known.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`] when the second pass saw a different number of values
    /// than the first, or after both passes.
    pub fn finish_pass(&mut self) -> Result<()> {
        match self.pass {
            0 => self.total = self.seen,
            1 if self.seen != self.total => {
                return Err(state(&format!(
                    "the second pass saw {} values, the first {}",
                    self.seen, self.total
                )));
            }
            1 => {}
            _ => return Err(state("finish_pass after both passes")),
        }
        self.seen = 0;
        let k = target_count(self.total as usize, self.sparsity) as u64;
        if k == 0 {
            // Nothing to prune; the second pass only confirms the count.
            if self.pass == 1 {
                self.cut = Some(Cut { key: 0, ties: 0 });
            }
            self.pass += 1;
            return Ok(());
        }
        let mut below = self.below;
        let mut bin = 0usize;
        while bin + 1 < self.hist.len() && below + self.hist[bin] < k {
            below += self.hist[bin];
            bin += 1;
        }
        if self.pass == 0 {
            self.high = bin as u32;
            self.below = below;
            self.hist.fill(0);
        } else {
            let cut = Cut {
                key: (self.high << 16) | bin as u32,
                ties: k - below,
            };
            self.cut = Some(cut);
            self.ties_left = cut.ties;
        }
        self.pass += 1;
        Ok(())
    }

    /// The cut: values with `|w| < value` are pruned, plus the first `ties` equal to it.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`] before both passes are finished.
    pub fn threshold(&self) -> Result<Threshold<f32>> {
        let cut = self
            .cut
            .ok_or_else(|| state("threshold before both passes"))?;
        let pruned = target_count(self.total as usize, self.sparsity);
        Ok(Threshold {
            value: if pruned == 0 {
                0.0
            } else {
                f32::from_bits(cut.key)
            },
            ties: cut.ties as usize,
            pruned,
        })
    }

    /// Which entries of the next chunk stay (`true`) under the cut: chunks must come in the
    /// order they were observed, since ties go to the first equal values.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`] before both passes are finished.
    pub fn keep_mask(&mut self, values: &[f32]) -> Result<Vec<bool>> {
        let cut = self
            .cut
            .ok_or_else(|| state("keep_mask before both passes"))?;
        if cut.ties == 0 && cut.key == 0 {
            return Ok(vec![true; values.len()]);
        }
        Ok(values
            .iter()
            .map(|&v| {
                let k = key(v);
                if k < cut.key {
                    false
                } else if k == cut.key && self.ties_left > 0 {
                    self.ties_left -= 1;
                    false
                } else {
                    true
                }
            })
            .collect())
    }
}

fn state(reason: &str) -> crate::PruneError {
    CoreError::InvalidState {
        layer: "StreamingThreshold".into(),
        reason: reason.into(),
    }
    .into()
}
