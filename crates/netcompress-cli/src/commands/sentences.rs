//! The project's sentence file split in two, so that compressed models are measured on
//! sentences their calibration never saw: the first half of the shipped file's non-empty
//! lines (150 sentences) is the **calibration** part (`quantize` / `prune` `--calib` default),
//! the second half (150) the **evaluation** part (`eval --file` default). The file's
//! sentences are in no particular order (lengths and topics mixed), so both halves cover
//! the same kinds of sentence.

use std::path::Path;

use compress_transformer::{SENTENCES, lines};

use crate::error::{CliError, Result};

/// Which part of the shipped sentence file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The first half: calibration.
    Calibration,
    /// The second half: evaluation (held out from calibration).
    Evaluation,
}

impl Part {
    /// How the part is named in reports.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Calibration => "shipped sentences, calibration half (lines 1-150)",
            Self::Evaluation => "shipped sentences, evaluation half (lines 151-300)",
        }
    }
}

/// The sentences of one part of the shipped file.
pub(crate) fn shipped(part: Part) -> Vec<String> {
    let all = lines(SENTENCES);
    let half = all.len() / 2;
    let slice = match part {
        Part::Calibration => &all[..half],
        Part::Evaluation => &all[half..],
    };
    slice.iter().map(|s| (*s).to_string()).collect()
}

/// The non-empty lines of `file`, or the shipped `part` without a file; with the name of
/// the source for reports.
///
/// # Errors
///
/// The file cannot be read.
pub(crate) fn read_or_shipped(file: Option<&Path>, part: Part) -> Result<(Vec<String>, String)> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| compress_checkpoint::CheckpointError::io(f, e))?;
            let v = lines(&text).into_iter().map(str::to_string).collect();
            Ok((v, f.display().to_string()))
        }
        None => Ok((shipped(part), part.label().to_string())),
    }
}

/// Calibration sentences: `--calib`'s non-empty lines, or the shipped calibration half.
///
/// # Errors
///
/// The file cannot be read or has no non-empty line (a usage error naming `--calib`).
pub(crate) fn calibration(file: Option<&Path>) -> Result<(Vec<String>, String)> {
    let (texts, source) = read_or_shipped(file, Part::Calibration)?;
    if texts.is_empty() {
        return Err(CliError::Usage(format!(
            "--calib {source}: no non-empty line to calibrate on"
        )));
    }
    Ok((texts, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_are_disjoint_and_cover_the_file() {
        let (c, e) = (shipped(Part::Calibration), shipped(Part::Evaluation));
        assert_eq!((c.len(), e.len()), (150, 150));
        assert!(c.iter().all(|s| !e.contains(s)));
        let all: Vec<String> = lines(SENTENCES).iter().map(|s| s.to_string()).collect();
        assert_eq!([c, e].concat(), all);
    }
}
