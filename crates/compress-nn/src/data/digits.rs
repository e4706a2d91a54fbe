//! The UCI optical digits set, embedded (1,797 8x8 images, CC BY 4.0).

use compress_core::Float;
use ndarray::{ArrayD, IxDyn};

use super::Dataset;
use crate::{NnError, Result};

/// The embedded CSV: 64 pixels (0..16) then the label on each line. Source: Alpaydin &
/// Kaynak (1998), Optical Recognition of Handwritten Digits, UCI Machine Learning
/// Repository, <https://doi.org/10.24432/C50P49>, CC BY 4.0.
pub const DIGITS_CSV: &str = include_str!("../../data-files/digits.csv");

/// Parses a digits CSV (64 pixels 0..16 then a label 0..9 per line), scaling pixels to
/// `[0, 1]`. Samples are flat: `[N, 64]`.
///
/// # Errors
///
/// [`NnError::Format`] naming the line for a bad field or a wrong field count.
pub fn parse_digits<F: Float>(csv: &str) -> Result<Dataset<F>> {
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(bad(i, format!("{} fields, expected 65", fields.len())));
        }
        for f in &fields[..64] {
            let v: u8 = f
                .trim()
                .parse()
                .map_err(|_| bad(i, format!("pixel `{f}`")))?;
            if v > 16 {
                return Err(bad(i, format!("pixel {v} > 16")));
            }
            x.push(F::lit(f64::from(v) / 16.0));
        }
        let y: usize = fields[64]
            .trim()
            .parse()
            .map_err(|_| bad(i, format!("label `{}`", fields[64])))?;
        labels.push(y);
    }
    let n = labels.len();
    let x = ArrayD::from_shape_vec(IxDyn(&[n, 64]), x).map_err(compress_core::CoreError::from)?;
    Dataset::new(x, labels, 10)
}

fn bad(line: usize, reason: String) -> NnError {
    NnError::Format {
        path: format!("digits.csv line {}", line + 1),
        reason,
    }
}

/// All 1,797 embedded digits, flat `[1797, 64]`, pixels in `[0, 1]`.
///
/// # Errors
///
/// Never for the embedded file (its parse is tested); the `Result` covers
/// [`parse_digits`]'s contract.
pub fn digits_all<F: Float>() -> Result<Dataset<F>> {
    parse_digits(DIGITS_CSV)
}

/// The fixed stratified split of the embedded digits: `(train, test)` with 20% of each
/// class in the test set (1,438 / 359 samples), flat `[N, 64]`. Use
/// [`Dataset::reshaped`]`(&[1, 8, 8])` for images.
///
/// # Errors
///
/// As [`digits_all`].
///
/// ```
/// let (train, test) = compress_nn::data::digits::<f32>().unwrap();
/// assert_eq!(train.len() + test.len(), 1797);
/// assert_eq!(train.sample_shape(), &[64]);
/// ```
pub fn digits<F: Float>() -> Result<(Dataset<F>, Dataset<F>)> {
    digits_all()?.split_stratified(0.2, 20_151_998)
}
