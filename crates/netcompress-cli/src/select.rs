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
//! Globs match the whole tensor name; `*` matches any run of characters (dots included), `?`
//! matches one character (as [`compress_core::glob_match`], which a property test checks this
//! against), and `[abc]` / `[a-z]` / `[!abc]` match one character of a set.

use crate::error::{CliError, Result};
use crate::safetensors_io::TensorInfo;

/// A compiled glob pattern over tensor names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for an unclosed `[` set or an empty pattern.
    pub(crate) fn new(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(CliError::Usage("empty glob pattern".to_string()));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '[' => {
                    let close =
                        (i + 2..chars.len())
                            .find(|&j| chars[j] == ']')
                            .ok_or_else(|| {
                                CliError::Usage(format!("glob `{pattern}`: unclosed `[`"))
                            })?;
                    let mut body = &chars[i + 1..close];
                    let negated = matches!(body.first(), Some('!' | '^'));
                    if negated {
                        body = &body[1..];
                    }
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < body.len() {
                        if k + 2 < body.len() && body[k + 1] == '-' {
                            ranges.push((body[k], body[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((body[k], body[k]));
                            k += 1;
                        }
                    }
                    tokens.push(Token::Set { negated, ranges });
                    i = close;
                }
                c => tokens.push(Token::Char(c)),
            }
            i += 1;
        }
        Ok(Self {
            pattern: pattern.to_string(),
            tokens,
        })
    }

    /// The source pattern.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern (iterative, linear-time backtracking on `*`).
    pub(crate) fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            let step = match self.tokens.get(p) {
                Some(Token::Char(c)) => *c == s[i],
                Some(Token::Any) => true,
                Some(Token::Set { negated, ranges }) => {
                    ranges.iter().any(|&(a, b)| a <= s[i] && s[i] <= b) != *negated
                }
                Some(Token::Star) => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                None => false,
            };
            if step {
                p += 1;
                i += 1;
            } else if let Some((sp, si)) = star {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            } else {
                return false;
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::Star)
    }
}

/// The include/exclude rules of one command.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

/// Why a tensor is not transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
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
    pub(crate) fn reason(self) -> &'static str {
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
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self> {
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

    /// `Ok(())` when `t` should be transformed, otherwise why it passes through.
    pub(crate) fn check(&self, t: &TensorInfo) -> std::result::Result<(), Skip> {
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
    pub(crate) fn unmatched<'a>(&'a self, names: &[&str]) -> Vec<&'a str> {
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
    use crate::safetensors_io::Dtype;
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
        fn agrees_with_the_core_glob_without_sets(pat in "[ab.*?]{1,8}", name in "[ab.]{0,10}") {
            prop_assert_eq!(g(&pat).matches(&name), compress_core::glob_match(&pat, &name));
        }

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
