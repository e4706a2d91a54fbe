//! 1-D k-means the fast way: sort once, prefix sums of `x` and `x²`; each Lloyd iteration
//! finds the cluster boundaries (midpoints between sorted centroids) by binary search and the
//! new centroids from prefix sums, in `O(k log n)`. k-means++ runs on the same sums.

use compress_core::{CoreError, Float};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::config::{ClusterInit, KMeansConfig};
use super::sort::{SortedValues, sorted_values};
use crate::QuantError;

/// The result of [`kmeans_1d`]: sorted centroids and the fit statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans1d {
    centroids: Vec<f64>,
    inertia: f64,
    iterations: usize,
    converged: bool,
}

impl KMeans1d {
    /// The `k` centroids, ascending (duplicates only when the data has fewer than `k`
    /// distinct values).
    pub fn centroids(&self) -> &[f64] {
        &self.centroids
    }

    /// Sum of squared distances of every value to its nearest centroid.
    pub fn inertia(&self) -> f64 {
        self.inertia
    }

    /// Lloyd iterations run.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Whether Lloyd stopped because no value changed cluster (a fixed point).
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// Index of the centroid nearest to `x` (ties go to the larger centroid).
    pub fn assign(&self, x: f64) -> usize {
        nearest(&self.centroids, x)
    }
}

/// Index of the nearest of the ascending `centroids` (ties to the larger one).
pub(crate) fn nearest(centroids: &[f64], x: f64) -> usize {
    let j = centroids.partition_point(|&c| c < x);
    if j == 0 {
        0
    } else if j == centroids.len() || x - centroids[j - 1] < centroids[j] - x {
        j - 1
    } else {
        j
    }
}

/// Values per block of the stored prefix sums.
const BLOCK: usize = 64;

/// Sorted values with prefix sums of `x` and `x²` stored every [`BLOCK`] values: a prefix sum
/// at `b` is the stored one at the start of its block plus the rest of the block added in the
/// same order, so it is bit-identical to a full running sum while the sums take 1/16 of the
/// memory of the values (f32 data stays f32: a tensor costs about one sorted copy of itself).
struct Sorted {
    x: SortedValues,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl Sorted {
    fn new(x: SortedValues) -> Self {
        let n = x.len();
        let mut s1 = Vec::with_capacity(n / BLOCK + 1);
        let mut s2 = Vec::with_capacity(n / BLOCK + 1);
        let (mut a, mut b) = (0.0, 0.0);
        for i in 0..n {
            if i.is_multiple_of(BLOCK) {
                s1.push(a);
                s2.push(b);
            }
            let v = x.at(i);
            a += v;
            b += v * v;
        }
        if n.is_multiple_of(BLOCK) {
            s1.push(a);
            s2.push(b);
        }
        Self { x, s1, s2 }
    }

    fn n(&self) -> usize {
        self.x.len()
    }

    /// Value `i`.
    fn at(&self, i: usize) -> f64 {
        self.x.at(i)
    }

    /// Sums of `x` and `x²` over `x[..b]`.
    fn prefix(&self, b: usize) -> (f64, f64) {
        let blk = b / BLOCK;
        let (mut a, mut q) = (self.s1[blk], self.s2[blk]);
        for i in blk * BLOCK..b {
            let v = self.x.at(i);
            a += v;
            q += v * v;
        }
        (a, q)
    }

    /// First index with `x >= v`.
    fn lower(&self, v: f64) -> usize {
        self.x.lower(v)
    }

    /// Sum of `(x - c)²` over `x[a..b]`.
    fn cost(&self, a: usize, b: usize, c: f64) -> f64 {
        if b <= a {
            return 0.0;
        }
        let n = (b - a) as f64;
        let ((sb, qb), (sa, qa)) = (self.prefix(b), self.prefix(a));
        let (s, q) = (sb - sa, qb - qa);
        (q - 2.0 * c * s + c * c * n).max(0.0)
    }

    /// Mean of `x[a..b]` (`None` when empty).
    fn mean(&self, a: usize, b: usize) -> Option<f64> {
        (b > a).then(|| (self.prefix(b).0 - self.prefix(a).0) / (b - a) as f64)
    }

    /// Segment starts for ascending centroids: cluster `j` is `x[starts[j]..starts[j + 1]]`.
    fn starts(&self, c: &[f64], out: &mut Vec<usize>) {
        out.clear();
        out.push(0);
        for w in c.windows(2) {
            out.push(self.lower(0.5 * (w[0] + w[1])));
        }
        out.push(self.n());
    }

    fn inertia(&self, c: &[f64], starts: &[usize]) -> f64 {
        c.iter()
            .enumerate()
            .map(|(j, &cj)| self.cost(starts[j], starts[j + 1], cj))
            .sum()
    }
}

/// Clusters `values` into `config.clusters` groups minimising the sum of squared distances
/// (Lloyd's algorithm in one dimension, exact and deterministic for a given seed).
///
/// Sorting dominates (a radix sort for f32); every Lloyd iteration costs `O(k log n)`, so
/// `k = 256` costs about what `k = 16` does.
///
/// # Errors
///
/// [`CoreError::Empty`] for no values, [`CoreError::NonFinite`] for NaN or infinity (path
/// `"values"`), [`CoreError::InvalidConfig`] for a bad cluster count.
///
/// # Examples
///
/// ```
/// use compress_quant::{ClusterInit, KMeansConfig, kmeans_1d};
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let x = [0.0f32, 0.1, 0.2, 5.0, 5.1, 5.2];
/// let km = kmeans_1d(&x, &KMeansConfig::new(2).init(ClusterInit::KMeansPlusPlus))?;
/// assert!((km.centroids()[0] - 0.1).abs() < 1e-6 && (km.centroids()[1] - 5.1).abs() < 1e-6);
/// assert!(km.converged());
/// # Ok(()) }
/// ```
pub fn kmeans_1d<F: Float>(values: &[F], config: &KMeansConfig) -> Result<KMeans1d, QuantError> {
    kmeans_1d_where(values, |_| true, config)
}

/// [`kmeans_1d`] of the values for which `keep` holds, without copying them first (the sort
/// takes the only copy). An empty selection is [`CoreError::Empty`].
pub(crate) fn kmeans_1d_where<F: Float>(
    values: &[F],
    keep: impl Fn(F) -> bool,
    config: &KMeansConfig,
) -> Result<KMeans1d, QuantError> {
    config.validate()?;
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite {
            path: "values".into(),
            index,
            value: values[index].as_f64(),
        }
        .into());
    }
    let sorted = sorted_values(values, keep);
    if sorted.len() == 0 {
        return Err(CoreError::Empty {
            path: "values".into(),
            shape: vec![0],
        }
        .into());
    }
    let data = Sorted::new(sorted);
    Ok(lloyd(&data, config))
}

fn lloyd(data: &Sorted, config: &KMeansConfig) -> KMeans1d {
    let k = config.clusters;
    let mut c = match config.init {
        ClusterInit::Linear => init_linear(data, k),
        ClusterInit::Density => init_density(data, k),
        ClusterInit::KMeansPlusPlus => init_plus_plus(data, k, config.seed),
    };
    c.sort_by(f64::total_cmp);
    let (mut starts, mut prev) = (Vec::with_capacity(k + 1), Vec::with_capacity(k + 1));
    let (mut iterations, mut converged) = (0, false);
    data.starts(&c, &mut prev);
    while iterations < config.max_iter {
        let mut empty = Vec::new();
        for (j, cj) in c.iter_mut().enumerate() {
            match data.mean(prev[j], prev[j + 1]) {
                Some(m) => *cj = m,
                None => empty.push(j),
            }
        }
        let moved = !empty.is_empty() && relocate_empty(data, &mut c, &prev, &empty);
        c.sort_by(f64::total_cmp);
        iterations += 1;
        data.starts(&c, &mut starts);
        if starts == prev && !moved {
            converged = true;
            break;
        }
        std::mem::swap(&mut starts, &mut prev);
    }
    let inertia = data.inertia(&c, &prev);
    KMeans1d {
        centroids: c,
        inertia,
        iterations,
        converged,
    }
}

/// Moves each empty cluster's centroid to the value farthest from its centroid (scikit-learn's
/// rule); in 1-D that value is an end of some cluster's segment. No move when every value
/// already sits on a centroid. Returns whether any centroid moved.
fn relocate_empty(data: &Sorted, c: &mut [f64], starts: &[usize], empty: &[usize]) -> bool {
    let mut taken: Vec<usize> = Vec::new();
    for &e in empty {
        let mut best: Option<(f64, usize)> = None;
        for j in 0..c.len() {
            let (a, b) = (starts[j], starts[j + 1]);
            if b <= a {
                continue;
            }
            for i in [a, b - 1] {
                let d = (data.at(i) - c[j]).abs();
                if d > 0.0 && !taken.contains(&i) && best.is_none_or(|(bd, _)| d > bd) {
                    best = Some((d, i));
                }
            }
        }
        if let Some((_, i)) = best {
            taken.push(i);
            c[e] = data.at(i);
        }
    }
    !taken.is_empty()
}

fn init_linear(data: &Sorted, k: usize) -> Vec<f64> {
    let (lo, hi) = (data.at(0), data.at(data.n() - 1));
    if k == 1 {
        return vec![data.mean(0, data.n()).unwrap_or(lo)];
    }
    (0..k)
        .map(|j| lo + (hi - lo) * j as f64 / (k - 1) as f64)
        .collect()
}

fn init_density(data: &Sorted, k: usize) -> Vec<f64> {
    let n = data.n();
    (0..k)
        .map(|j| {
            let q = (j as f64 + 0.5) / k as f64;
            data.at(((q * n as f64) as usize).min(n - 1))
        })
        .collect()
}

/// The points between two consecutive centres (or beyond the outer ones), each served by
/// the nearer centre: `x[a..split]` by `left`, `x[split..b]` by `right`.
#[derive(Debug, Clone, Copy)]
struct Gap {
    a: usize,
    split: usize,
    b: usize,
    left: f64,
    right: f64,
    cost: f64,
}

impl Gap {
    fn new(data: &Sorted, a: usize, b: usize, left: Option<f64>, right: Option<f64>) -> Self {
        let (l, r) = match (left, right) {
            (Some(l), Some(r)) => (l, r),
            (Some(l), None) => (l, l),
            (None, Some(r)) => (r, r),
            (None, None) => (0.0, 0.0),
        };
        let split = match (left, right) {
            (Some(_), Some(_)) => data.lower(0.5 * (l + r)).clamp(a, b),
            (Some(_), None) => b,
            _ => a,
        };
        let cost = data.cost(a, split, l) + data.cost(split, b, r);
        Self {
            a,
            split,
            b,
            left: l,
            right: r,
            cost,
        }
    }

    /// Cost of `x[a..u]`.
    fn prefix_cost(&self, data: &Sorted, u: usize) -> f64 {
        if u <= self.split {
            data.cost(self.a, u, self.left)
        } else {
            data.cost(self.a, self.split, self.left) + data.cost(self.split, u, self.right)
        }
    }
}

/// Greedy k-means++: each new centre is the best of `2 + ln k` D²-sampled candidates.
fn init_plus_plus(data: &Sorted, k: usize, seed: u64) -> Vec<f64> {
    let n = data.n();
    let mut rng = StdRng::seed_from_u64(seed);
    let first = data.at(rng.random_range(0..n));
    let mut centres = vec![first];
    let at = data.lower(first);
    let mut gaps = vec![
        Gap::new(data, 0, at, None, Some(first)),
        Gap::new(data, at, n, Some(first), None),
    ];
    let trials = 2 + (k as f64).ln() as usize;
    while centres.len() < k {
        let total: f64 = gaps.iter().map(|g| g.cost).sum();
        if total <= 0.0 {
            // Every value sits on a centre: duplicate the last one (empty clusters).
            centres.push(*centres.last().unwrap_or(&first));
            continue;
        }
        let mut best: Option<(f64, usize, f64)> = None;
        for _ in 0..trials {
            let (g, x) = sample_d2(data, &gaps, total, &mut rng);
            let gap = &gaps[g];
            let (lc, rc) = split_gap(data, gap, g, gaps.len(), x);
            let new_total = total - gap.cost + lc.cost + rc.cost;
            if best.is_none_or(|(t, _, _)| new_total < t) {
                best = Some((new_total, g, x));
            }
        }
        let Some((_, g, x)) = best else { break };
        let (lc, rc) = split_gap(data, &gaps[g], g, gaps.len(), x);
        gaps.splice(g..=g, [lc, rc]);
        centres.insert(g, x);
    }
    centres
}

/// The two gaps that replace gap `g` (of `count`) when a centre is added at `x`.
fn split_gap(data: &Sorted, gap: &Gap, g: usize, count: usize, x: f64) -> (Gap, Gap) {
    let at = data.lower(x).clamp(gap.a, gap.b);
    let left = (g > 0).then_some(gap.left);
    let right = (g + 1 < count).then_some(gap.right);
    (
        Gap::new(data, gap.a, at, left, Some(x)),
        Gap::new(data, at, gap.b, Some(x), right),
    )
}

/// Draws a value with probability proportional to its squared distance to the nearest centre.
fn sample_d2(data: &Sorted, gaps: &[Gap], total: f64, rng: &mut StdRng) -> (usize, f64) {
    let mut r = rng.random::<f64>() * total;
    let mut g = gaps.len() - 1;
    for (i, gap) in gaps.iter().enumerate() {
        if r < gap.cost {
            g = i;
            break;
        }
        r -= gap.cost;
    }
    if gaps[g].b <= gaps[g].a {
        // Rounding picked an empty gap: take the costliest one instead.
        g = (0..gaps.len())
            .max_by(|&i, &j| gaps[i].cost.total_cmp(&gaps[j].cost))
            .unwrap_or(0);
        r = 0.0;
    }
    let gap = &gaps[g];
    // Smallest t in [a, b) with prefix_cost(t + 1) > r.
    let (mut lo, mut hi) = (gap.a, gap.b - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if gap.prefix_cost(data, mid + 1) > r {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (g, data.at(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_prefix_sums_equal_a_full_running_sum_bit_for_bit() {
        for n in [1usize, 5, 63, 64, 65, 128, 300] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 1000) as f32 / 37.0 - 13.0)
                .collect();
            let data = Sorted::new(sorted_values(&v, |_| true));
            let (mut a, mut q) = (0.0f64, 0.0f64);
            for b in 0..=n {
                assert_eq!(data.prefix(b), (a, q), "n {n}, b {b}");
                if b < n {
                    let x = data.at(b);
                    a += x;
                    q += x * x;
                }
            }
        }
    }
}
