//! Emulated vs. real: per-request engine-side latencies of a real vLLM run
//! (`../shared/data/real-runs/<case>/vllm/`) against a simulation of the same workload.
//!
//! Definitions (`../shared/docs/operator-profiles.md`): TTFT = first token − queued; E2E =
//! last token − queued; TPOT = (last − first)/(outputs − 1) for outputs > 1; aggregated as mean,
//! median, p90, p95, p99 (linear interpolation); error = (emulated − real)/real. Output throughput =
//! Σ outputs / (last token of the run − first queued).

use crate::driver::RequestRecord;
use crate::percentile::{median, percentile};
use crate::run_record::{RunRecord, RunRecordError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RealRunError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
    #[error(transparent)]
    Record(#[from] RunRecordError),
}

fn bad(path: &Path, msg: impl Into<String>) -> RealRunError {
    RealRunError::Bad {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The keys of a `requests.jsonl` line: those [`RealRequest`] reads, and `scheduled_ts`, which
/// the comparison does not need (TTFT and E2E count from `queued_ts`).
const REQUEST_KEYS: &[&str] = &[
    "request_id",
    "input_toks",
    "output_toks",
    "arrival_time",
    "queued_ts",
    "scheduled_ts",
    "first_token_ts",
    "last_token_ts",
];

/// Why line `line` of `requests.jsonl` (at `rp`) is not a request, from its object `v` (`None`
/// when the line is not a JSON object) and the parser's message `msg`: a request that never
/// produced a token (aborted, failed) has no timestamp to compare, and that is said rather
/// than leaving the parser's words alone.
fn bad_request_line(rp: &Path, line: usize, v: Option<&Value>, msg: &str) -> RealRunError {
    // Absent or null: not recorded; any other non-number: not readable.
    let missing = |k: &str| v.is_some_and(|v| v.get(k).is_none_or(Value::is_null));
    let stamps = ["queued_ts", "first_token_ts", "last_token_ts"];
    let unreadable = stamps.into_iter().find_map(|k| {
        let x = v?.get(k)?;
        (!x.is_null() && !x.is_number()).then(|| format!("`{k}` = {x}"))
    });
    let token_stamps = ["first_token_ts", "last_token_ts"];
    if let Some(what) = unreadable {
        bad(
            rp,
            format!("line {line}: {what} is not a number of seconds"),
        )
    } else if let Some(k) = token_stamps.into_iter().find(|k| missing(k)) {
        bad(
            rp,
            format!(
                "line {line}: no `{k}`: a request that did not complete (aborted or failed) \
                 cannot be compared; validate replays runs whose every request completed"
            ),
        )
    } else if missing("queued_ts") {
        bad(
            rp,
            format!(
                "line {line}: no `queued_ts`, the time the engine queued the request, from \
                 which TTFT and E2E are measured: the record is incomplete"
            ),
        )
    } else {
        // serde's own position (`at line 1 column N`) is of the line, not the file.
        let msg = msg.split(" at line ").next().unwrap_or(msg);
        let what = if v.is_none() {
            "not a JSON object: "
        } else {
            ""
        };
        bad(rp, format!("line {line}: {what}{msg}"))
    }
}

/// One request of a real run, engine-side monotonic seconds.
#[derive(Clone, Debug, Deserialize)]
pub struct RealRequest {
    pub request_id: String,
    /// Prompt tokens the server processed, where the run records them.
    #[serde(default, deserialize_with = "opt_token_count")]
    pub input_toks: Option<usize>,
    #[serde(deserialize_with = "token_count")]
    pub output_toks: usize,
    /// Wall-clock seconds at which vLLM's API server created the request (`arrival_time`).
    /// One clock for every engine of the server, so it orders requests as the client sent
    /// them even where data-parallel engines stamp `queued_ts` a few µs apart in the other
    /// order. Not comparable with the monotonic `*_ts` fields.
    #[serde(default)]
    pub arrival_time: Option<f64>,
    pub queued_ts: f64,
    /// When the engine first scheduled it (checked to lie between queued and first token; the
    /// comparison counts from `queued_ts`).
    #[serde(default)]
    pub scheduled_ts: Option<f64>,
    pub first_token_ts: f64,
    pub last_token_ts: f64,
}

/// A token count: a whole number, also when written as a float (`769.0`, as pandas writes an
/// integer column that held a missing value).
fn whole_count<E: serde::de::Error>(n: serde_json::Number) -> Result<usize, E> {
    crate::whole_number::whole_u64(&n)
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| E::custom(format!("`{n}` is not a token count (a whole number ≥ 0)")))
}

fn token_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    whole_count(serde_json::Number::deserialize(d)?)
}

fn opt_token_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(whole_count)
        .transpose()
}

pub struct RealRun {
    /// Everything the run recorded about its engine, GPU and cluster.
    pub record: RunRecord,
    pub requests: Vec<RealRequest>,
}

impl RealRun {
    /// Reads the run's record ([`RunRecord::load`]) and `requests.jsonl` beside its `meta.json`.
    pub fn load(dir: &Path) -> Result<RealRun, RealRunError> {
        let mut record = RunRecord::load(dir)?;
        let rp = record
            .meta_path
            .parent()
            .unwrap_or(dir)
            .join("requests.jsonl");
        let text = llm_emu_perf::text_file::read_text(&rp).map_err(|e| bad(&rp, e.to_string()))?;
        let mut requests = Vec::new();
        let mut unread: std::collections::BTreeMap<String, usize> = Default::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            // One parse per line: the request is read from the value, whose keys are counted.
            let value = serde_json::from_str::<Value>(line);
            let parsed = match &value {
                Ok(v) => RealRequest::deserialize(v).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let r = match parsed {
                Ok(r) => r,
                Err(msg) => {
                    let v = value.ok().filter(Value::is_object);
                    return Err(bad_request_line(&rp, i + 1, v.as_ref(), &msg));
                }
            };
            let ok = [r.queued_ts, r.first_token_ts, r.last_token_ts]
                .iter()
                .all(|x| x.is_finite())
                && r.queued_ts <= r.first_token_ts
                && r.first_token_ts <= r.last_token_ts;
            if !ok {
                return Err(bad(
                    &rp,
                    format!(
                        "line {}: timestamps not finite and ordered (queued ≤ first ≤ last)",
                        i + 1
                    ),
                ));
            }
            // vLLM stamps the first scheduling between the two.
            if let Some(sched) = r.scheduled_ts {
                if !(sched.is_finite() && r.queued_ts <= sched && sched <= r.first_token_ts) {
                    return Err(bad(
                        &rp,
                        format!(
                            "line {}: scheduled_ts {sched} is not between queued_ts {} and \
                             first_token_ts {}",
                            i + 1,
                            r.queued_ts,
                            r.first_token_ts
                        ),
                    ));
                }
            }
            // Each recorded request produced its first token, so at least one output.
            if r.output_toks == 0 {
                return Err(bad(
                    &rp,
                    format!(
                        "line {}: output_toks 0 but a first token at {}: a request that \
                         produced a token has at least one output token",
                        i + 1,
                        r.first_token_ts
                    ),
                ));
            }
            if let Ok(Value::Object(m)) = &value {
                for k in m.keys().filter(|k| !REQUEST_KEYS.contains(&k.as_str())) {
                    *unread.entry(k.clone()).or_default() += 1;
                }
            }
            requests.push(r);
        }
        // What the lines hold that is not read, or lack that would be checked, said once.
        if !unread.is_empty() {
            // The most frequent first, at most 20 named.
            let mut by_count: Vec<(&String, &usize)> = unread.iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let mut list: Vec<String> = by_count
                .iter()
                .take(20)
                .map(|(k, n)| format!("`{k}` ({n} line{})", if **n == 1 { "" } else { "s" }))
                .collect();
            if by_count.len() > 20 {
                list.push(format!("and {} other keys", by_count.len() - 20));
            }
            record.facts.notes.push(format!(
                "{}: keys not read: {}",
                rp.display(),
                list.join(", ")
            ));
        }
        let without = |f: fn(&RealRequest) -> bool| requests.iter().filter(|r| !f(r)).count();
        let no_input = without(|r| r.input_toks.is_some());
        if no_input > 0 {
            record.facts.notes.push(format!(
                "{}: {no_input} of {} requests record no `input_toks`: their prompt lengths are \
                 not checked against the workload",
                rp.display(),
                requests.len()
            ));
        }
        let no_arrival = without(|r| r.arrival_time.is_some_and(f64::is_finite));
        if no_arrival > 0 {
            record.facts.notes.push(format!(
                "{}: {no_arrival} of {} requests record no `arrival_time`: the requests are \
                 paired in the order of the engines' `queued_ts`",
                rp.display(),
                requests.len()
            ));
        }
        // One run names each request once; a repeated id is two records mixed, or a line
        // written twice, and pairing by arrival would then compare the wrong requests.
        let mut first_line: std::collections::HashMap<&str, usize> = Default::default();
        for (i, r) in requests.iter().enumerate() {
            if let Some(j) = first_line.insert(r.request_id.as_str(), i) {
                return Err(bad(
                    &rp,
                    format!(
                        "request_id `{}` is recorded twice (requests {} and {} of the file): a \
                         run's record names each request once",
                        r.request_id,
                        j + 1,
                        i + 1
                    ),
                ));
            }
        }
        if let Some(n) = record.num_requests {
            if n != requests.len() {
                return Err(bad(
                    &rp,
                    format!(
                        "meta.json says {n} requests, requests.jsonl has {}",
                        requests.len()
                    ),
                ));
            }
        }
        Ok(RealRun { record, requests })
    }
}

/// Per-request latencies in ms, and the output throughput.
#[derive(Debug, Default)]
pub struct LatencySet {
    pub ttft: Vec<f64>,
    pub tpot: Vec<f64>,
    pub e2el: Vec<f64>,
    pub output_throughput: f64,
}

impl LatencySet {
    fn from_rows(rows: impl Iterator<Item = (f64, f64, f64, usize)>) -> LatencySet {
        let mut s = LatencySet::default();
        let (mut t0, mut t1, mut outs) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
        for (q, f, l, n) in rows {
            s.ttft.push((f - q) * 1e3);
            s.e2el.push((l - q) * 1e3);
            if n > 1 {
                s.tpot.push((l - f) * 1e3 / (n - 1) as f64);
            }
            t0 = t0.min(q);
            t1 = t1.max(l);
            outs += n;
        }
        s.output_throughput = if t1 > t0 {
            outs as f64 / (t1 - t0)
        } else {
            0.0
        };
        s
    }

    pub fn from_real(reqs: &[RealRequest]) -> LatencySet {
        Self::from_rows(reqs.iter().map(|r| {
            (
                r.queued_ts,
                r.first_token_ts,
                r.last_token_ts,
                r.output_toks,
            )
        }))
    }

    /// From simulated records; requests that did not finish normally are left out.
    pub fn from_sim(recs: &[RequestRecord]) -> LatencySet {
        Self::from_rows(
            recs.iter().filter(|r| r.error.is_none()).filter_map(|r| {
                Some((r.queued_s?, r.first_token_s?, r.last_token_s?, r.output_len))
            }),
        )
    }
}

/// One request seen by both sides: engine-side latencies in ms (`None` where a side has no
/// value, e.g. TPOT of a one-token output or a request that failed in the emulator).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RequestPair {
    pub real_id: String,
    pub sim_id: String,
    pub output_len: usize,
    /// Seconds from the real run's first queued request (the x axis of a time plot).
    pub queued_s: f64,
    pub ttft_ms_real: f64,
    pub ttft_ms_sim: Option<f64>,
    pub tpot_ms_real: Option<f64>,
    pub tpot_ms_sim: Option<f64>,
    pub e2el_ms_real: f64,
    pub e2el_ms_sim: Option<f64>,
}

/// Pairs real and emulated requests in arrival order (the workload's line order is the real
/// run's order; ids differ between the two). Fails when the counts or output lengths disagree,
/// or when the emulated engine refused a request (every real request was served), since then
/// the two do not describe the same run.
///
/// The real run's order is that of the API server's `arrival_time` where every request has
/// one ([`real_arrival_order`]), else that of the engine's `queued_ts`.
pub fn pair_requests(
    real: &[RealRequest],
    sim: &[RequestRecord],
) -> Result<Vec<RequestPair>, String> {
    if real.len() != sim.len() {
        return Err(format!(
            "the workload has {} requests but the real run {}",
            sim.len(),
            real.len()
        ));
    }
    // A refused request has no place in the arrival order (a workload line refused unread has
    // no arrival time at all), and pairing around it would shift every later pair.
    let refused: Vec<String> = sim
        .iter()
        .filter_map(|x| Some(format!("{}: {}", x.request_id, x.error.as_deref()?)))
        .collect();
    if !refused.is_empty() {
        let more = if refused.len() > 3 { "; …" } else { "" };
        return Err(format!(
            "the emulated engine refused {} of the {} requests the real run served ({}{more})",
            refused.len(),
            real.len(),
            refused[..refused.len().min(3)].join("; ")
        ));
    }
    let r = real_arrival_order(real);
    let mut s: Vec<&RequestRecord> = sim.iter().collect();
    s.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let t0 = r.first().map_or(0.0, |x| x.queued_ts);
    let tpot = |f: f64, l: f64, n: usize| (n > 1).then(|| (l - f) * 1e3 / (n - 1) as f64);
    let mut out = Vec::with_capacity(r.len());
    for (i, (a, b)) in r.into_iter().zip(s).enumerate() {
        if a.output_toks != b.output_len {
            return Err(format!(
                "request {i} in arrival order: {} has {} output tokens in the real run but {} has {} in the workload",
                a.request_id, a.output_toks, b.request_id, b.output_len
            ));
        }
        if let Some(n) = a.input_toks.filter(|&n| n != b.prompt_len) {
            return Err(format!(
                "request {i} in arrival order: {} has {n} prompt tokens in the real run but {} \
                 has {} in the workload",
                a.request_id, b.request_id, b.prompt_len
            ));
        }
        // No record was refused (an error above): its times are its own.
        let (q, f, l) = (b.queued_s, b.first_token_s, b.last_token_s);
        out.push(RequestPair {
            real_id: a.request_id.clone(),
            sim_id: b.request_id.clone(),
            output_len: a.output_toks,
            queued_s: a.queued_ts - t0,
            ttft_ms_real: (a.first_token_ts - a.queued_ts) * 1e3,
            ttft_ms_sim: q.zip(f).map(|(q, f)| (f - q) * 1e3),
            tpot_ms_real: tpot(a.first_token_ts, a.last_token_ts, a.output_toks),
            tpot_ms_sim: f.zip(l).and_then(|(f, l)| tpot(f, l, b.output_len)),
            e2el_ms_real: (a.last_token_ts - a.queued_ts) * 1e3,
            e2el_ms_sim: q.zip(l).map(|(q, l)| (l - q) * 1e3),
        });
    }
    Ok(out)
}

/// The real requests in the order the server received them: by `arrival_time` (one wall clock
/// for the whole server) when every request records a finite one, ties and runs without it by
/// `queued_ts`. With data-parallel engines `queued_ts` is stamped by each engine process after
/// the hand-over from the API server, so two requests sent microseconds apart can swap.
pub fn real_arrival_order(real: &[RealRequest]) -> Vec<&RealRequest> {
    let wall = real
        .iter()
        .all(|x| x.arrival_time.is_some_and(f64::is_finite));
    let mut r: Vec<&RealRequest> = real.iter().collect();
    r.sort_by(|a, b| {
        let by_wall = if wall {
            a.arrival_time
                .unwrap_or(0.0)
                .total_cmp(&b.arrival_time.unwrap_or(0.0))
        } else {
            std::cmp::Ordering::Equal
        };
        by_wall.then(a.queued_ts.total_cmp(&b.queued_ts))
    });
    r
}

pub const METRICS: [&str; 3] = ["ttft", "tpot", "e2el"];
pub const STATS: [&str; 5] = ["mean", "median", "p90", "p95", "p99"];

fn stat(xs: &[f64], name: &str) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match name {
        "mean" => v.iter().sum::<f64>() / v.len().max(1) as f64,
        "median" => median(&v),
        "p90" => percentile(&v, 90.0),
        "p95" => percentile(&v, 95.0),
        _ => percentile(&v, 99.0),
    }
}

/// The error of `sim` against `real`, percent of `real` (NaN for a real 0): the one rule of every
/// comparison.
pub fn err_pct(real: f64, sim: f64) -> f64 {
    if real == 0.0 {
        f64::NAN
    } else {
        (sim - real) / real * 100.0
    }
}

/// `{metric}_{stat}_{real|sim|err_pct}` and `output_throughput_{real|sim|err_pct}`.
pub fn comparison_json(real: &LatencySet, sim: &LatencySet) -> Map<String, Value> {
    let mut m = Map::new();
    for (metric, (r, s)) in METRICS.iter().zip([
        (&real.ttft, &sim.ttft),
        (&real.tpot, &sim.tpot),
        (&real.e2el, &sim.e2el),
    ]) {
        for st in STATS {
            let (a, b) = (stat(r, st), stat(s, st));
            m.insert(format!("{metric}_{st}_real"), a.into());
            m.insert(format!("{metric}_{st}_sim"), b.into());
            m.insert(format!("{metric}_{st}_err_pct"), err_pct(a, b).into());
        }
    }
    m.insert(
        "output_throughput_real".into(),
        real.output_throughput.into(),
    );
    m.insert("output_throughput_sim".into(), sim.output_throughput.into());
    m.insert(
        "output_throughput_err_pct".into(),
        err_pct(real.output_throughput, sim.output_throughput).into(),
    );
    m
}

/// The side-by-side table.
pub fn comparison_table(m: &Map<String, Value>) -> String {
    let f = |k: String| m.get(&k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let mut out = format!(
        "{:<22}{:>12}{:>12}{:>10}\n",
        "metric (ms)", "real", "emulated", "error"
    );
    for metric in METRICS {
        for st in STATS {
            out += &format!(
                "{:<22}{:>12.2}{:>12.2}{:>+9.2}%\n",
                format!("{} {st}", metric.to_uppercase()),
                f(format!("{metric}_{st}_real")),
                f(format!("{metric}_{st}_sim")),
                f(format!("{metric}_{st}_err_pct"))
            );
        }
    }
    out += &format!(
        "{:<22}{:>12.1}{:>12.1}{:>+9.2}%\n",
        "output tok/s",
        f("output_throughput_real".into()),
        f("output_throughput_sim".into()),
        f("output_throughput_err_pct".into())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_side_definitions() {
        let real = vec![
            RealRequest {
                request_id: "a".into(),
                input_toks: None,
                output_toks: 3,
                arrival_time: None,
                queued_ts: 10.0,
                scheduled_ts: None,
                first_token_ts: 10.1,
                last_token_ts: 10.3,
            },
            RealRequest {
                request_id: "b".into(),
                input_toks: None,
                output_toks: 1,
                arrival_time: None,
                queued_ts: 10.2,
                scheduled_ts: None,
                first_token_ts: 10.4,
                last_token_ts: 10.4,
            },
        ];
        let s = LatencySet::from_real(&real);
        assert!((s.ttft[0] - 100.0).abs() < 1e-9 && (s.ttft[1] - 200.0).abs() < 1e-9);
        assert_eq!(s.tpot.len(), 1);
        assert!((s.tpot[0] - 100.0).abs() < 1e-9);
        assert!((s.output_throughput - 4.0 / 0.4).abs() < 1e-9);
        let m = comparison_json(&s, &s);
        assert_eq!(m["ttft_mean_err_pct"], 0.0);
        assert!(m.contains_key("e2el_p95_sim"));
        assert!(comparison_table(&m).contains("TTFT p99"));
    }

    #[test]
    fn token_counts_may_be_written_as_whole_floats() {
        let line = |counts: &str| {
            serde_json::from_str::<RealRequest>(&format!(
                "{{\"request_id\": \"a\", {counts}, \"queued_ts\": 1.0, \
                 \"first_token_ts\": 1.5, \"last_token_ts\": 2.0}}"
            ))
        };
        let r = line("\"input_toks\": 12.0, \"output_toks\": 769.0").unwrap();
        assert_eq!((r.input_toks, r.output_toks), (Some(12), 769));
        let r = line("\"input_toks\": null, \"output_toks\": 7").unwrap();
        assert_eq!((r.input_toks, r.output_toks), (None, 7));
        for bad in ["769.5", "-1", "-1.0", "1e300"] {
            let e = line(&format!("\"output_toks\": {bad}")).unwrap_err();
            assert!(e.to_string().contains("is not a token count"), "{bad}: {e}");
        }
        assert!(line("\"output_toks\": \"769\"").is_err());
    }

    fn req(id: &str, arrival: Option<f64>, queued: f64) -> RealRequest {
        RealRequest {
            request_id: id.into(),
            input_toks: Some(10),
            output_toks: 2,
            arrival_time: arrival,
            queued_ts: queued,
            scheduled_ts: None,
            first_token_ts: queued + 0.1,
            last_token_ts: queued + 0.2,
        }
    }

    #[test]
    fn arrival_order_follows_the_api_servers_clock() {
        // Two data-parallel engines stamped `queued_ts` 12 µs apart in the other order
        // (LLMServingSim's Qwen3-30B-A3B DP2 run, bench-9 and bench-10).
        let real = vec![
            req("bench-9", Some(1777144891.4728253), 481801.486588696),
            req("bench-10", Some(1777144891.4748192), 481801.486576325),
        ];
        let ids: Vec<&str> = real_arrival_order(&real)
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["bench-9", "bench-10"]);
        // One request without `arrival_time`: the engine's clock orders them all.
        let mixed = vec![
            req("a", Some(2.0), 5.0),
            req("b", None, 4.0),
            req("c", Some(1.0), 6.0),
        ];
        let ids: Vec<&str> = real_arrival_order(&mixed)
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a", "c"]);
    }

    fn sim(id: &str, arrival_s: f64, error: Option<&str>) -> RequestRecord {
        RequestRecord {
            request_id: id.into(),
            engine: error.is_none().then_some(0),
            arrival_s,
            queued_s: error.is_none().then_some(arrival_s),
            first_scheduled_s: None,
            first_token_s: error.is_none().then_some(arrival_s + 0.1),
            last_token_s: error.is_none().then_some(arrival_s + 0.2),
            prompt_len: 10,
            output_len: if error.is_none() { 2 } else { 0 },
            cached_tokens: 0,
            num_preemptions: 0,
            finish_reason: None,
            error: error.map(String::from),
        }
    }

    #[test]
    fn refused_requests_and_other_prompt_lengths_are_errors_not_pairings() {
        // The refused line has no arrival time (0): sorted first, it would have been paired
        // with the first real request and every later pair shifted by one.
        let real = vec![req("bench-0", None, 1.0), req("bench-1", None, 2.0)];
        let ok = vec![sim("req-0", 0.0, None), sim("req-1", 1.0, None)];
        assert_eq!(pair_requests(&real, &ok).expect("pairs").len(), 2);
        // Prompts of another length than the server processed: another workload.
        let mut longer = ok.clone();
        longer[1].prompt_len = 11;
        let e = pair_requests(&real, &longer).expect_err("prompt lengths differ");
        assert!(
            e.contains("bench-1 has 10 prompt tokens in the real run but req-1 has 11"),
            "{e}"
        );
        let refused = vec![
            sim("req-0", 0.0, None),
            sim("line-2", 0.0, Some("too long")),
        ];
        let e = pair_requests(&real, &refused).expect_err("refused");
        assert!(
            e.contains("refused 1 of the 2 requests") && e.contains("line-2: too long"),
            "{e}"
        );
    }

    /// A run directory holding `meta.json` and these `requests.jsonl` lines.
    fn run_with(lines: &[String]) -> (tempfile::TempDir, Result<RealRun, RealRunError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meta.json"),
            r#"{"vllm_version": "0.19.0"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("requests.jsonl"), lines.join("\n")).unwrap();
        let run = RealRun::load(dir.path());
        (dir, run)
    }

    fn request_line(i: usize, extra: &str) -> String {
        format!(
            "{{\"request_id\": \"bench-{i}\", \"input_toks\": 10, \"output_toks\": 4, \
             \"arrival_time\": {i}.0, \"queued_ts\": {i}.0, \"scheduled_ts\": {i}.0, \
             \"first_token_ts\": {i}.1, \"last_token_ts\": {i}.5{extra}}}"
        )
    }

    #[test]
    fn request_lines_that_contradict_or_lack_facts_are_said() {
        // A first token and no output token.
        let mut lines: Vec<String> = (0..3).map(|i| request_line(i, "")).collect();
        lines[1] = lines[1].replace("\"output_toks\": 4", "\"output_toks\": 0");
        let e = run_with(&lines).1.err().unwrap().to_string();
        assert!(e.contains("line 2: output_toks 0 but a first token"), "{e}");
        // No queued time: incomplete, not "did not complete".
        let mut lines: Vec<String> = (0..3).map(|i| request_line(i, "")).collect();
        lines[2] = lines[2].replace("\"queued_ts\": 2.0, ", "");
        let e = run_with(&lines).1.err().unwrap().to_string();
        assert!(
            e.contains("line 3: no `queued_ts`") && !e.contains("did not complete"),
            "{e}"
        );
        // A timestamp that is not a number, and a scheduling outside queued..first token.
        let mut lines: Vec<String> = (0..3).map(|i| request_line(i, "")).collect();
        lines[0] = lines[0].replace("\"first_token_ts\": 0.1", "\"first_token_ts\": \"0.1\"");
        let e = run_with(&lines).1.err().unwrap().to_string();
        assert!(
            e.contains("line 1: `first_token_ts` = \"0.1\" is not a number"),
            "{e}"
        );
        let mut lines: Vec<String> = (0..3).map(|i| request_line(i, "")).collect();
        lines[1] = lines[1].replace("\"scheduled_ts\": 1.0", "\"scheduled_ts\": 0.5");
        let e = run_with(&lines).1.err().unwrap().to_string();
        assert!(e.contains("line 2: scheduled_ts 0.5 is not between"), "{e}");
        // Keys not read, and facts missing that a check needs, are notes.
        let mut lines: Vec<String> = (0..3).map(|i| request_line(i, "")).collect();
        lines[0] = request_line(0, ", \"error\": \"timeout\"");
        lines[1] = lines[1].replace("\"input_toks\": 10, ", "");
        lines[2] = lines[2].replace("\"arrival_time\": 2.0, ", "");
        let (_dir, run) = run_with(&lines);
        let notes = run.unwrap().record.facts.notes;
        for said in [
            "keys not read: `error` (1 line)",
            "1 of 3 requests record no `input_toks`",
            "1 of 3 requests record no `arrival_time`",
        ] {
            assert!(notes.iter().any(|n| n.contains(said)), "{said}: {notes:?}");
        }
    }
}
