//! What a fleet must meet: latency objectives on the summary's statistics
//! (`--slo ttft:p99=500ms`, judged as `sweep` judges them) and, optionally, a goodput
//! fraction: the share of completed requests whose own TTFT, TPOT and E2E latency are each
//! within the objectives' bounds (vLLM bench's `--goodput` per-request test).

use crate::sweep::slo::{self, Slo};
use anyhow::{bail, Result};
use llm_emu_sim::RequestRecord;
use serde_json::{Map, Value};

/// The objectives of a plan.
#[derive(Clone, Debug)]
pub struct Objectives {
    pub slos: Vec<Slo>,
    /// The least share of completed requests that must meet every per-request bound.
    pub goodput: Option<f64>,
}

/// `METRIC:STAT=BOUND`: METRIC `ttft`, `tpot`, `itl` or `e2el`; STAT `mean`, `median`, `p90`
/// or `p99`; BOUND a positive number with `ms` (the default) or `s`.
pub fn parse_slo(spec: &str) -> Result<Slo> {
    let bad = |why: &str| anyhow::anyhow!("--slo `{spec}`: {why} (expected e.g. ttft:p99=500ms)");
    let (metric, rest) = spec
        .split_once(':')
        .ok_or_else(|| bad("no `:` after the metric"))?;
    let (stat, bound) = rest
        .split_once('=')
        .ok_or_else(|| bad("no `=` before the bound"))?;
    let metric = metric.trim().to_ascii_lowercase();
    if !["ttft", "tpot", "itl", "e2el"].contains(&metric.as_str()) {
        return Err(bad("the metric must be ttft, tpot, itl or e2el"));
    }
    let bound = bound.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = bound.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = bound.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (bound.as_str(), 1.0)
    };
    let ms = match number.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => v * scale,
        _ => return Err(bad("the bound must be a positive number of ms or s")),
    };
    // One statistic rule: the sweep's.
    Slo::parse(&metric, &format!("{}:{ms}", stat.trim()))
        .map_err(|_| bad("the statistic must be mean, median, p90 or p99"))
}

impl Objectives {
    pub fn new(slos: Vec<Slo>, goodput: Option<f64>) -> Result<Objectives> {
        if slos.is_empty() {
            bail!("give at least one --slo (e.g. --slo ttft:p99=500ms --slo tpot:p99=50ms)");
        }
        if let Some(g) = goodput {
            if !(g > 0.0 && g <= 1.0) {
                bail!("--goodput {g}: expected a fraction of requests in (0, 1]");
            }
            if Self::per_request_bounds(&slos).is_empty() {
                bail!("--goodput needs a ttft, tpot or e2el objective to judge each request by");
            }
        }
        Ok(Objectives { slos, goodput })
    }

    /// The tightest bound per metric that a single request can be judged by (ms).
    fn per_request_bounds(slos: &[Slo]) -> Vec<(&'static str, f64)> {
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for metric in ["ttft", "tpot", "e2el"] {
            let suffix = format!("_{metric}_ms");
            if let Some(b) = slos
                .iter()
                .filter(|s| s.key.ends_with(&suffix))
                .map(|s| s.limit_ms)
                .reduce(f64::min)
            {
                out.push((metric, b));
            }
        }
        out
    }

    /// Adds `goodput_fraction` to a row from its run's records (with `--goodput`).
    pub fn add_goodput(&self, records: &[RequestRecord], row: &mut Map<String, Value>) {
        if self.goodput.is_none() {
            return;
        }
        let bounds = Self::per_request_bounds(&self.slos);
        let (mut done, mut good) = (0usize, 0usize);
        for r in records {
            let (Some(first), Some(last), None) = (r.first_token_s, r.last_token_s, &r.error)
            else {
                continue;
            };
            if r.finish_reason == Some("abort") {
                continue;
            }
            done += 1;
            let ttft = (first - r.arrival_s) * 1000.0;
            let e2el = (last - r.arrival_s) * 1000.0;
            let tpot = if r.output_len > 1 {
                (last - first) * 1000.0 / (r.output_len - 1) as f64
            } else {
                0.0
            };
            let ok = bounds.iter().all(|(m, b)| match *m {
                "ttft" => ttft <= *b,
                "tpot" => tpot <= *b,
                _ => e2el <= *b,
            });
            good += ok as usize;
        }
        let fraction = if done > 0 {
            good as f64 / done as f64
        } else {
            0.0
        };
        row.insert("goodput_fraction".into(), fraction.into());
    }

    /// Judges a row: the sweep's verdict (objectives, completion, bounded queue) and the
    /// goodput fraction. `worst_ratio` also counts the goodput shortfall (wanted / measured).
    pub fn judge(&self, row: &Map<String, Value>) -> slo::Verdict {
        let mut v = slo::judge(row, &self.slos);
        if let Some(want) = self.goodput {
            let got = row
                .get("goodput_fraction")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            if got < want {
                let why = format!("goodput {got:.3} < {want}");
                v.reason = if v.reason.is_empty() {
                    why
                } else {
                    format!("{}; {why}", v.reason)
                };
                v.ok = false;
                v.worst_ratio =
                    v.worst_ratio
                        .max(if got > 0.0 { want / got } else { f64::INFINITY });
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objectives() {
        let s = parse_slo("ttft:p99=500ms").unwrap();
        assert_eq!((s.key.as_str(), s.limit_ms), ("p99_ttft_ms", 500.0));
        let s = parse_slo("TPOT:median=0.05s").unwrap();
        assert_eq!((s.key.as_str(), s.limit_ms), ("median_tpot_ms", 50.0));
        assert_eq!(parse_slo("e2el:mean=2000").unwrap().limit_ms, 2000.0);
        for bad in [
            "ttft=500",
            "ttft:p99",
            "foo:p99=1",
            "ttft:p95=1",
            "ttft:p99=-1ms",
            "ttft:p99=x",
        ] {
            assert!(parse_slo(bad).is_err(), "{bad}");
        }
    }

    fn rec(arrival: f64, first: f64, last: f64, out: usize) -> RequestRecord {
        RequestRecord {
            request_id: "r".into(),
            engine: Some(0),
            arrival_s: arrival,
            queued_s: Some(arrival),
            first_scheduled_s: Some(arrival),
            first_token_s: Some(first),
            last_token_s: Some(last),
            prompt_len: 10,
            output_len: out,
            cached_tokens: 0,
            num_preemptions: 0,
            finish_reason: Some("length"),
            error: None,
        }
    }

    #[test]
    fn goodput_counts_requests_within_every_bound() {
        let o = Objectives::new(
            vec![
                parse_slo("ttft:p99=100ms").unwrap(),
                parse_slo("tpot:p99=10ms").unwrap(),
            ],
            Some(0.75),
        )
        .unwrap();
        // TTFT 50 ms and TPOT 5 ms: good; TTFT 150 ms: bad; TPOT 20 ms: bad; one good more.
        let recs = [
            rec(0.0, 0.05, 0.095, 10),
            rec(0.0, 0.15, 0.2, 10),
            rec(0.0, 0.05, 0.23, 10),
            rec(1.0, 1.01, 1.055, 10),
        ];
        let mut row = Map::new();
        o.add_goodput(&recs, &mut row);
        assert_eq!(row["goodput_fraction"], 0.5);
        row.insert("p99_ttft_ms".into(), 50.0.into());
        row.insert("p99_tpot_ms".into(), 5.0.into());
        let v = o.judge(&row);
        assert!(!v.ok && v.reason.contains("goodput"), "{v:?}");
        assert!((v.worst_ratio - 1.5).abs() < 1e-12);
        assert!(Objectives::new(vec![], None).is_err());
        assert!(Objectives::new(vec![parse_slo("itl:p99=5").unwrap()], Some(0.9)).is_err());
        assert!(Objectives::new(vec![parse_slo("ttft:p99=5").unwrap()], Some(1.5)).is_err());
    }
}
