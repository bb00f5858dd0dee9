//! Cumulative distribution charts: the fraction of requests at or below each latency, one
//! curve per sample set. A curve is sampled at evenly spaced quantiles with the workspace's
//! `np.percentile` ([`llm_emu_sim::percentile`]), so its median and p99 are the very figures the
//! run's summary reports, and its size is bounded whatever the number of requests.

use super::line::LineChart;
use super::{Canvas, Drawn};
use llm_emu_sim::percentile;

/// Points of the curve: at most `max_points` quantiles `q` in `[0, 1]` with the value
/// `percentile(sorted, 100 q)`, as `(value, q)`. `sorted` must be ascending.
pub fn cdf_points(sorted: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    let n = sorted.len().min(max_points.max(2));
    (0..n)
        .map(|i| {
            let q = i as f64 / (n - 1).max(1) as f64;
            (percentile(sorted, q * 100.0), q)
        })
        .collect()
}

/// A CDF chart of `sets` (name, ascending values); `unit` names the values' unit.
pub fn draw(title: &str, unit: &str, sets: &[(&str, &[f64])], canvas: &Canvas) -> Drawn {
    let mut chart = LineChart::new(title, unit, "fraction of requests ≤ x");
    for (name, sorted) in sets {
        chart = chart.series(name, cdf_points(sorted, 400));
    }
    let mut drawn = chart.draw(canvas);
    drawn.kind = "cdf";
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_goes_from_min_to_max_through_the_median() {
        let xs: Vec<f64> = (1..=1001).map(f64::from).collect();
        let p = cdf_points(&xs, 401);
        assert_eq!(p.len(), 401);
        assert_eq!(p[0], (1.0, 0.0));
        assert_eq!(p[200], (501.0, 0.5));
        assert_eq!(p[400], (1001.0, 1.0));
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert_eq!(cdf_points(&[7.0], 400), vec![(7.0, 0.0)]);
    }
}
