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

/// Matches `text` against a glob `pattern` where `*` matches any run of characters
/// (dots included) and `?` matches exactly one character.
///
/// ```
/// use compress_core::glob_match;
/// assert!(glob_match("*.bias", "encoder.0.bias"));
/// assert!(glob_match("head.*", "head.weight"));
/// assert!(!glob_match("head.*", "encoder.head"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: O(|p| * |t|) worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Chooses which parameters a technique applies to, by path globs and parameter kind.
///
/// Defaults: every [`ParamKind::Weight`](crate::ParamKind::Weight) parameter is included;
/// biases and normalisation parameters are excluded unless [`ParamFilter::with_bias`] or
/// [`ParamFilter::with_norm`] is set.
///
/// ```
/// use compress_core::{ParamFilter, ParamKind};
/// let f = ParamFilter::new().exclude("head.*");
/// assert!(f.matches("body.0.weight", ParamKind::Weight));
/// assert!(!f.matches("head.weight", ParamKind::Weight));
/// assert!(!f.matches("body.0.bias", ParamKind::Bias));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    bias: bool,
    norm: bool,
}

impl ParamFilter {
    /// All weights, no biases, no normalisation parameters.
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

    /// Also selects biases.
    #[must_use]
    pub fn with_bias(mut self, yes: bool) -> Self {
        self.bias = yes;
        self
    }

    /// Also selects normalisation scales and shifts.
    #[must_use]
    pub fn with_norm(mut self, yes: bool) -> Self {
        self.norm = yes;
        self
    }

    /// Whether a parameter at `path` of `kind` is selected.
    pub fn matches(&self, path: &str, kind: crate::ParamKind) -> bool {
        use crate::ParamKind;
        let kind_ok = match kind {
            ParamKind::Weight => true,
            ParamKind::Bias => self.bias,
            ParamKind::Norm => self.norm,
            ParamKind::Buffer => false,
        };
        kind_ok
            && (self.include.is_empty() || self.include.iter().any(|g| glob_match(g, path)))
            && !self.exclude.iter().any(|g| glob_match(g, path))
    }
}
