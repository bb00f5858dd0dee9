//! A real run's client-side result: what `vllm bench serve --save-result [--save-detailed]`
//! wrote (`vllm/benchmarks/serve.py`, 0.19), read for `validate --client-result`.
//!
//! With `--save-detailed` the file holds per request `input_lens`, `output_lens`, `ttfts` and
//! `itls` (seconds), `start_times` (the client's send times) and `errors`; the statistics are
//! then recomputed from them ([`ClientFigures`], one percentile implementation). Without it
//! only the summary keys (`{mean,median,std,p<N>}_{ttft,tpot,itl,e2el}_ms`) are there; they are
//! compared as they are, and the workload must come from elsewhere.
//!
//! Two other clients' summaries are read too (summary only, so `--workload` is needed):
//! - inference-perf's `*_lifecycle_metrics.json` (`inference_perf/reportgen/base.py`):
//!   `successes.latency.{time_to_first_token, time_per_output_token, inter_token_latency,
//!   request_latency}.{mean, median, p90, p99}` in seconds; its TPOT is vLLM's
//!   ((last − first)/(outputs − 1)) and its ITL every gap between chunks;
//! - guidellm's benchmark report (`guidellm/benchmark/schemas`): `benchmarks[0].metrics.
//!   {time_to_first_token_ms, inter_token_latency_ms, request_latency}.successful.{mean, median,
//!   percentiles.p90, percentiles.p99}`; guidellm's per-request `inter_token_latency_ms` is
//!   (last − first)/(outputs − 1), vLLM's TPOT, and `request_latency` is in seconds. guidellm
//!   has no per-gap ITL. A report of several benchmarks is refused (which one ran the workload
//!   is not recorded).

use crate::client_side::ClientRequest;
use crate::percentile::{median, percentile};
use crate::validate::err_pct;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientRunError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
}

fn bad(path: &Path, msg: impl Into<String>) -> ClientRunError {
    ClientRunError::Bad {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// One request as the real client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RealClientRequest {
    /// The client's send time, seconds (any origin); `None` when the file has no `start_times`.
    pub send_s: Option<f64>,
    pub prompt_len: usize,
    pub output_len: usize,
    pub ttft_ms: f64,
    /// Gaps between chunks, ms.
    pub itl_ms: Vec<f64>,
}

impl RealClientRequest {
    /// Last chunk − send: TTFT plus every gap (`vllm bench serve`'s `latency`).
    pub fn e2el_ms(&self) -> f64 {
        self.ttft_ms + self.itl_ms.iter().sum::<f64>()
    }
}

/// A `vllm bench serve` result.
pub struct ClientRun {
    /// Successful requests in the file's order (the order requests were sent); empty for a
    /// summary-only result.
    pub requests: Vec<RealClientRequest>,
    /// Requests the result lists as failed (`errors` non-empty).
    pub failed: usize,
    /// The summary keys as written.
    pub summary: Map<String, Value>,
    /// Which client wrote it: `vllm bench serve`, `inference-perf` or `guidellm`.
    pub format: &'static str,
    /// The statistics of another client's summary, as `{metric}_{stat}` in ms.
    other: Option<BTreeMap<String, f64>>,
}

/// `{mean, median, p90, p99}` of one distribution object, scaled to ms; `pct` holds the
/// percentiles (the object itself, or its `percentiles`).
fn dist_stats(
    out: &mut BTreeMap<String, f64>,
    metric: &str,
    d: Option<&Value>,
    nested_pct: bool,
    to_ms: f64,
) {
    let Some(d) = d.and_then(Value::as_object) else {
        return;
    };
    let pct = if nested_pct {
        d.get("percentiles").and_then(Value::as_object)
    } else {
        Some(d)
    };
    let get =
        |m: Option<&Map<String, Value>>, k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_f64);
    for (stat, x) in [
        ("mean", get(Some(d), "mean")),
        ("median", get(Some(d), "median")),
        ("p90", get(pct, "p90")),
        ("p99", get(pct, "p99")),
    ] {
        if let Some(x) = x.filter(|x| x.is_finite()) {
            out.insert(format!("{metric}_{stat}"), x * to_ms);
        }
    }
}

/// inference-perf's lifecycle summary, if `m` is one.
fn inference_perf_stats(m: &Map<String, Value>) -> Option<BTreeMap<String, f64>> {
    let lat = m.get("successes")?.get("latency")?;
    let mut out = BTreeMap::new();
    for (metric, key) in [
        ("ttft", "time_to_first_token"),
        ("tpot", "time_per_output_token"),
        ("itl", "inter_token_latency"),
        ("e2el", "request_latency"),
    ] {
        dist_stats(&mut out, metric, lat.get(key), false, 1e3);
    }
    if let Some(x) = m
        .get("successes")
        .and_then(|s| s.get("throughput"))
        .and_then(|t| t.get("requests_per_sec"))
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
    {
        out.insert(REQUESTS_PER_S.into(), x);
    }
    Some(out)
}

/// guidellm's report, if `m` is one.
fn guidellm_stats(
    m: &Map<String, Value>,
    path: &Path,
) -> Option<Result<BTreeMap<String, f64>, ClientRunError>> {
    let benches = m.get("benchmarks")?.as_array()?;
    if benches.len() != 1 {
        return Some(Err(bad(
            path,
            format!(
                "a guidellm report of {} benchmarks: give a report of the one benchmark that ran the workload",
                benches.len()
            ),
        )));
    }
    let metrics = benches[0].get("metrics")?;
    let mut out = BTreeMap::new();
    for (metric, key, to_ms) in [
        ("ttft", "time_to_first_token_ms", 1.0),
        ("tpot", "inter_token_latency_ms", 1.0),
        ("e2el", "request_latency", 1e3),
    ] {
        dist_stats(
            &mut out,
            metric,
            metrics.get(key).and_then(|d| d.get("successful")),
            true,
            to_ms,
        );
    }
    Some(Ok(out))
}

fn num_list(m: &Map<String, Value>, key: &str, path: &Path) -> Result<Vec<f64>, ClientRunError> {
    let v = m
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(path, format!("`{key}` is not a list")))?;
    v.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(path, format!("`{key}`[{i}] is not a number ≥ 0")))
        })
        .collect()
}

impl ClientRun {
    pub fn load(path: &Path) -> Result<ClientRun, ClientRunError> {
        let text =
            llm_emu_perf::text_file::read_text(path).map_err(|e| bad(path, e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))?;
        let Value::Object(m) = v else {
            return Err(bad(path, "not a JSON object"));
        };
        Self::from_map(m, path)
    }

    pub fn from_map(mut m: Map<String, Value>, path: &Path) -> Result<ClientRun, ClientRunError> {
        let other = match (inference_perf_stats(&m), guidellm_stats(&m, path)) {
            (Some(s), _) => Some(("inference-perf", s)),
            (None, Some(s)) => Some(("guidellm", s?)),
            (None, None) => None,
        };
        if let Some((format, stats)) = other {
            return Ok(ClientRun {
                requests: Vec::new(),
                failed: 0,
                summary: m,
                format,
                other: Some(stats),
            });
        }
        if !m.contains_key("mean_ttft_ms") && !m.contains_key("ttfts") {
            return Err(bad(
                path,
                "neither `mean_ttft_ms` nor `ttfts` (vllm bench serve), `successes.latency` \
                 (inference-perf) or `benchmarks` (guidellm): not a client-side result read here",
            ));
        }
        let mut requests = Vec::new();
        let mut failed = 0;
        if m.contains_key("ttfts") {
            let ttfts = num_list(&m, "ttfts", path)?;
            let ins = num_list(&m, "input_lens", path)?;
            let outs = num_list(&m, "output_lens", path)?;
            let starts = match m.get("start_times") {
                Some(_) => Some(num_list(&m, "start_times", path)?),
                None => None,
            };
            let itls = m
                .get("itls")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(path, "`itls` is not a list"))?;
            let n = ttfts.len();
            if ins.len() != n || outs.len() != n || itls.len() != n {
                return Err(bad(
                    path,
                    format!(
                        "per-request lists differ in length: ttfts {n}, input_lens {}, output_lens {}, itls {}",
                        ins.len(),
                        outs.len(),
                        itls.len()
                    ),
                ));
            }
            if starts.as_ref().is_some_and(|s| s.len() != n) {
                return Err(bad(path, "`start_times` differs in length from `ttfts`"));
            }
            let errors = m.get("errors").and_then(Value::as_array);
            for i in 0..n {
                let err = errors
                    .and_then(|e| e.get(i))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if err || outs[i] == 0.0 {
                    failed += 1;
                    continue;
                }
                let gaps = itls[i]
                    .as_array()
                    .ok_or_else(|| bad(path, format!("`itls`[{i}] is not a list")))?
                    .iter()
                    .map(|g| {
                        g.as_f64()
                            .filter(|g| g.is_finite() && *g >= 0.0)
                            .map(|g| g * 1e3)
                            .ok_or_else(|| bad(path, format!("`itls`[{i}] holds a non-number")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                requests.push(RealClientRequest {
                    send_s: starts.as_ref().map(|s| s[i]),
                    prompt_len: ins[i] as usize,
                    output_len: outs[i] as usize,
                    ttft_ms: ttfts[i] * 1e3,
                    itl_ms: gaps,
                });
            }
            for k in [
                "ttfts",
                "itls",
                "input_lens",
                "output_lens",
                "start_times",
                "generated_texts",
                "errors",
            ] {
                m.remove(k);
            }
        }
        Ok(ClientRun {
            requests,
            failed,
            summary: m,
            format: "vllm bench serve",
            other: None,
        })
    }

    /// Per-request data is there (`--save-detailed`).
    pub fn is_detailed(&self) -> bool {
        !self.requests.is_empty()
    }

    /// The workload the result describes, as plain workload JSONL (`arrival_s` from the first
    /// send, `prompt_len`, `output_len`), when it recorded send times: prompts get synthetic
    /// ids that share no prefix (right for `--dataset-name random`, not for shared prefixes).
    pub fn workload_jsonl(&self) -> Option<String> {
        if self.requests.is_empty() {
            return None;
        }
        let t0 = self
            .requests
            .iter()
            .map(|r| r.send_s)
            .try_fold(f64::INFINITY, |a, s| s.map(|s| a.min(s)))?;
        let mut out = String::new();
        let mut order: Vec<&RealClientRequest> = self.requests.iter().collect();
        order.sort_by(|a, b| a.send_s.unwrap_or(0.0).total_cmp(&b.send_s.unwrap_or(0.0)));
        for r in order {
            out += &format!(
                "{{\"arrival_s\": {}, \"prompt_len\": {}, \"output_len\": {}}}\n",
                r.send_s.unwrap_or(t0) - t0,
                r.prompt_len,
                r.output_len
            );
        }
        Some(out)
    }

    /// The figures of a detailed result.
    pub fn figures(&self) -> ClientFigures {
        let mut f = ClientFigures::default();
        for r in &self.requests {
            f.ttft.push(r.ttft_ms);
            f.e2el.push(r.e2el_ms());
            if r.output_len > 1 {
                f.tpot
                    .push(r.itl_ms.iter().sum::<f64>() / (r.output_len - 1) as f64);
            }
            f.itl.extend_from_slice(&r.itl_ms);
        }
        f
    }

    /// `{metric}_{stat}` from the summary keys (`{stat}_{metric}_ms`) where present.
    pub fn summary_stats(&self) -> BTreeMap<String, f64> {
        if let Some(s) = &self.other {
            return s.clone();
        }
        let mut out = BTreeMap::new();
        for metric in CLIENT_METRICS {
            for stat in CLIENT_STATS {
                if let Some(x) = self
                    .summary
                    .get(&format!("{stat}_{metric}_ms"))
                    .and_then(Value::as_f64)
                {
                    out.insert(format!("{metric}_{stat}"), x);
                }
            }
        }
        out
    }
}

pub const CLIENT_METRICS: [&str; 4] = ["ttft", "tpot", "itl", "e2el"];
/// Completed requests per second over the run (inference-perf's `requests_per_sec`: successes
/// / (last end − first send)), where a result has it.
pub const REQUESTS_PER_S: &str = "requests_per_s";
pub const CLIENT_STATS: [&str; 4] = ["mean", "median", "p90", "p99"];

/// Client-side samples, ms.
#[derive(Clone, Debug, Default)]
pub struct ClientFigures {
    pub ttft: Vec<f64>,
    pub tpot: Vec<f64>,
    pub itl: Vec<f64>,
    pub e2el: Vec<f64>,
}

impl ClientFigures {
    /// From the emulator's client-side requests and gaps.
    pub fn from_sim(reqs: &[ClientRequest], itl_ms: &[f64]) -> ClientFigures {
        ClientFigures {
            ttft: reqs.iter().map(|r| r.ttft_ms).collect(),
            tpot: reqs.iter().filter_map(ClientRequest::tpot_ms).collect(),
            itl: itl_ms.to_vec(),
            e2el: reqs.iter().map(|r| r.e2el_ms).collect(),
        }
    }

    /// `{metric}_{stat}` for every metric and stat (`np.mean`, `np.median`, `np.percentile`).
    pub fn stats(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (metric, xs) in CLIENT_METRICS
            .iter()
            .zip([&self.ttft, &self.tpot, &self.itl, &self.e2el])
        {
            if xs.is_empty() {
                continue;
            }
            let mut v = xs.clone();
            v.sort_by(f64::total_cmp);
            for stat in CLIENT_STATS {
                let x = match stat {
                    "mean" => v.iter().sum::<f64>() / v.len() as f64,
                    "median" => median(&v),
                    "p90" => percentile(&v, 90.0),
                    _ => percentile(&v, 99.0),
                };
                out.insert(format!("{metric}_{stat}"), x);
            }
        }
        out
    }
}

/// `{metric}_{stat}_{real|sim|err_pct}` for every figure both sides have.
pub fn client_comparison_json(
    real: &BTreeMap<String, f64>,
    sim: &BTreeMap<String, f64>,
) -> Map<String, Value> {
    let mut m = Map::new();
    for metric in CLIENT_METRICS {
        for stat in CLIENT_STATS {
            let k = format!("{metric}_{stat}");
            if let (Some(a), Some(b)) = (real.get(&k), sim.get(&k)) {
                m.insert(format!("{k}_real"), (*a).into());
                m.insert(format!("{k}_sim"), (*b).into());
                m.insert(format!("{k}_err_pct"), err_pct(*a, *b).into());
            }
        }
    }
    if let (Some(a), Some(b)) = (real.get(REQUESTS_PER_S), sim.get(REQUESTS_PER_S)) {
        m.insert(format!("{REQUESTS_PER_S}_real"), (*a).into());
        m.insert(format!("{REQUESTS_PER_S}_sim"), (*b).into());
        m.insert(format!("{REQUESTS_PER_S}_err_pct"), err_pct(*a, *b).into());
    }
    m
}

/// The side-by-side table of [`client_comparison_json`]'s figures.
pub fn client_comparison_table(m: &Map<String, Value>) -> String {
    let f = |k: String| m.get(&k).and_then(Value::as_f64);
    let mut out = format!(
        "{:<22}{:>12}{:>12}{:>10}\n",
        "client-side (ms)", "real", "emulated", "error"
    );
    for metric in CLIENT_METRICS {
        for stat in CLIENT_STATS {
            let k = format!("{metric}_{stat}");
            if let (Some(a), Some(b), Some(e)) = (
                f(format!("{k}_real")),
                f(format!("{k}_sim")),
                f(format!("{k}_err_pct")),
            ) {
                out += &format!(
                    "{:<22}{a:>12.2}{b:>12.2}{e:>+9.2}%\n",
                    format!("{} {stat}", metric.to_uppercase())
                );
            }
        }
    }
    if let (Some(a), Some(b), Some(e)) = (
        f(format!("{REQUESTS_PER_S}_real")),
        f(format!("{REQUESTS_PER_S}_sim")),
        f(format!("{REQUESTS_PER_S}_err_pct")),
    ) {
        out += &format!("{:<22}{a:>12.3}{b:>12.3}{e:>+9.2}%\n", "requests/s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detailed() -> Map<String, Value> {
        let Value::Object(m) = json!({
            "mean_ttft_ms": 15.0,
            "ttfts": [0.010, 0.020, 0.5],
            "itls": [[0.005, 0.007], [0.004], []],
            "input_lens": [100, 200, 300],
            "output_lens": [3, 2, 0],
            "start_times": [101.0, 100.5, 102.0],
            "errors": ["", "", "boom"],
        }) else {
            unreachable!()
        };
        m
    }

    #[test]
    fn detailed_result_figures() {
        let r = ClientRun::from_map(detailed(), Path::new("r.json")).unwrap();
        assert_eq!(r.requests.len(), 2);
        assert_eq!(r.failed, 1);
        assert!((r.requests[0].e2el_ms() - 22.0).abs() < 1e-9);
        let f = r.figures();
        assert_eq!(f.itl.len(), 3);
        assert!((f.tpot[0] - 6.0).abs() < 1e-9 && (f.tpot[1] - 4.0).abs() < 1e-9);
        let s = f.stats();
        assert!((s["ttft_mean"] - 15.0).abs() < 1e-9);
        assert!((s["e2el_median"] - 23.0).abs() < 1e-9);
        // Sent in the order of start_times: the second line is the first sent.
        let w = r.workload_jsonl().unwrap();
        let first = w.lines().next().unwrap();
        assert!(
            first.contains("\"arrival_s\": 0,") && first.contains("\"prompt_len\": 200"),
            "{w}"
        );
        assert!(
            w.lines().nth(1).unwrap().contains("\"arrival_s\": 0.5,"),
            "{w}"
        );
    }

    #[test]
    fn summary_only_has_no_workload() {
        let Value::Object(m) =
            json!({"mean_ttft_ms": 12.5, "p99_ttft_ms": 30.0, "median_itl_ms": 4.0})
        else {
            unreachable!()
        };
        let r = ClientRun::from_map(m, Path::new("s.json")).unwrap();
        assert!(!r.is_detailed());
        assert!(r.workload_jsonl().is_none());
        let s = r.summary_stats();
        assert_eq!(s["ttft_p99"], 30.0);
        assert_eq!(s["itl_median"], 4.0);
        let c = client_comparison_json(&s, &s);
        assert_eq!(c["ttft_mean_err_pct"], 0.0);
        assert!(!c.contains_key("tpot_mean_real"));
        assert!(client_comparison_table(&c).contains("ITL median"));
    }

    #[test]
    fn inference_perf_summary() {
        let Value::Object(m) = json!({"load_summary": {"count": 2}, "successes": {"count": 2,
            "latency": {
                "time_to_first_token": {"mean": 0.03, "median": 0.025, "p90": 0.04, "p99": 0.05},
                "time_per_output_token": {"mean": 0.004, "median": 0.004, "p90": 0.005, "p99": 0.006},
                "inter_token_latency": {"mean": 0.004, "median": 0.00003, "p90": 0.007, "p99": 0.0075},
                "request_latency": {"mean": 0.5, "median": 0.48, "p90": 0.6, "p99": 0.7}},
            "throughput": {"requests_per_sec": 4.0, "output_tokens_per_sec": 99.0}}})
        else {
            unreachable!()
        };
        let r = ClientRun::from_map(m, Path::new("ip.json")).unwrap();
        assert_eq!(r.format, "inference-perf");
        assert!(!r.is_detailed() && r.workload_jsonl().is_none());
        let s = r.summary_stats();
        assert!((s["ttft_mean"] - 30.0).abs() < 1e-9);
        assert!((s["itl_p90"] - 7.0).abs() < 1e-9);
        assert!((s["e2el_p99"] - 700.0).abs() < 1e-9);
        assert_eq!(s[REQUESTS_PER_S], 4.0);
        assert_eq!(s.len(), 17);
        let mut sim = s.clone();
        sim.insert(REQUESTS_PER_S.into(), 5.0);
        let c = client_comparison_json(&s, &sim);
        assert_eq!(c["requests_per_s_err_pct"], 25.0);
        assert!(client_comparison_table(&c).contains("requests/s"));
    }

    #[test]
    fn guidellm_report() {
        let dist = |mean: f64| {
            json!({"successful": {"mean": mean, "median": mean,
            "percentiles": {"p50": mean, "p90": mean * 2.0, "p99": mean * 3.0}}})
        };
        let report = json!({"benchmarks": [{"metrics": {
            "time_to_first_token_ms": dist(40.0),
            "inter_token_latency_ms": dist(8.0),
            "time_per_output_token_ms": dist(9.0),
            "request_latency": dist(1.5)}}]});
        let Value::Object(m) = report.clone() else {
            unreachable!()
        };
        let r = ClientRun::from_map(m, Path::new("g.json")).unwrap();
        assert_eq!(r.format, "guidellm");
        let s = r.summary_stats();
        assert_eq!(s["ttft_p90"], 80.0);
        // guidellm's per-request inter-token latency is vLLM's TPOT.
        assert_eq!(s["tpot_mean"], 8.0);
        assert_eq!(s["e2el_p99"], 4500.0);
        assert!(!s.contains_key("itl_mean"));
        let Value::Object(mut two) = report else {
            unreachable!()
        };
        let b = two["benchmarks"][0].clone();
        two.insert("benchmarks".into(), json!([b.clone(), b]));
        let e = ClientRun::from_map(two, Path::new("g.json")).err().unwrap();
        assert!(e.to_string().contains("2 benchmarks"), "{e}");
    }

    #[test]
    fn not_a_result_is_an_error() {
        let Value::Object(m) = json!({"foo": 1}) else {
            unreachable!()
        };
        let e = ClientRun::from_map(m, Path::new("x.json")).err().unwrap();
        assert!(e.to_string().contains("vllm bench serve"), "{e}");
        assert!(e.to_string().contains("guidellm"), "{e}");
        let mut m = detailed();
        m.insert("input_lens".into(), json!([1]));
        let e = ClientRun::from_map(m, Path::new("x.json")).err().unwrap();
        assert!(e.to_string().contains("differ in length"), "{e}");
    }
}
