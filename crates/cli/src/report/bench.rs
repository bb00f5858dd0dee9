//! `bench` / `vllm bench serve` result JSON: the headline figures and, when saved with
//! `--save-detailed` (`ttfts`, `itls`, `output_lens`, `errors` per request), the TTFT, TPOT
//! and E2E CDFs. Per request, E2E is the TTFT plus the request's inter-token gaps (the detailed
//! result keeps no E2E list); TPOT follows [`LatencyStats::record_request`].

use super::page::Section;
use super::summary::{facts, percentile_bars};
use super::svg::{cdf, Canvas};
use llm_emu_sim::metrics::LatencyStats;
use serde_json::{Map, Value};
use std::path::Path;

pub fn section(path: &Path, m: &Map<String, Value>) -> Section {
    let mut s = Section::new("bench: result", path);
    facts(
        &mut s,
        m,
        &[
            "model_id",
            "backend",
            "num_prompts",
            "request_rate",
            "max_concurrency",
            "completed",
            "failed",
            "duration",
            "request_throughput",
            "output_throughput",
            "mean_ttft_ms",
            "p99_ttft_ms",
            "mean_tpot_ms",
            "p99_tpot_ms",
            "mean_itl_ms",
            "p99_itl_ms",
        ],
    );
    let c = Canvas::default();
    let list = |k: &str| m.get(k).and_then(Value::as_array);
    let (Some(ttfts), Some(itls), Some(outs)) = (list("ttfts"), list("itls"), list("output_lens"))
    else {
        s.note(
            "no per-request lists (the result was saved without --save-detailed): statistics only",
        );
        percentile_bars(&mut s, m, &c);
        return s;
    };
    let errors = list("errors");
    let mut stats = LatencyStats::default();
    for (i, ((t, gaps), n)) in ttfts.iter().zip(itls).zip(outs).enumerate() {
        let failed = errors
            .and_then(|e| e.get(i))
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty());
        let (Some(t), Some(n), false) = (t.as_f64(), n.as_u64(), failed) else {
            continue;
        };
        let gaps: f64 = gaps
            .as_array()
            .map_or(0.0, |g| g.iter().filter_map(Value::as_f64).sum());
        stats.record_request(t * 1e3, (t + gaps) * 1e3, n as usize);
    }
    for (name, xs) in [
        ("TTFT", &mut stats.ttft_ms),
        ("TPOT", &mut stats.tpot_ms),
        ("E2E latency", &mut stats.e2el_ms),
    ] {
        xs.sort_by(f64::total_cmp);
        if xs.is_empty() {
            s.note(&format!("no {name} values"));
            continue;
        }
        s.chart(
            &format!("{name} CDF (client side)"),
            cdf::draw(&format!("{name} CDF"), "ms", &[("measured", xs)], &c),
        );
    }
    s
}
