//! inference-perf's load stages and the send times of their requests (`loadgen/load_timer.py`,
//! `loadgen/load_generator.py` `run_stage`, `main.py` for concurrent stages).
//!
//! A stage sends `int(rate × duration)` requests whatever its timer (`run_stage`):
//! - `constant` (`ConstantLoadTimer`): that many exponential gaps of mean 1/rate, scaled to sum
//!   to `duration`: Poisson-like spacing with the last request exactly `duration` in;
//! - `poisson` (`PoissonLoadTimer`): second after second, a Poisson(rate) count of requests
//!   (a second with none is skipped), each second's requests spaced as a constant timer of
//!   that many requests over one second;
//! - `concurrent` (`ConcurrentLoadStage`): `num_requests` at `concurrency_level`, run as a
//!   constant stage of rate `num_requests` over 1 s, the workers' semaphores holding at most
//!   `concurrency_level` requests in flight.
//!
//! The gaps come from the emulator's seeded generator (inference-perf's are unseeded numpy
//! draws): the same process, not the same times.

use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Poisson};
use rand_pcg::Pcg64Mcg;

/// Which timer spaces a stage's requests (`load.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind {
    Constant,
    Poisson,
    Concurrent,
}

impl LoadKind {
    /// `load.type` as inference-perf writes it.
    pub fn name(self) -> &'static str {
        match self {
            LoadKind::Constant => "constant",
            LoadKind::Poisson => "poisson",
            LoadKind::Concurrent => "concurrent",
        }
    }
}

/// One load stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadStage {
    /// Requests per second (a concurrent stage: its `num_requests`, over one second).
    pub rate: f64,
    /// Seconds.
    pub duration_s: f64,
    /// At most this many requests in flight (a concurrent stage's `concurrency_level`).
    pub concurrency: Option<usize>,
}

impl LoadStage {
    /// `int(rate * duration)`, as `run_stage` counts them.
    pub fn num_requests(&self) -> usize {
        (self.rate * self.duration_s).trunc() as usize
    }

    /// The send times of the stage's requests under `kind`'s timer, s from the timer's start,
    /// ascending.
    pub fn send_times(&self, kind: LoadKind, seed: u64) -> Vec<f64> {
        match kind {
            LoadKind::Constant | LoadKind::Concurrent => constant_send_times(*self, seed),
            LoadKind::Poisson => poisson_send_times(*self, seed),
        }
    }
}

/// `ConstantLoadTimer`: `int(rate × duration)` exponential gaps of mean 1/rate, scaled to sum to
/// `duration`; the send times (s from the timer's start), ascending, the last = `duration`.
pub fn constant_send_times(st: LoadStage, seed: u64) -> Vec<f64> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    spread(st.num_requests(), st.rate, st.duration_s, 0.0, &mut rng)
}

/// `n` exponential gaps of mean `1/rate` scaled to sum to `duration`, as times from `start`.
fn spread(n: usize, rate: f64, duration: f64, start: f64, rng: &mut Pcg64Mcg) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let exp = Exp::new(rate).expect("rate > 0");
    let gaps: Vec<f64> = (0..n).map(|_| exp.sample(rng)).collect();
    let scale = duration / gaps.iter().sum::<f64>();
    let mut t = start;
    gaps.iter()
        .map(|g| {
            t += g * scale;
            t
        })
        .collect()
}

/// `PoissonLoadTimer`, cut at the stage's `int(rate × duration)` requests: each second draws a
/// Poisson(rate) count and spreads it over that second as [`constant_send_times`] does; the
/// next second starts at the last request's time (the end of the second).
pub fn poisson_send_times(st: LoadStage, seed: u64) -> Vec<f64> {
    let n = st.num_requests();
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let counts = Poisson::new(st.rate).expect("rate > 0");
    let mut out = Vec::with_capacity(n);
    let mut second = 0.0;
    while out.len() < n {
        let k = counts.sample(&mut rng) as usize;
        if k == 0 {
            second += 1.0;
            continue;
        }
        let times = spread(k, k as f64, 1.0, second, &mut rng);
        second = *times.last().expect("k > 0");
        out.extend(times.into_iter().take(n - out.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(rate: f64, duration_s: f64) -> LoadStage {
        LoadStage {
            rate,
            duration_s,
            concurrency: None,
        }
    }

    #[test]
    fn constant_timer_counts_and_spacing() {
        let t = constant_send_times(stage(5.0, 10.0), 3);
        assert_eq!(t.len(), 50);
        assert!(t.windows(2).all(|w| w[1] > w[0]) && t[0] > 0.0);
        // The scaled gaps sum to the duration: the last request at its end.
        assert!((t[49] - 10.0).abs() < 1e-9, "{}", t[49]);
        // Exponential, not fixed: the gaps vary.
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let max = gaps.iter().cloned().fold(0.0, f64::max);
        let min = gaps.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(max > 4.0 * min, "{min} {max}");
        // int(rate × duration): 2.5 × 4 = 10; 0.7 × 3 = 2.1 → 2.
        assert_eq!(stage(0.7, 3.0).num_requests(), 2);
    }

    #[test]
    fn poisson_timer_fills_whole_seconds_with_poisson_counts() {
        let st = stage(4.0, 2_000.0);
        let t = poisson_send_times(st, 11);
        assert_eq!(t.len(), 8_000);
        assert!(t.windows(2).all(|w| w[1] >= w[0]) && t[0] > 0.0);
        // Each second's requests end on its last instant (a whole second from the start of
        // the first): the counts per second are Poisson(4), mean ≈ variance ≈ 4.
        let mut per_second = vec![0usize; t.last().unwrap().ceil() as usize + 1];
        for x in &t {
            per_second[(x - 1e-9).floor() as usize] += 1;
        }
        per_second.pop();
        let n = per_second.len() as f64;
        let mean = per_second.iter().sum::<usize>() as f64 / n;
        let var = per_second
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            (mean - 4.0).abs() < 0.15 && (var - 4.0).abs() < 0.5,
            "{mean} {var}"
        );
        // Seconds with no request are skipped: about e^-4 of them.
        let empty = per_second.iter().filter(|&&c| c == 0).count() as f64 / n;
        assert!((empty - (-4.0f64).exp()).abs() < 0.01, "{empty}");
        // Unlike the constant timer, the stage does not end at its duration.
        assert!((t.last().unwrap() - 2_000.0).abs() > 1e-6);
    }
}
