//! vLLM's Prometheus metrics (`v1/metrics/loggers.py::PrometheusStatLogger`), with its names,
//! help texts, labels (`engine`, `model_name`, sorted as `prometheus_client` sorts them) and
//! buckets, exposed in the text format `prometheus_client` writes (version 0.0.4, `_created`
//! series included), so that dashboards and autoscalers built for vLLM read them unchanged.
//!
//! The engine thread owns the engine's series ([`MetricsRecorder`], fed by the engine's
//! [`IterationStats`] and [`StepStats`]) and publishes a copy after each step's output, before
//! the step's tokens go out (a client holding its last token finds it counted). `/metrics`
//! renders from the latest copy; the only lock the engine thread takes is the pointer swap of
//! [`Published`], so a scrape (~32 KB of text) never delays a step. The request-parameter
//! histograms are written by the HTTP tasks under their own lock, which the engine thread never
//! takes.

use llm_emu_core::{FinishedRequestStats, IterationStats, SchedulerStats, StepStats};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const ITERATION_TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
const N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// `request_success` label values, in vLLM's `FinishReason` order (`FinishReason::as_str`).
const FINISH_REASONS: &[&str] = &["stop", "length", "abort", "error", "repetition"];

/// vLLM's `build_1_2_5_buckets(max_value)`: 1, 2, 5, 10, 20, 50, … up to `max_value`.
pub fn buckets_1_2_5(max_value: u64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exponent = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = m * exponent;
            if v <= max_value {
                out.push(v as f64);
            } else {
                return out;
            }
        }
        exponent *= 10;
    }
}

#[derive(Clone)]
struct Histogram {
    buckets: Vec<f64>,
    /// Non-cumulative counts per bucket; the last is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &[f64]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            counts: vec![0; buckets.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self.buckets.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Clone, Default)]
struct Counters {
    prompt_tokens: u64,
    generation_tokens: u64,
    num_preemptions: u64,
    prefix_cache_queries: u64,
    prefix_cache_hits: u64,
    request_success: [u64; 5],
}

/// Everything the engine's stats feed: owned and written by the engine thread alone, published
/// to readers as an immutable snapshot.
#[derive(Clone)]
struct EngineSeries {
    /// The `engine` label.
    engine_index: usize,
    running: usize,
    waiting: usize,
    kv_usage: f64,
    counters: Counters,
    ttft: Histogram,
    itl: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    queue: Histogram,
    inference: Histogram,
    prefill: Histogram,
    decode: Histogram,
    iteration_tokens: Histogram,
    request_prompt_tokens: Histogram,
    request_generation_tokens: Histogram,
    request_prefill_kv_computed_tokens: Histogram,
}

impl EngineSeries {
    fn new(tokens: &[f64]) -> EngineSeries {
        EngineSeries {
            engine_index: 0,
            running: 0,
            waiting: 0,
            kv_usage: 0.0,
            counters: Counters::default(),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            tpot: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_LATENCY_BUCKETS),
            queue: Histogram::new(REQUEST_LATENCY_BUCKETS),
            inference: Histogram::new(REQUEST_LATENCY_BUCKETS),
            prefill: Histogram::new(REQUEST_LATENCY_BUCKETS),
            decode: Histogram::new(REQUEST_LATENCY_BUCKETS),
            iteration_tokens: Histogram::new(ITERATION_TOKEN_BUCKETS),
            request_prompt_tokens: Histogram::new(tokens),
            request_generation_tokens: Histogram::new(tokens),
            request_prefill_kv_computed_tokens: Histogram::new(tokens),
        }
    }

    fn scheduler(&mut self, engine_index: usize, s: &SchedulerStats) {
        self.engine_index = engine_index;
        self.running = s.num_running_reqs;
        self.waiting = s.num_waiting_reqs;
        self.kv_usage = s.kv_cache_usage;
        self.counters.num_preemptions = s.num_preemptions;
        self.counters.prefix_cache_queries = s.prefix_cache_queries;
        self.counters.prefix_cache_hits = s.prefix_cache_hits;
    }

    /// vLLM `PrometheusStatLogger.record` for one iteration.
    fn iteration(&mut self, it: &IterationStats) {
        self.scheduler(it.engine_index, &it.scheduler);
        let (prompt, gen) = (it.num_prompt_tokens, it.num_generation_tokens);
        self.counters.prompt_tokens += prompt;
        self.counters.generation_tokens += gen;
        if prompt + gen > 0 {
            self.iteration_tokens.observe((prompt + gen) as f64);
        }
        for d in &it.time_to_first_tokens_iter {
            self.ttft.observe(d.as_secs_f64());
        }
        for d in &it.inter_token_latencies_iter {
            self.itl.observe(d.as_secs_f64());
        }
        for f in &it.finished_requests {
            self.finished(f);
        }
    }

    /// vLLM `update_from_finished_request`.
    fn finished(&mut self, f: &FinishedRequestStats) {
        if let Some(i) = FINISH_REASONS
            .iter()
            .position(|r| *r == f.finish_reason.as_str())
        {
            self.counters.request_success[i] += 1;
        }
        self.e2e.observe(f.e2e_latency().as_secs_f64());
        self.queue.observe(f.queued_time().as_secs_f64());
        self.prefill.observe(f.prefill_time().as_secs_f64());
        self.inference.observe(f.inference_time().as_secs_f64());
        self.decode.observe(f.decode_time().as_secs_f64());
        self.request_prefill_kv_computed_tokens
            .observe(f.num_prefill_kv_computed_tokens() as f64);
        self.request_prompt_tokens
            .observe(f.num_prompt_tokens as f64);
        self.request_generation_tokens
            .observe(f.num_generation_tokens as f64);
        self.tpot.observe(f.mean_time_per_output_token_s());
    }
}

/// Per-request parameters, recorded by the HTTP tasks when they accept a request (never
/// touched by the engine thread).
#[derive(Clone)]
struct ParamSeries {
    request_max_num_generation_tokens: Histogram,
    request_params_n: Histogram,
    request_params_max_tokens: Histogram,
}

/// A value one thread publishes and others read: the lock is held only to swap or clone the
/// pointer, never while the value is built or read.
pub struct Published<T> {
    current: Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published {
            current: Mutex::new(Arc::new(value)),
        }
    }

    /// The latest value.
    pub fn get(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the value; the old one is dropped outside the lock.
    pub fn set(&self, value: T) {
        let new = Arc::new(value);
        let old = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(|e| e.into_inner()),
            new,
        );
        drop(old);
    }
}

/// The engine's Prometheus metrics as the HTTP side sees them: the engine thread's latest
/// snapshot, plus the request parameters the HTTP tasks record.
pub struct EngineMetrics {
    model_name: String,
    /// Unix time the series were created (the `_created` samples).
    created: f64,
    /// Bucket bounds of the per-request token histograms.
    token_buckets: Vec<f64>,
    snapshot: Published<EngineSeries>,
    params: Mutex<ParamSeries>,
}

/// The engine thread's side of [`EngineMetrics`]: folds stats in, publishes snapshots.
pub struct MetricsRecorder {
    series: EngineSeries,
    shared: Arc<EngineMetrics>,
    /// Changed since the last publish.
    dirty: bool,
}

impl MetricsRecorder {
    /// After a `schedule()`: the gauges move (published with the next [`Self::publish`]).
    pub fn step(&mut self, s: &StepStats) {
        self.series.scheduler(s.engine_index, &s.scheduler);
        self.dirty = true;
    }

    /// After a step's output or a batch of aborts.
    pub fn iteration(&mut self, it: &IterationStats) {
        self.series.iteration(it);
        self.dirty = true;
    }

    /// Makes everything recorded so far visible to readers (a copy of the series, a few KB).
    pub fn publish(&mut self) {
        if self.dirty {
            self.shared.snapshot.set(self.series.clone());
            self.dirty = false;
        }
    }
}

impl EngineMetrics {
    pub fn new(model_name: &str, max_model_len: usize) -> EngineMetrics {
        let tokens = buckets_1_2_5(max_model_len as u64);
        EngineMetrics {
            model_name: model_name.to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            snapshot: Published::new(EngineSeries::new(&tokens)),
            params: Mutex::new(ParamSeries {
                request_max_num_generation_tokens: Histogram::new(&tokens),
                request_params_n: Histogram::new(N_BUCKETS),
                request_params_max_tokens: Histogram::new(&tokens),
            }),
            token_buckets: tokens,
        }
    }

    /// The writer for the engine thread (one per engine thread; it starts from empty series).
    pub fn recorder(self: &Arc<Self>) -> MetricsRecorder {
        MetricsRecorder {
            series: EngineSeries::new(&self.token_buckets),
            shared: self.clone(),
            dirty: false,
        }
    }

    fn params(&self) -> std::sync::MutexGuard<'_, ParamSeries> {
        // A panic elsewhere must not take the metrics down with it.
        self.params.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Per-request parameters, when the frontend accepts a request (vLLM records them with the
    /// request's first output; the values are the same).
    pub fn observe_request_params(&self, n: u32, max_tokens_param: Option<u32>, max_tokens: u32) {
        let mut s = self.params();
        s.request_params_n.observe(n as f64);
        s.request_max_num_generation_tokens
            .observe(max_tokens as f64);
        if let Some(m) = max_tokens_param {
            s.request_params_max_tokens.observe(m as f64);
        }
    }

    /// Running and waiting requests (for `/load` and tests).
    pub fn num_requests(&self) -> (usize, usize) {
        let s = self.snapshot.get();
        (s.running, s.waiting)
    }

    pub fn kv_cache_usage(&self) -> f64 {
        self.snapshot.get().kv_usage
    }

    /// The text exposition, from the latest snapshot (no lock held while rendering).
    pub fn render(&self) -> String {
        let s = self.snapshot.get();
        let p = self.params().clone();
        let mut out = String::with_capacity(32 * 1024);
        let labels = format!(
            "engine=\"{}\",model_name=\"{}\"",
            s.engine_index,
            escape(&self.model_name)
        );
        let mut r = Renderer {
            out: &mut out,
            labels: &labels,
            created: self.created,
        };
        r.gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            s.running as f64,
        );
        r.gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            s.waiting as f64,
        );
        r.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            s.kv_usage,
        );
        let c = &s.counters;
        r.counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            c.prefix_cache_queries,
        );
        r.counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            c.prefix_cache_hits,
        );
        r.counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            c.num_preemptions,
        );
        r.counter(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            c.prompt_tokens,
        );
        r.counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            c.generation_tokens,
        );
        r.request_success(&c.request_success);
        r.histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            &s.request_prompt_tokens,
        );
        r.histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            &s.request_generation_tokens,
        );
        r.histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            &s.iteration_tokens,
        );
        r.histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            &p.request_max_num_generation_tokens,
        );
        r.histogram(
            "vllm:request_params_n",
            "Histogram of the n request parameter.",
            &p.request_params_n,
        );
        r.histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            &p.request_params_max_tokens,
        );
        r.histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &s.ttft,
        );
        r.histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &s.itl,
        );
        r.histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            &s.tpot,
        );
        r.histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &s.e2e,
        );
        r.histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            &s.queue,
        );
        r.histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            &s.inference,
        );
        r.histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            &s.prefill,
        );
        r.histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            &s.decode,
        );
        r.histogram(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            &s.request_prefill_kv_computed_tokens,
        );
        out
    }
}

/// The cumulative figures vLLM's periodic log line is computed from
/// (`v1/metrics/loggers.py::LoggingStatLogger`), as of the latest published snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LogFigures {
    /// Prompt tokens of the requests that got their first token, since the start.
    pub prompt_tokens: u64,
    /// Generated tokens since the start.
    pub generation_tokens: u64,
    pub running: usize,
    pub waiting: usize,
    /// KV cache usage, 0 to 1.
    pub kv_cache_usage: f64,
    /// Preemptions since the start.
    pub num_preemptions: u64,
    /// Prefix cache queries and hits since the start, in tokens.
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
}

impl EngineMetrics {
    /// The figures of the periodic stats log line, from the latest snapshot (a pointer clone).
    pub fn log_figures(&self) -> LogFigures {
        let s = self.snapshot.get();
        LogFigures {
            prompt_tokens: s.counters.prompt_tokens,
            generation_tokens: s.counters.generation_tokens,
            running: s.running,
            waiting: s.waiting,
            kv_cache_usage: s.kv_usage,
            num_preemptions: s.counters.num_preemptions,
            prefix_cache_queries: s.counters.prefix_cache_queries,
            prefix_cache_hits: s.counters.prefix_cache_hits,
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as `prometheus_client` writes it (`floatToGoString`): Python's `repr`, switching to an
/// exponent for values with more than six integer digits.
pub fn go_float(d: f64) -> String {
    if d == f64::INFINITY {
        return "+Inf".into();
    }
    if d == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if d.is_nan() {
        return "NaN".into();
    }
    let mut s = format!("{d:?}");
    if s.contains('e') {
        // Rust writes 1e-7 where Python writes 1e-07.
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("+", e),
            };
            s = format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    if let Some(dot) = s.find('.') {
        if d > 0.0 && dot > 6 {
            let digits: String = s.chars().filter(|c| *c != '.').collect();
            let mantissa = format!("{}.{}", &digits[..1], &digits[1..]);
            let mantissa = mantissa.trim_end_matches(['0', '.']).to_string();
            return format!("{mantissa}e+0{}", dot - 1);
        }
    }
    s
}

struct Renderer<'a> {
    out: &'a mut String,
    labels: &'a str,
    created: f64,
}

impl Renderer<'_> {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.out, "{name}{{{}}} {}", self.labels, go_float(v));
    }

    fn counter(&mut self, base: &str, help: &str, v: u64) {
        self.header(&format!("{base}_total"), help, "counter");
        let _ = writeln!(
            self.out,
            "{base}_total{{{}}} {}",
            self.labels,
            go_float(v as f64)
        );
        self.header(&format!("{base}_created"), help, "gauge");
        let _ = writeln!(
            self.out,
            "{base}_created{{{}}} {}",
            self.labels,
            go_float(self.created)
        );
    }

    fn request_success(&mut self, counts: &[u64; 5]) {
        let base = "vllm:request_success";
        let help = "Count of successfully processed requests.";
        let (engine, model) = self.labels.split_once(',').expect("two labels");
        self.header(&format!("{base}_total"), help, "counter");
        for (reason, v) in FINISH_REASONS.iter().zip(counts) {
            let _ = writeln!(
                self.out,
                "{base}_total{{{engine},finished_reason=\"{reason}\",{model}}} {}",
                go_float(*v as f64)
            );
        }
        self.header(&format!("{base}_created"), help, "gauge");
        for reason in FINISH_REASONS {
            let _ = writeln!(
                self.out,
                "{base}_created{{{engine},finished_reason=\"{reason}\",{model}}} {}",
                go_float(self.created)
            );
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, help, "histogram");
        let (engine, model) = self.labels.split_once(',').expect("two labels");
        let mut cum = 0u64;
        for (i, c) in h.counts.iter().enumerate() {
            cum += c;
            let le = h.buckets.get(i).copied().unwrap_or(f64::INFINITY);
            let _ = writeln!(
                self.out,
                "{name}_bucket{{{engine},le=\"{}\",{model}}} {}",
                go_float(le),
                go_float(cum as f64)
            );
        }
        let _ = writeln!(
            self.out,
            "{name}_count{{{}}} {}",
            self.labels,
            go_float(h.count as f64)
        );
        let _ = writeln!(
            self.out,
            "{name}_sum{{{}}} {}",
            self.labels,
            go_float(h.sum)
        );
        self.header(&format!("{name}_created"), help, "gauge");
        let _ = writeln!(
            self.out,
            "{name}_created{{{}}} {}",
            self.labels,
            go_float(self.created)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_prometheus_client_prints_them() {
        assert_eq!(go_float(0.0), "0.0");
        assert_eq!(go_float(1.0), "1.0");
        assert_eq!(go_float(0.001), "0.001");
        assert_eq!(go_float(16384.0), "16384.0");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_float(1.7958561530773659e9), "1.7958561530773659e+09");
        assert_eq!(go_float(1e-7), "1e-07");
    }

    #[test]
    fn one_two_five_buckets_match_vllm() {
        assert_eq!(
            buckets_1_2_5(100),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(buckets_1_2_5(40960).last(), Some(&20000.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_le_inclusive() {
        let m = Arc::new(EngineMetrics::new("m", 100));
        let mut rec = m.recorder();
        for (prompt, gen) in [(1, 0), (8, 1)] {
            rec.iteration(&IterationStats {
                num_prompt_tokens: prompt,
                num_generation_tokens: gen,
                ..Default::default()
            });
        }
        // Nothing shows until published.
        assert!(m
            .render()
            .contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 0.0"));
        rec.publish();
        let text = m.render();
        assert!(text.contains(
            "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"1.0\",model_name=\"m\"} 1.0"
        ));
        assert!(text.contains(
            "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"8.0\",model_name=\"m\"} 1.0"
        ));
        assert!(text.contains(
            "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"16.0\",model_name=\"m\"} 2.0"
        ));
        assert!(text.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 9.0"));
        assert!(text.contains("# TYPE vllm:generation_tokens_total counter"));
    }
}
