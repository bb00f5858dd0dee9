//! Service-level objectives (`--slo-ttft-ms P99:500`) and the unbounded-queue test: what
//! decides whether a point is below its configuration's saturation.

use anyhow::{bail, Result};
use llm_emu_sim::RequestRecord;
use serde_json::{Map, Value};

/// One objective: a summary key (`p99_ttft_ms`) and its upper bound in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub key: String,
    pub limit_ms: f64,
}

impl Slo {
    /// `STAT:MS` for `metric` (`ttft`, `tpot`, `itl`, `e2el`), STAT one of `mean`, `median`,
    /// `p90`, `p99` (any case).
    pub fn parse(metric: &str, spec: &str) -> Result<Slo> {
        let Some((stat, ms)) = spec.split_once(':') else {
            bail!("--slo-{metric}-ms `{spec}`: expected STAT:MS, e.g. P99:500");
        };
        let stat = stat.trim().to_ascii_lowercase();
        if !["mean", "median", "p90", "p99"].contains(&stat.as_str()) {
            bail!("--slo-{metric}-ms `{spec}`: the statistic must be mean, median, p90 or p99");
        }
        let limit_ms: f64 = match ms.trim().parse() {
            Ok(v) if v > 0.0 && f64::is_finite(v) => v,
            _ => bail!("--slo-{metric}-ms `{spec}`: the bound must be a positive number of ms"),
        };
        Ok(Slo {
            key: format!("{stat}_{metric}_ms"),
            limit_ms,
        })
    }

    /// The measured value over the bound (above 1 breaks the objective); `None` when the
    /// summary lacks the key.
    pub fn ratio(&self, summary: &Map<String, Value>) -> Option<f64> {
        summary
            .get(&self.key)
            .and_then(Value::as_f64)
            .map(|v| v / self.limit_ms)
    }
}

/// How a point stands against the objectives and its queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Every objective met and the queue bounded.
    pub ok: bool,
    /// The worst objective's value over its bound (0 with no objectives).
    pub worst_ratio: f64,
    /// Why it is not ok (empty when ok).
    pub reason: String,
}

/// Judges a summary row (which carries `queue_unbounded`) against `slos`.
pub fn judge(row: &Map<String, Value>, slos: &[Slo]) -> Verdict {
    let mut reasons = Vec::new();
    let mut worst = 0.0f64;
    for s in slos {
        match s.ratio(row) {
            Some(r) => {
                worst = worst.max(r);
                if r > 1.0 {
                    reasons.push(format!("{} {:.1} > {}", s.key, r * s.limit_ms, s.limit_ms));
                }
            }
            None => reasons.push(format!("{} not reported", s.key)),
        }
    }
    if row.get("completed").and_then(Value::as_u64) == Some(0) {
        reasons.push("no request completed".into());
    }
    if row.get("queue_unbounded").and_then(Value::as_bool) == Some(true) {
        reasons.push("waiting queue grows through the run".into());
    }
    Verdict {
        ok: reasons.is_empty(),
        worst_ratio: worst,
        reason: reasons.join("; "),
    }
}

/// Waiting requests (arrived, not yet scheduled once) at 25, 50, 75 and 100 % of the arrival
/// span, from the per-request records.
pub fn waiting_samples(records: &[RequestRecord]) -> [usize; 4] {
    let span = records.iter().map(|r| r.arrival_s).fold(0.0f64, f64::max);
    let mut out = [0usize; 4];
    for (k, slot) in out.iter_mut().enumerate() {
        let t = span * (k + 1) as f64 / 4.0;
        let arrived = records.iter().filter(|r| r.arrival_s <= t).count();
        let started = records
            .iter()
            .filter(|r| r.first_scheduled_s.is_some_and(|s| s <= t))
            .count();
        *slot = arrived.saturating_sub(started);
    }
    out
}

/// Whether the waiting queue grows through the run: it never shrinks from one quarter of
/// the arrival span to the next, ends at least twice its first sample, and ends holding at
/// least 5 % of the requests (and 8 at the least). A burst that the engine absorbs fails the
/// first test; a bounded queue of a loaded but stable engine fails the second or third.
pub fn unbounded(samples: &[usize; 4], requests: usize) -> bool {
    let growing = samples.windows(2).all(|w| w[1] >= w[0]);
    let last = samples[3];
    growing && last >= 2 * samples[0].max(1) && last >= (requests / 20).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_judges() {
        let s = Slo::parse("ttft", "P99:500").unwrap();
        assert_eq!(s.key, "p99_ttft_ms");
        let row = json!({"p99_ttft_ms": 600.0, "completed": 3, "queue_unbounded": false});
        let v = judge(row.as_object().unwrap(), std::slice::from_ref(&s));
        assert!(!v.ok);
        assert!((v.worst_ratio - 1.2).abs() < 1e-12);
        let row = json!({"p99_ttft_ms": 400.0, "completed": 3, "queue_unbounded": false});
        assert!(judge(row.as_object().unwrap(), &[s]).ok);
        assert!(Slo::parse("ttft", "p95:500").is_err());
        assert!(Slo::parse("ttft", "p99:-1").is_err());
        assert!(Slo::parse("ttft", "500").is_err());
    }

    #[test]
    fn queue_growth() {
        assert!(unbounded(&[10, 40, 80, 120], 1000));
        assert!(!unbounded(&[10, 12, 9, 11], 1000));
        assert!(!unbounded(&[0, 1, 2, 3], 1000));
    }
}
