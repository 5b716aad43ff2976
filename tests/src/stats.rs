//! Small statistics for the benchmark: nearest-rank percentiles over samples.

/// Median, spread and mean of a set of samples (any unit; the caller names it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for no samples. NaNs sort last.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        Some(Summary {
            n: s.len(),
            p10: percentile(&s, 10.0),
            median: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            mean,
        })
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value with at least `p`% of
/// the samples at or below it. `sorted` must not be empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil();
    let idx = if rank < 1.0 { 0 } else { rank as usize - 1 };
    sorted[idx.min(n - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_ten() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = Summary::of(&v).expect("samples");
        assert_eq!((s.p10, s.median, s.p90), (1.0, 5.0, 9.0));
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.n, 10);
    }

    #[test]
    fn order_of_samples_does_not_matter() {
        let a = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        let b = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(a, b);
        assert_eq!(a.map(|s| s.median), Some(3.0));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let s = Summary::of(&[7.0]).expect("one sample");
        assert_eq!((s.p10, s.median, s.p90), (7.0, 7.0, 7.0));
    }
}
