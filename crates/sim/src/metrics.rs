//! Latency statistics with `vllm bench serve`'s definitions and names.
//!
//! Per request (client view, times from the request's arrival): TTFT = first token − arrival;
//! TPOT = (last token − first token) / (outputs − 1) for outputs > 1; E2EL = last token −
//! arrival; ITL = every gap between consecutive tokens. Percentiles interpolate linearly between
//! order statistics (`np.percentile`, as vLLM uses; see [`crate::percentile`]). ITL samples go to a histogram (3 significant
//! digits) so that runs of hundreds of millions of tokens stay small; TTFT/TPOT/E2EL are kept
//! exactly.

use crate::percentile::{median, percentile};
use hdrhistogram::Histogram;
use serde_json::{Map, Value};

fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, v.sqrt())
}

/// Accumulates per-request latencies, in milliseconds.
pub struct LatencyStats {
    pub ttft_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    pub e2el_ms: Vec<f64>,
    /// Inter-token gaps in microseconds.
    itl_us: Histogram<u64>,
    itl_sum_ms: f64,
    itl_sumsq_ms: f64,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            ttft_ms: Vec::new(),
            tpot_ms: Vec::new(),
            e2el_ms: Vec::new(),
            // 1 µs to one hour, 3 significant digits; longer gaps saturate at the top.
            itl_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            itl_sum_ms: 0.0,
            itl_sumsq_ms: 0.0,
        }
    }
}

impl LatencyStats {
    pub fn record_itl(&mut self, gap_ns: u64) {
        let ms = gap_ns as f64 / 1e6;
        self.itl_sum_ms += ms;
        self.itl_sumsq_ms += ms * ms;
        self.itl_us.saturating_record(gap_ns.div_ceil(1000).max(1));
    }

    /// Records `count` inter-token gaps of `gap_ns` each: the same histogram counts and the
    /// same sums (added one gap at a time, in the same order) as `count` calls of
    /// [`LatencyStats::record_itl`], with one histogram update.
    pub fn record_itl_run(&mut self, gap_ns: u64, count: u64) {
        let ms = gap_ns as f64 / 1e6;
        for _ in 0..count {
            self.itl_sum_ms += ms;
            self.itl_sumsq_ms += ms * ms;
        }
        self.itl_us
            .saturating_record_n(gap_ns.div_ceil(1000).max(1), count);
    }

    /// Records a finished request's TTFT, TPOT (if > 1 output) and E2EL.
    pub fn record_request(&mut self, ttft_ms: f64, e2el_ms: f64, outputs: usize) {
        self.ttft_ms.push(ttft_ms);
        self.e2el_ms.push(e2el_ms);
        if outputs > 1 {
            self.tpot_ms
                .push((e2el_ms - ttft_ms) / (outputs - 1) as f64);
        }
    }

    /// `mean_/median_/std_/p90_/p99_{ttft,tpot,itl,e2el}_ms`.
    pub fn to_json(&mut self, out: &mut Map<String, Value>) {
        for (name, xs) in [
            ("ttft", &mut self.ttft_ms),
            ("tpot", &mut self.tpot_ms),
            ("e2el", &mut self.e2el_ms),
        ] {
            xs.sort_by(f64::total_cmp);
            let (m, s) = mean_std(xs);
            out.insert(format!("mean_{name}_ms"), m.into());
            out.insert(format!("median_{name}_ms"), median(xs).into());
            out.insert(format!("std_{name}_ms"), s.into());
            out.insert(format!("p90_{name}_ms"), percentile(xs, 90.0).into());
            out.insert(format!("p99_{name}_ms"), percentile(xs, 99.0).into());
        }
        let n = self.itl_us.len() as f64;
        let (m, s) = if n > 0.0 {
            let m = self.itl_sum_ms / n;
            (m, (self.itl_sumsq_ms / n - m * m).max(0.0).sqrt())
        } else {
            (0.0, 0.0)
        };
        let q = |h: &Histogram<u64>, q: f64| {
            if n > 0.0 {
                h.value_at_quantile(q) as f64 / 1e3
            } else {
                0.0
            }
        };
        out.insert("mean_itl_ms".into(), m.into());
        out.insert("median_itl_ms".into(), q(&self.itl_us, 0.5).into());
        out.insert("std_itl_ms".into(), s.into());
        out.insert("p90_itl_ms".into(), q(&self.itl_us, 0.9).into());
        out.insert("p99_itl_ms".into(), q(&self.itl_us, 0.99).into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_gaps_records_as_its_gaps_one_by_one() {
        let gaps = [7_000_123u64, 7_000_123, 7_000_123, 10_000_000, 1, 7_000_123];
        let mut one_by_one = LatencyStats::default();
        for g in gaps {
            one_by_one.record_itl(g);
        }
        let mut runs = LatencyStats::default();
        for run in gaps.chunk_by(|a, b| a == b) {
            runs.record_itl_run(run[0], run.len() as u64);
        }
        assert_eq!(runs.itl_us, one_by_one.itl_us);
        assert_eq!(runs.itl_sum_ms.to_bits(), one_by_one.itl_sum_ms.to_bits());
        assert_eq!(
            runs.itl_sumsq_ms.to_bits(),
            one_by_one.itl_sumsq_ms.to_bits()
        );
    }

    #[test]
    fn request_metrics() {
        let mut s = LatencyStats::default();
        s.record_request(10.0, 40.0, 4);
        s.record_request(20.0, 20.0, 1);
        s.record_itl(10_000_000);
        s.record_itl(20_000_000);
        let mut m = Map::new();
        s.to_json(&mut m);
        assert_eq!(m["mean_ttft_ms"], 15.0);
        assert_eq!(m["mean_tpot_ms"], 10.0);
        assert_eq!(m["mean_e2el_ms"], 30.0);
        assert_eq!(m["mean_itl_ms"], 15.0);
        assert_eq!(m["std_itl_ms"], 5.0);
        let median = m["median_itl_ms"].as_f64().unwrap();
        assert!((median - 10.0).abs() < 0.02, "{median}");
    }
}
