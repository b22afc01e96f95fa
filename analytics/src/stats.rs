//! Small robust statistics shared by the detectors, the daily figures and the evaluation
//! (`select_median` for the hot paths: no allocation, no full sort; [`SortedWindow`] and
//! [`CountedWindow`] for sliding windows whose median or percentile is read again and again).

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

/// The median of a sample (reorders it); `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    (!values.is_empty()).then(|| select_median(values))
}

/// The median by selection (reorders `v`); 0 when empty.
pub(crate) fn select_median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    let mid = n / 2;
    let (lower, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (below + m) / 2.0
    }
}

/// The median of the magnitudes `|x|` of `values`, exactly as [`select_median`] of them gives
/// it, but selected on their bit patterns (which for floats without a sign order as the
/// numbers do, NaN last as in the total order): integer comparisons instead of float ones, for
/// a hot path that takes the median of a few hundred magnitudes again and again (the spike
/// scale). `scratch` is reused between calls; 0 when empty.
pub(crate) fn median_magnitude(
    values: impl IntoIterator<Item = f64>,
    scratch: &mut Vec<u64>,
) -> f64 {
    scratch.clear();
    scratch.extend(values.into_iter().map(|x| x.abs().to_bits()));
    let n = scratch.len();
    if n == 0 {
        return 0.0;
    }
    let (lower, m, _) = scratch.select_nth_unstable(n / 2);
    let m = f64::from_bits(*m);
    if n % 2 == 1 {
        m
    } else {
        let below = lower.iter().copied().max().map_or(m, f64::from_bits);
        (below + m) / 2.0
    }
}

/// A robust standard deviation: 1.4826 × the median absolute deviation from `center`.
pub(crate) fn mad_sigma(values: &[f64], center: f64) -> f64 {
    let mut dev: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    1.4826 * median(&mut dev).unwrap_or(0.0)
}

/// Least-squares slope of `(x, y)` points; `None` when the x values do not vary.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    line_fit(points).map(|(b, _)| b)
}

/// Least-squares slope of `(x, y)` points and the share of y's variance it explains (R²,
/// 0 when y does not vary); `None` when the x values do not vary.
pub(crate) fn line_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.is_empty() {
        return None;
    }
    let k = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / k;
    let my = points.iter().map(|p| p.1).sum::<f64>() / k;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        0.0
    };
    (sxx > 0.0).then(|| (sxy / sxx, r2))
}

/// A sliding window that keeps its values in arrival order and, beside them, sorted: a new
/// value's place is found by counting the values below it, and it joins or replaces the
/// oldest by moving the values between the two places one step, without a comparison sort or
/// a branch per value; the median is read directly — exactly [`select_median`] of the same
/// values. For short windows of finite values whose median is read again and again (the drop
/// detector's profile slots and day offset). A −0 is kept as 0 (the two compare equal, and
/// counting needs values that sort one way only).
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedWindow {
    arrival: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub(crate) fn with_capacity(n: usize) -> Self {
        SortedWindow {
            arrival: VecDeque::with_capacity(n + 1),
            sorted: Vec::with_capacity(n + 1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.arrival.len()
    }

    pub(crate) fn clear(&mut self) {
        self.arrival.clear();
        self.sorted.clear();
    }

    /// How many values are below `x` (plain comparisons, which vectorise).
    #[inline]
    fn rank(&self, x: f64) -> usize {
        self.sorted.iter().map(|&y| usize::from(y < x)).sum()
    }

    /// Adds the newest value.
    #[inline]
    pub(crate) fn push_back(&mut self, x: f64) {
        debug_assert!(x.is_finite(), "a sorted window holds finite values");
        let x = x + 0.0;
        self.arrival.push_back(x);
        let at = self.rank(x);
        self.sorted.insert(at, x);
    }

    /// Adds the newest value, and when the window then holds more than `cap` values removes
    /// the oldest — moving only the values between the two places.
    #[inline]
    pub(crate) fn push_capped(&mut self, x: f64, cap: usize) {
        if self.arrival.len() < cap {
            self.push_back(x);
            return;
        }
        let Some(old) = self.arrival.pop_front() else {
            // A window of capacity 0 keeps nothing.
            return;
        };
        debug_assert!(x.is_finite(), "a sorted window holds finite values");
        let x = x + 0.0;
        self.arrival.push_back(x);
        // The oldest value's place (the first of its equals will do) and how many values are
        // below the new one.
        let from = self.rank(old);
        let below = self.rank(x);
        let s = &mut self.sorted;
        if x > old {
            // The old value was one of those below: the ones after it move down a place.
            s.copy_within(from + 1..below, from);
            s[below - 1] = x;
        } else {
            s.copy_within(below..from, below + 1);
            s[below] = x;
        }
    }

    /// Moves every value by `by` (the order stays).
    pub(crate) fn shift(&mut self, by: f64) {
        for x in self.arrival.iter_mut().chain(self.sorted.iter_mut()) {
            *x += by;
        }
    }

    /// The median (the mean of the middle two of an even count); 0 when empty.
    pub(crate) fn median(&self) -> f64 {
        let (s, n) = (&self.sorted, self.sorted.len());
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    /// The median of the absolute deviations from `center`, which must be the window's median:
    /// the deviations grow outwards from the median in both directions, so the middle ones are
    /// found by merging the two sides, without sorting.
    pub(crate) fn median_deviation(&self, center: f64) -> f64 {
        let s = &self.sorted;
        let n = s.len();
        if n == 0 {
            return 0.0;
        }
        let want = n / 2;
        let mut left = s.partition_point(|y| *y < center);
        let mut right = left;
        let mut prev = 0.0;
        let mut k = 0;
        // Take deviations in increasing order until the middle one (and the one before it).
        loop {
            let from_left = left.checked_sub(1).map(|i| (s[i] - center).abs());
            let from_right = s.get(right).map(|y| (y - center).abs());
            let d = match (from_left, from_right) {
                (Some(a), Some(b)) if a.total_cmp(&b) == Ordering::Less => {
                    left -= 1;
                    a
                }
                (_, Some(b)) => {
                    right += 1;
                    b
                }
                (Some(a), None) => {
                    left -= 1;
                    a
                }
                (None, None) => unreachable!("fewer deviations than values"),
            };
            if k == want {
                return if n % 2 == 1 { d } else { (prev + d) / 2.0 };
            }
            prev = d;
            k += 1;
        }
    }
}

/// A sliding window of small counts (run lengths) kept also as a histogram, for order
/// statistics near either end (a 99th percentile) without selection: a value joins or leaves
/// in O(log n), and the `k`-th smallest is found by walking the histogram from the nearer end.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountedWindow {
    arrival: VecDeque<usize>,
    counts: BTreeMap<usize, usize>,
}

impl CountedWindow {
    pub(crate) fn len(&self) -> usize {
        self.arrival.len()
    }

    pub(crate) fn push_back(&mut self, x: usize) {
        self.arrival.push_back(x);
        *self.counts.entry(x).or_default() += 1;
    }

    /// Removes the oldest value.
    pub(crate) fn pop_front(&mut self) -> Option<usize> {
        let x = self.arrival.pop_front()?;
        if let Some(n) = self.counts.get_mut(&x) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&x);
            }
        }
        Some(x)
    }

    /// The `k`-th smallest value (from 0); `None` beyond the window.
    pub(crate) fn nth(&self, k: usize) -> Option<usize> {
        let n = self.len();
        if k >= n {
            return None;
        }
        if k < n / 2 {
            let mut seen = 0;
            for (&x, &c) in &self.counts {
                seen += c;
                if seen > k {
                    return Some(x);
                }
            }
        } else {
            // The k-th smallest is the (n - 1 - k)-th largest.
            let mut seen = 0;
            for (&x, &c) in self.counts.iter().rev() {
                seen += c;
                if seen > n - 1 - k {
                    return Some(x);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_mad_and_slope() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert!((mad_sigma(&[1.0, 2.0, 3.0, 4.0, 100.0], 3.0) - 1.4826).abs() < 1e-12);
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 3.0)]), None);
        assert_eq!(
            line_fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]),
            Some((2.0, 1.0))
        );
        assert_eq!(line_fit(&[(0.0, 1.0), (1.0, 1.0)]), Some((0.0, 0.0)));
        assert_eq!(select_median(&mut []), 0.0);
        assert_eq!(select_median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(select_median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// Deterministic pseudo-random values with many repeats.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = ((x % 41) as f64 - 20.0) / 8.0;
                // Both zeros, which the total order tells apart.
                if v == 0.0 && x & 1 == 1 { -0.0 } else { v }
            })
            .collect()
    }

    #[test]
    fn a_sorted_window_has_the_median_and_spread_of_selection() {
        for cap in [0, 1, 2, 5, 12, 30] {
            let mut w = SortedWindow::with_capacity(cap);
            // The same window kept naively: in arrival order, sorted when looked at.
            let mut naive = VecDeque::new();
            for (i, x) in values(400, cap as u64 + 1).into_iter().enumerate() {
                w.push_capped(x, cap);
                // A −0 is kept as 0.
                naive.push_back(x + 0.0);
                if naive.len() > cap {
                    naive.pop_front();
                }
                let mut sorted: Vec<f64> = naive.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                assert_eq!(w.arrival, naive, "cap {cap} step {i}");
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&w.sorted), bits(&sorted), "cap {cap} step {i}");
                let mut v: Vec<f64> = w.arrival.iter().copied().collect();
                let m = select_median(&mut v);
                assert_eq!(w.median().to_bits(), m.to_bits(), "cap {cap} step {i}");
                let mut dev: Vec<f64> = w.arrival.iter().map(|x| (x - m).abs()).collect();
                let mad = select_median(&mut dev);
                assert_eq!(
                    w.median_deviation(m).to_bits(),
                    mad.to_bits(),
                    "cap {cap} step {i}"
                );
            }
        }
    }

    #[test]
    fn the_median_magnitude_is_the_median_of_the_absolute_values() {
        let mut scratch = Vec::new();
        for n in [0, 1, 2, 3, 24, 287, 288] {
            for seed in 1..4 {
                let mut v: Vec<f64> = values(n, seed * 31 + n as u64);
                v.extend([f64::INFINITY, -1e-300].iter().take(n.min(2)));
                let mut abs: Vec<f64> = v.iter().map(|x| x.abs()).collect();
                let want = select_median(&mut abs);
                let got = median_magnitude(v.iter().copied(), &mut scratch);
                assert_eq!(got.to_bits(), want.to_bits(), "n {n} seed {seed}");
            }
        }
    }

    #[test]
    fn a_counted_window_ranks_like_selection() {
        let mut w = CountedWindow::default();
        let lengths = values(500, 9).into_iter().map(|x| (x.abs() * 3.0) as usize);
        for (i, x) in lengths.enumerate() {
            w.push_back(x);
            if w.len() > 200 {
                w.pop_front();
            }
            let mut r: Vec<usize> = w.arrival.iter().copied().collect();
            r.sort_unstable();
            for k in [0, r.len() / 3, r.len() * 99 / 100, r.len() - 1] {
                assert_eq!(w.nth(k), Some(r[k]), "step {i} k {k}");
            }
            assert_eq!(w.nth(r.len()), None);
        }
    }
}
