//! `np.percentile(xs, q)` with numpy's default method, `'linear'` (numpy 2.x
//! `lib/_function_base_impl.py`: `percentile`, `_quantile`, `_get_indexes`, `_lerp`).
//!
//! vLLM's `bench serve` reports its latency percentiles with `np.percentile`, so the simulator's
//! reports and the bench client's results use this one function to stay comparable with vLLM's
//! numbers down to the last bit. numpy's steps, reproduced in the same floating-point order:
//!
//! 1. `q = q / 100`; virtual index `i = (n - 1) · q` (the `'linear'` entry of `_QuantileMethods`);
//! 2. neighbours `⌊i⌋` and `⌊i⌋ + 1`, both clamped to the last element when `i ≥ n − 1`;
//! 3. `γ = i − ⌊i⌋`; `_lerp(a, b, γ)` is `a + (b − a)·γ`, but `b − (b − a)·(1 − γ)` when
//!    `γ ≥ 0.5` (computing from the nearer end).

/// `np.percentile(sorted, q)` for ascending `sorted` and `q` in `[0, 100]`; 0 for no values
/// (vLLM passes `xs or 0`), NaN for a NaN `q`. A `q` outside `[0, 100]` (numpy raises) is
/// clamped to the nearest end instead.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return 0.0;
    };
    if q.is_nan() {
        return f64::NAN;
    }
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    if virtual_index >= (n - 1) as f64 {
        return lerp(last, last, virtual_index - virtual_index.floor());
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let below = virtual_index.floor();
    // `below` is in [0, n - 2] here, so both neighbours exist.
    let i = below as usize;
    lerp(sorted[i], sorted[i + 1], virtual_index - below)
}

/// numpy's `_lerp`: interpolates from the nearer end, so `γ = 1` gives exactly `b`.
fn lerp(a: f64, b: f64, gamma: f64) -> f64 {
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// `np.median(sorted)` for ascending `sorted`: the middle value, or the mean of the two middle
/// ones (numpy takes their `mean`: the sum halved, which can differ in the last bit from
/// [`percentile`] at 50); 0 for no values, as [`percentile`].
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    /// `(sorted values, q, np.percentile(values, q))`, made with numpy 2.4.6 by
    /// `print(repr(float(np.percentile(xs, q))))` for each row (Python floats are the same
    /// IEEE doubles, and `repr` round-trips them exactly). The last four rows are inputs on which
    /// the two percentile functions llm-emu had before (index `(n-1)·q/100`; one of them with a
    /// plain `a + (b-a)·γ`) were off from numpy in the last bit.
    const NUMPY: &[(&[f64], f64, f64)] = &[
        (&[5.0], 0.0, 5.0),
        (&[5.0], 50.0, 5.0),
        (&[5.0], 99.0, 5.0),
        (&[5.0], 100.0, 5.0),
        (&[1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        (&[1.0, 2.0, 3.0, 4.0], 100.0, 4.0),
        (&[1.0, 2.0, 3.0, 4.0], 50.0, 2.5),
        (&[1.0, 2.0, 3.0, 4.0], 90.0, 3.7),
        (&[1.0, 2.0, 3.0, 4.0, 10.0], 99.0, 9.76),
        (&[1.0, 2.0, 3.0], 25.0, 1.5),
        (&[2.0, 2.0, 2.0, 7.0], 50.0, 2.0),
        (&[2.0, 2.0, 2.0, 7.0], 99.0, 6.849999999999999),
        (&[3.0, 3.0, 3.0], 37.5, 3.0),
        (&[0.1, 0.2, 0.7], 33.3, 0.1666),
        (&[0.1, 0.2, 0.7], 66.7, 0.367),
        (&[1.0, 10.0], 12.5, 2.125),
        (&[1.0, 10.0], 87.5, 8.875),
        (
            &[0.5, 1.25, 3.0, 3.0, 8.75, 20.0, 41.5],
            95.0,
            35.04999999999998,
        ),
        (
            &[0.5, 1.25, 3.0, 3.0, 8.75, 20.0, 41.5],
            99.9,
            41.371000000000016,
        ),
        (&[0.5, 1.25, 3.0, 3.0, 8.75, 20.0, 41.5], 1.0, 0.545),
        (&[-4.0, -1.5, 0.0, 2.25], 60.0, -0.30000000000000027),
        (&[0.001, 1000000000.0], 50.0, 500000000.0005),
        (&[0.001, 1000000000.0], 99.99, 999900000.0),
        (&[10.24, 26.96, 33.89, 48.07], 99.0, 47.6446),
        (&[13.19, 16.59, 20.75, 46.79], 90.0, 38.978),
        (&[13.19, 16.59, 20.75, 46.79], 95.0, 42.88399999999999),
        (&[2.0, 2.0, 2.0, 7.0], 75.0, 3.25),
    ];

    #[test]
    fn matches_numpy_bit_for_bit() {
        for &(xs, q, want) in NUMPY {
            let got = percentile(xs, q);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{xs:?} q={q}: {got} != {want}"
            );
        }
    }

    #[test]
    fn empty_is_zero_and_out_of_range_clamps() {
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert!(percentile(&[1.0], f64::NAN).is_nan());
        assert_eq!(percentile(&[1.0, 2.0], -5.0), 1.0);
        assert_eq!(percentile(&[1.0, 2.0], 150.0), 2.0);
    }

    /// `np.median` and `np.percentile(xs, 50)`, made with numpy 2.4.6 as the table above: for
    /// an even count numpy's median halves the sum of the two middle values, which differs in
    /// the last bit from the percentile's interpolation on the last pair.
    #[test]
    fn median_as_numpy_computes_it() {
        assert_eq!(super::median(&[]), 0.0);
        assert_eq!(super::median(&[3.0]), 3.0);
        assert_eq!(super::median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(super::median(&[1.0, 4.0]), 2.5);
        let pair = [212.96819499142416, 910.9877835080679];
        assert_eq!(super::median(&pair), 561.977989249746);
        assert_eq!(percentile(&pair, 50.0), 561.9779892497461);
    }
}
