//! Which tensors a file command transforms and which pass through untouched.
//!
//! A tensor is transformed when all of these hold:
//! - its dtype is a float (F32, F16, BF16, F64): integer and boolean tensors (position ids,
//!   attention masks, step counters) always pass through byte for byte;
//! - it has at least two dimensions: biases, norm weights and scalars (1-D or 0-D) pass through;
//! - it has at least one element;
//! - its name matches one of the `--include` globs (when any are given) and none of the
//!   `--exclude` globs (embeddings, for example: `--exclude '*embed*'`).
//!
//! Globs match the whole tensor name with [`compress_core::glob_match`]: `*` matches any run
//! of characters (dots included), `?` one character, and `[abc]` / `[a-z]` / `[!abc]` one
//! character of a set.

use compress_core::{glob_is_valid, glob_match};

use crate::error::{CheckpointError, Result};
use crate::reader::TensorInfo;

/// A checked glob pattern over tensor names, matched with [`compress_core::glob_match`] (the
/// one glob matcher of the workspace, shared with `ParamFilter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Checks `pattern`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidOption`] for an empty pattern or an unclosed `[` set.
    pub fn new(pattern: &str) -> Result<Self> {
        if !glob_is_valid(pattern) {
            return Err(CheckpointError::option(
                "--include/--exclude",
                format!("glob `{pattern}` is empty or has an unclosed `[`"),
            ));
        }
        Ok(Self {
            pattern: pattern.to_string(),
        })
    }

    /// The source pattern.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.pattern, name)
    }
}

/// The include/exclude rules of one command.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

/// Why a tensor is not transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Integer, boolean or 8-bit float dtype.
    NotFloat,
    /// Fewer than two dimensions (bias, norm, scalar).
    OneDim,
    /// No elements.
    Empty,
    /// Not matched by any `--include`.
    NotIncluded,
    /// Matched by an `--exclude`.
    Excluded,
}

impl Skip {
    /// A short reason for the summary table.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFloat => "non-float",
            Self::OneDim => "1-D",
            Self::Empty => "empty",
            Self::NotIncluded => "not included",
            Self::Excluded => "excluded",
        }
    }
}

impl Selector {
    /// Compiles the `--include` and `--exclude` patterns.
    ///
    /// # Errors
    ///
    /// As [`Glob::new`].
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        Ok(Self {
            include: include
                .iter()
                .map(|p| Glob::new(p))
                .collect::<Result<_>>()?,
            exclude: exclude
                .iter()
                .map(|p| Glob::new(p))
                .collect::<Result<_>>()?,
        })
    }

    /// Whether `t` should be transformed.
    ///
    /// # Errors
    ///
    /// The [`Skip`] reason when it passes through untouched.
    pub fn check(&self, t: &TensorInfo) -> std::result::Result<(), Skip> {
        if !t.dtype.is_float() {
            return Err(Skip::NotFloat);
        }
        if t.shape.len() < 2 {
            return Err(Skip::OneDim);
        }
        if t.numel() == 0 {
            return Err(Skip::Empty);
        }
        if !self.include.is_empty() && !self.include.iter().any(|g| g.matches(&t.name)) {
            return Err(Skip::NotIncluded);
        }
        if self.exclude.iter().any(|g| g.matches(&t.name)) {
            return Err(Skip::Excluded);
        }
        Ok(())
    }

    /// Patterns that matched none of `names` (to warn about typos).
    pub fn unmatched<'a>(&'a self, names: &[&str]) -> Vec<&'a str> {
        self.include
            .iter()
            .chain(&self.exclude)
            .filter(|g| !names.iter().any(|n| g.matches(n)))
            .map(Glob::pattern)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Dtype;
    use proptest::prelude::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(g("*.weight").matches("model.layers.0.mlp.weight"));
        assert!(!g("*.weight").matches("model.layers.0.mlp.weight_scale"));
        assert!(g("*embed*").matches("model.embed_tokens.weight"));
        assert!(g("layers.?.attn*").matches("layers.3.attn.q"));
        assert!(!g("layers.?.attn*").matches("layers.12.attn.q"));
        assert!(g("layers.[0-2].*").matches("layers.1.w"));
        assert!(!g("layers.[!0-2].*").matches("layers.1.w"));
        assert!(g("a**b").matches("ab"));
        assert!(g("*").matches(""));
        assert!(Glob::new("a[b").is_err());
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn selector_passes_through_non_floats_1d_and_excluded() {
        let t = |name: &str, dtype, shape: &[usize]| TensorInfo {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            begin: 0,
            end: 0,
        };
        let s = Selector::new(&[], &["*embed*".to_string()]).unwrap();
        assert_eq!(s.check(&t("w", Dtype::F32, &[2, 3])), Ok(()));
        assert_eq!(s.check(&t("b", Dtype::F32, &[3])), Err(Skip::OneDim));
        assert_eq!(
            s.check(&t("ids", Dtype::Other("I64", 8), &[1, 4])),
            Err(Skip::NotFloat)
        );
        assert_eq!(
            s.check(&t("embed.w", Dtype::BF16, &[4, 4])),
            Err(Skip::Excluded)
        );
        assert_eq!(s.check(&t("z", Dtype::F16, &[0, 4])), Err(Skip::Empty));
        let s = Selector::new(&["mlp.*".to_string()], &[]).unwrap();
        assert_eq!(
            s.check(&t("attn.w", Dtype::F32, &[2, 2])),
            Err(Skip::NotIncluded)
        );
        assert_eq!(s.unmatched(&["mlp.w"]), Vec::<&str>::new());
        assert_eq!(s.unmatched(&["attn.w"]), vec!["mlp.*"]);
    }

    proptest! {
        #[test]
        fn literal_and_star_globs_agree_with_string_ops(
            a in "[a-c.]{0,6}", b in "[a-c.]{0,6}", name in "[a-c.]{0,12}"
        ) {
            let (pat, name2) = (format!("{a}*{b}"), format!("{a}x{b}"));
            prop_assert!(g(&pat).matches(&name2));
            prop_assert_eq!(g(&format!("{a}*")).matches(&name), name.starts_with(&a));
            prop_assert_eq!(g(&format!("*{b}")).matches(&name), name.ends_with(&b));
            prop_assert_eq!(
                g(&format!("*{a}*")).matches(&name),
                name.contains(&a)
            );
            prop_assert_eq!(
                g(&format!("{a}*{b}")).matches(&name),
                name.len() >= a.len() + b.len() && name.starts_with(&a) && name.ends_with(&b)
            );
        }
    }
}
