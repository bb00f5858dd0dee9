//! The result JSON and the final table, keys, order and text as `vllm bench serve` writes them
//! (`benchmark()` and `main_async()` in `vllm/benchmarks/serve.py`).

use crate::client::RequestOutput;
use crate::metrics::{Metrics, Summary};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;

/// A JSON object that keeps insertion order, as Python dicts do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Ordered {
    pub fn insert(&mut self, k: &str, v: impl Into<Value>) {
        let v = v.into();
        match self.0.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }
    pub fn remove(&mut self, k: &str) {
        self.0.retain(|(key, _)| key != k);
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Python's `json.dump` layout: one line, `", "` between items and `": "` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// Serializes as Python's `json.dump(result, f)` does (floats in shortest round-trip form).
pub fn to_python_json(v: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    v.serialize(&mut ser).expect("JSON values serialize");
    out
}

/// The run's settings that go into the result.
pub struct RunInfo<'a> {
    /// `datetime.now().strftime("%Y%m%d-%H%M%S")`.
    pub date: String,
    pub backend: &'a str,
    pub label: Option<&'a str>,
    pub model_id: &'a str,
    pub tokenizer_id: Option<&'a str>,
    pub num_prompts: usize,
    /// `--metadata KEY=VALUE` pairs.
    pub metadata: &'a [(String, String)],
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub duration: f64,
    pub goodput_set: bool,
    /// `--percentile-metrics`, in the order given.
    pub percentile_metrics: &'a [String],
    pub has_tokenizer: bool,
}

const METRICS: [(&str, &str, &str); 4] = [
    ("ttft", "TTFT", "Time to First Token"),
    ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl", "ITL", "Inter-token Latency"),
    ("e2el", "E2EL", "End-to-end Latency"),
];

/// `p99`, `p99.9`: vLLM's `str(int(p)) if int(p) == p else str(p)`.
pub fn p_word(p: f64) -> String {
    if p.fract() == 0.0 && p.abs() < 1e15 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

fn summary_of<'m>(m: &'m Metrics, name: &str) -> &'m Summary {
    match name {
        "ttft" => &m.ttft,
        "tpot" => &m.tpot,
        "itl" => &m.itl,
        _ => &m.e2el,
    }
}

fn metric_included(info: &RunInfo<'_>, name: &str) -> bool {
    // vLLM prints TTFT/TPOT/ITL only with a tokenizer; E2EL always.
    info.percentile_metrics.iter().any(|x| x == name) && (name == "e2el" || info.has_tokenizer)
}

/// The result JSON with every key `vllm bench serve` writes (the per-request arrays too;
/// [`drop_detail`] removes them as vLLM does without `--save-detailed`).
pub fn result_json(info: &RunInfo<'_>, m: &Metrics, outputs: &[RequestOutput]) -> Ordered {
    let mut r = Ordered::default();
    r.insert("date", info.date.clone());
    r.insert("endpoint_type", info.backend);
    r.insert("backend", info.backend);
    r.insert("label", info.label.map(Value::from).unwrap_or(Value::Null));
    r.insert("model_id", info.model_id);
    r.insert(
        "tokenizer_id",
        info.tokenizer_id.map(Value::from).unwrap_or(Value::Null),
    );
    r.insert("num_prompts", info.num_prompts);
    for (k, v) in info.metadata {
        r.insert(k, v.clone());
    }
    r.insert(
        "request_rate",
        if info.request_rate.is_finite() {
            Value::from(info.request_rate)
        } else {
            Value::from("inf")
        },
    );
    r.insert("burstiness", info.burstiness);
    r.insert(
        "max_concurrency",
        info.max_concurrency.map(Value::from).unwrap_or(Value::Null),
    );
    r.insert("duration", info.duration);
    r.insert("completed", m.completed);
    r.insert("failed", m.failed);
    r.insert("total_input_tokens", m.total_input);
    r.insert("total_output_tokens", m.total_output);
    r.insert("request_throughput", m.request_throughput);
    r.insert(
        "request_goodput",
        if info.goodput_set {
            Value::from(m.request_goodput)
        } else {
            Value::Null
        },
    );
    r.insert("output_throughput", m.output_throughput);
    r.insert("total_token_throughput", m.total_token_throughput);
    r.insert(
        "input_lens",
        outputs.iter().map(|o| o.prompt_len).collect::<Vec<_>>(),
    );
    r.insert("output_lens", m.actual_output_lens.clone());
    r.insert("ttfts", outputs.iter().map(|o| o.ttft).collect::<Vec<_>>());
    r.insert(
        "itls",
        outputs
            .iter()
            .map(|o| Value::from(o.itl.clone()))
            .collect::<Vec<_>>(),
    );
    r.insert(
        "start_times",
        outputs.iter().map(|o| o.start_time).collect::<Vec<_>>(),
    );
    r.insert(
        "generated_texts",
        outputs
            .iter()
            .map(|o| o.generated_text.clone())
            .collect::<Vec<_>>(),
    );
    r.insert(
        "errors",
        outputs.iter().map(|o| o.error.clone()).collect::<Vec<_>>(),
    );
    r.insert("max_output_tokens_per_s", m.max_output_tokens_per_s);
    r.insert("max_concurrent_requests", m.max_concurrent_requests);
    r.insert("rtfx", 0.0);
    for (name, _, _) in METRICS {
        if !metric_included(info, name) {
            continue;
        }
        let s = summary_of(m, name);
        r.insert(&format!("mean_{name}_ms"), s.mean_ms);
        r.insert(&format!("median_{name}_ms"), s.median_ms);
        r.insert(&format!("std_{name}_ms"), s.std_ms);
        for (p, v) in &s.percentiles_ms {
            r.insert(&format!("p{}_{name}_ms", p_word(*p)), *v);
        }
    }
    r
}

/// The per-request arrays vLLM leaves out without `--save-detailed`.
pub const DETAIL_KEYS: [&str; 7] = [
    "input_lens",
    "output_lens",
    "start_times",
    "ttfts",
    "itls",
    "generated_texts",
    "errors",
];

pub fn drop_detail(r: &mut Ordered) {
    for k in DETAIL_KEYS {
        r.remove(k);
    }
}

/// vLLM's default result file name:
/// `{label or backend}-{request_rate}qps[-concurrency{N}]-{model basename}-{date}.json`.
pub fn default_file_name(info: &RunInfo<'_>) -> String {
    let base = info.model_id.rsplit('/').next().unwrap_or(info.model_id);
    let conc = info
        .max_concurrency
        .map(|c| format!("-concurrency{c}"))
        .unwrap_or_default();
    let label = info.label.unwrap_or(info.backend);
    format!(
        "{label}-{}qps{conc}-{base}-{}.json",
        python_float(info.request_rate),
        info.date
    )
}

/// `str(float)` as Python prints it: `inf`, `10.0`, `0.5`.
pub fn python_float(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x.is_nan() {
        "nan".into()
    } else if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// The table `vllm bench serve` prints at the end, line for line.
pub fn write_table(out: &mut impl Write, info: &RunInfo<'_>, m: &Metrics) -> std::io::Result<()> {
    let int = |out: &mut dyn Write, k: &str, v: &dyn std::fmt::Display| {
        writeln!(out, "{:<40} {:<10}", k, v.to_string())
    };
    let flt = |out: &mut dyn Write, k: &str, v: f64| writeln!(out, "{:<40} {:<10.2}", k, v);
    writeln!(out, "{:=^50}", " Serving Benchmark Result ")?;
    int(out, "Successful requests:", &m.completed)?;
    int(out, "Failed requests:", &m.failed)?;
    if let Some(c) = info.max_concurrency {
        int(out, "Maximum request concurrency:", &c)?;
    }
    if info.request_rate.is_finite() {
        flt(out, "Request rate configured (RPS):", info.request_rate)?;
    }
    flt(out, "Benchmark duration (s):", info.duration)?;
    int(out, "Total input tokens:", &m.total_input)?;
    if info.has_tokenizer {
        int(out, "Total generated tokens:", &m.total_output)?;
    }
    flt(out, "Request throughput (req/s):", m.request_throughput)?;
    if info.goodput_set {
        flt(out, "Request goodput (req/s):", m.request_goodput)?;
    }
    if info.has_tokenizer {
        flt(out, "Output token throughput (tok/s):", m.output_throughput)?;
        flt(
            out,
            "Peak output token throughput (tok/s):",
            m.max_output_tokens_per_s,
        )?;
    }
    flt(
        out,
        "Peak concurrent requests:",
        m.max_concurrent_requests as f64,
    )?;
    if info.has_tokenizer {
        flt(
            out,
            "Total token throughput (tok/s):",
            m.total_token_throughput,
        )?;
    }
    for (name, short, header) in METRICS {
        if !metric_included(info, name) {
            continue;
        }
        let s = summary_of(m, name);
        writeln!(out, "{header:-^50}")?;
        flt(out, &format!("Mean {short} (ms):"), s.mean_ms)?;
        flt(out, &format!("Median {short} (ms):"), s.median_ms)?;
        for (p, v) in &s.percentiles_ms {
            flt(out, &format!("P{} {short} (ms):", p_word(*p)), *v)?;
        }
    }
    writeln!(out, "{}", "=".repeat(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_layout() {
        let mut o = Ordered::default();
        o.insert("b", 1.0);
        o.insert("a", vec![1, 2]);
        o.insert("c", Value::Null);
        assert_eq!(
            String::from_utf8(to_python_json(&o)).unwrap(),
            r#"{"b": 1.0, "a": [1, 2], "c": null}"#
        );
    }

    #[test]
    fn names_as_python_writes_them() {
        assert_eq!(p_word(99.0), "99");
        assert_eq!(p_word(99.9), "99.9");
        assert_eq!(python_float(f64::INFINITY), "inf");
        assert_eq!(python_float(10.0), "10.0");
        assert_eq!(python_float(2.5), "2.5");
    }
}
