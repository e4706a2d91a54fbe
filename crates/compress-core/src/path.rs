//! Dotted parameter paths and path filters.

use std::fmt;

/// Dotted location of a parameter in a model, e.g. `encoder.0.weight`.
///
/// The traversal supplies it: containers push a segment with [`ParamPath::scoped`] before
/// visiting a child and pop it afterwards, so visitors never keep their own path stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ParamPath {
    segments: Vec<String>,
}

impl ParamPath {
    /// The empty path at the model's root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Runs `f` with `segment` pushed, popping it afterwards.
    ///
    /// A segment that contains dots is split, so `scoped("a.b", ..)` equals two nested scopes.
    pub fn scoped<R>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let before = self.segments.len();
        self.segments.extend(
            segment
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        let out = f(self);
        self.segments.truncate(before);
        out
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last segment (`weight` in `encoder.0.weight`), or `""` at the root.
    pub fn leaf(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    /// The path without its last segment (`encoder.0` for `encoder.0.weight`).
    pub fn parent(&self) -> String {
        let n = self.segments.len().saturating_sub(1);
        self.segments[..n].join(".")
    }
}

impl fmt::Display for ParamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// One element of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Tokenizes a glob; an unclosed `[` is a literal character.
fn glob_tokens(pattern: &str) -> Vec<GlobToken> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if tokens.last() != Some(&GlobToken::Star) {
                    tokens.push(GlobToken::Star);
                }
            }
            '?' => tokens.push(GlobToken::Any),
            '[' if (i + 2..chars.len()).any(|j| chars[j] == ']') => {
                let close = (i + 2..chars.len())
                    .find(|&j| chars[j] == ']')
                    .unwrap_or(chars.len());
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
                tokens.push(GlobToken::Set { negated, ranges });
                i = close;
            }
            c => tokens.push(GlobToken::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// Whether `pattern` is a well-formed glob: not empty, every `[` closed by a later `]`.
///
/// ```
/// use compress_core::glob_is_valid;
/// assert!(glob_is_valid("layers.[0-3].*"));
/// assert!(!glob_is_valid("layers.[0-3.*") && !glob_is_valid(""));
/// ```
pub fn glob_is_valid(pattern: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    !chars.is_empty()
        && chars
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == '[')
            .all(|(i, _)| (i + 2..chars.len()).any(|j| chars[j] == ']'))
}

/// Matches the whole `text` against a glob `pattern`: `*` matches any run of characters
/// (dots included), `?` exactly one character, and `[abc]`, `[a-z]`, `[!a-z]` one character
/// of (or not of) a set. An unclosed `[` matches itself.
///
/// ```
/// use compress_core::glob_match;
/// assert!(glob_match("*.bias", "encoder.0.bias"));
/// assert!(glob_match("head.*", "head.weight"));
/// assert!(!glob_match("head.*", "encoder.head"));
/// assert!(glob_match("layers.[0-2].*", "layers.1.w") && !glob_match("layers.[!0-2].*", "layers.1.w"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let tokens = glob_tokens(pattern);
    let s: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: O(|p| * |t|) worst case.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let step = match tokens.get(p) {
            Some(GlobToken::Char(c)) => *c == s[i],
            Some(GlobToken::Any) => true,
            Some(GlobToken::Set { negated, ranges }) => {
                ranges.iter().any(|&(a, b)| a <= s[i] && s[i] <= b) != *negated
            }
            Some(GlobToken::Star) => {
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
    tokens[p..].iter().all(|t| *t == GlobToken::Star)
}

/// Chooses which parameters a technique applies to, by path globs, parameter kind and rank.
///
/// How a parameter is selected (every technique that takes a filter uses [`ParamFilter::selects`]):
/// 1. its kind: [`ParamKind::Weight`](crate::ParamKind::Weight) is selected;
///    [`Bias`](crate::ParamKind::Bias) only with [`ParamFilter::with_bias`],
///    [`Norm`](crate::ParamKind::Norm) only with [`ParamFilter::with_norm`], and
///    [`Buffer`](crate::ParamKind::Buffer) never;
/// 2. a weight whose last path segment is `bias` counts as a bias (a user's `Param::new` makes
///    weights), and a weight with fewer than two dimensions (a vector: a bias, a scale, a
///    gate) is skipped unless [`ParamFilter::with_vectors`] is set;
/// 3. the path must match one of the [`include`](ParamFilter::include) globs (when there are
///    any) and none of the [`exclude`](ParamFilter::exclude) globs.
///
/// ```
/// use compress_core::{Param, ParamFilter, ParamKind};
/// use ndarray::ArrayD;
///
/// let f = ParamFilter::new().exclude("head.*");
/// assert!(f.matches("body.0.weight", ParamKind::Weight));
/// assert!(!f.matches("head.weight", ParamKind::Weight));
/// assert!(!f.matches("body.0.bias", ParamKind::Bias));
/// // Named `bias`, or one-dimensional: skipped by default even when made with `Param::new`.
/// let vector = Param::<f32>::new(ArrayD::zeros(vec![4]));
/// assert!(!f.selects("body.0.bias", &vector));
/// assert!(!f.selects("body.0.gate", &vector));
/// assert!(f.clone().with_vectors(true).selects("body.0.gate", &vector));
/// assert!(f.with_bias(true).selects("body.0.bias", &vector));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    bias: bool,
    norm: bool,
    vectors: bool,
}

impl ParamFilter {
    /// All weights of rank 2 or more, no biases, no normalisation parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts to paths matching `glob` (several includes are OR-ed).
    #[must_use]
    pub fn include(mut self, glob: impl Into<String>) -> Self {
        self.include.push(glob.into());
        self
    }

    /// Skips paths matching `glob`.
    #[must_use]
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.exclude.push(glob.into());
        self
    }

    /// Also selects biases: parameters of kind [`Bias`](crate::ParamKind::Bias) and
    /// parameters whose last path segment is `bias` (of any rank).
    #[must_use]
    pub fn with_bias(mut self, yes: bool) -> Self {
        self.bias = yes;
        self
    }

    /// Also selects one-dimensional weights (not named `bias`), which are skipped by default.
    #[must_use]
    pub fn with_vectors(mut self, yes: bool) -> Self {
        self.vectors = yes;
        self
    }

    /// Also selects normalisation scales and shifts.
    #[must_use]
    pub fn with_norm(mut self, yes: bool) -> Self {
        self.norm = yes;
        self
    }

    /// Whether the parameter `param` at `path` is selected: by kind, name, rank and globs
    /// (see the type's documentation). Techniques call this.
    pub fn selects<F: crate::Float>(&self, path: &str, param: &crate::Param<F>) -> bool {
        let is_vector = param.shape().len() < 2;
        let rank_ok = !is_vector
            || param.kind() != crate::ParamKind::Weight
            || self.vectors
            || (self.bias && is_bias_name(path));
        rank_ok && self.matches(path, param.kind())
    }

    /// Whether a parameter at `path` of `kind` is selected by kind, name and globs (not by
    /// rank: that needs the parameter, see [`ParamFilter::selects`]).
    pub fn matches(&self, path: &str, kind: crate::ParamKind) -> bool {
        use crate::ParamKind;
        let kind_ok = match kind {
            ParamKind::Weight => !is_bias_name(path) || self.bias,
            ParamKind::Bias => self.bias,
            ParamKind::Norm => self.norm,
            ParamKind::Buffer | ParamKind::Parametrization => false,
        };
        kind_ok
            && (self.include.is_empty() || self.include.iter().any(|g| glob_match(g, path)))
            && !self.exclude.iter().any(|g| glob_match(g, path))
    }
}

/// Whether the last segment of a dotted path is `bias`.
fn is_bias_name(path: &str) -> bool {
    path.rsplit('.').next() == Some("bias")
}
