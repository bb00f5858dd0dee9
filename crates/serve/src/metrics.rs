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
//!
//! A fleet (data-parallel ranks or replicas driven by one engine thread) has one series per
//! engine, labelled `engine="0"`, `engine="1"`, … as vLLM's logger labels each engine core; a
//! front (the shared endpoint, or one instance's own port) renders the engines it serves
//! ([`EngineMetrics::instance`]). The scrape also carries the `process_*` series
//! ([`crate::process_metrics`]) and the front's HTTP instrumentator series
//! ([`crate::http_metrics`]), in the order vLLM's registry writes them.

use crate::fleet_front::{defer_params, ParamObservation};
use crate::http_metrics::HttpMetrics;
use llm_emu_core::{EngineConfig, FinishedRequestStats, IterationStats, SchedulerStats, StepStats};
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
    /// `vllm:prompt_tokens_by_source`: `local_compute`, `local_cache_hit` (external KV
    /// transfer is always 0 here).
    prompt_local_compute: u64,
    prompt_local_cache_hit: u64,
    /// `vllm:prompt_tokens_cached` and `vllm:prompt_tokens_recomputed`.
    prompt_cached: u64,
    prompt_recomputed: u64,
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

    /// vLLM `PrometheusStatLogger.record` for one iteration that delivered `num_outputs`
    /// request outputs. vLLM builds an `IterationStats` for every output batch that holds at
    /// least one output (`async_llm.py`: `IterationStats() if num_outputs`) and observes its
    /// token count, 0 and 1 included; batches without outputs (a chunk of a long prefill) are
    /// not observed.
    fn iteration(&mut self, it: &IterationStats, num_outputs: usize) {
        self.scheduler(it.engine_index, &it.scheduler);
        let (prompt, gen) = (it.num_prompt_tokens, it.num_generation_tokens);
        self.counters.prompt_tokens += prompt;
        self.counters.generation_tokens += gen;
        if num_outputs > 0 || prompt + gen > 0 {
            self.iteration_tokens.observe((prompt + gen) as f64);
        }
        for d in &it.time_to_first_tokens_iter {
            self.ttft.observe(d.as_secs_f64());
        }
        for &(d, n) in it.inter_token_latencies_iter.runs() {
            let secs = d.as_secs_f64();
            for _ in 0..n {
                self.itl.observe(secs);
            }
        }
        for f in &it.finished_requests {
            self.finished(f);
        }
    }

    /// vLLM `update_from_finished_request`, and the prompt-token sources of a request that
    /// was prefilled (`PromptTokenStats.update_from_output`; vLLM counts them with the first
    /// token, here with the finish: the totals agree once the request ends).
    fn finished(&mut self, f: &FinishedRequestStats) {
        if f.times.first_token.is_some() {
            let (prompt, cached) = (f.num_prompt_tokens as u64, f.num_cached_tokens as u64);
            // A fully cached prompt gives its last token back to be recomputed.
            let recomputed = u64::from(cached + 1 == prompt);
            let c = &mut self.counters;
            c.prompt_local_compute += prompt.saturating_sub(cached);
            c.prompt_local_cache_hit += cached + recomputed;
            c.prompt_cached += cached;
            c.prompt_recomputed += recomputed;
        }
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

/// What one engine's series are made of: the engine thread's latest snapshot and the request
/// parameters the HTTP tasks record for requests placed on it.
struct Slot {
    snapshot: Published<EngineSeries>,
    params: Mutex<ParamSeries>,
}

/// The series of every engine of a server, shared by its fronts.
struct Store {
    model_name: String,
    /// Unix time the series were created (the `_created` samples).
    created: f64,
    /// Bucket bounds of the per-request token histograms.
    token_buckets: Vec<f64>,
    engines: Vec<Slot>,
    /// `vllm:cache_config_info`'s labels (without `engine`), sorted by name.
    cache_info: Vec<(String, String)>,
}

impl Slot {
    /// `n` once per request, `max_tokens` once per child request (vLLM observes it as each of
    /// the `n` child requests finishes, when it was given and is not 0).
    fn observe(&self, params: &[ParamObservation]) {
        // A panic elsewhere must not take the metrics down with it.
        let mut s = self.params.lock().unwrap_or_else(|e| e.into_inner());
        for o in params {
            s.request_params_n.observe(o.n as f64);
            s.request_max_num_generation_tokens
                .observe(o.max_tokens as f64);
            if let Some(m) = o.max_tokens_param.filter(|&m| m > 0) {
                for _ in 0..o.n.max(1) {
                    s.request_params_max_tokens.observe(m as f64);
                }
            }
        }
    }
}

impl Store {
    fn slot(&self, engine: usize) -> &Slot {
        &self.engines[engine.min(self.engines.len() - 1)]
    }
}

/// The engine's Prometheus metrics as one front (HTTP endpoint) sees them: the engine thread's
/// latest snapshots of the engines it serves, the request parameters the HTTP tasks record, and
/// the front's own HTTP series.
pub struct EngineMetrics {
    store: Arc<Store>,
    /// The one engine this front serves (an instance's own port); `None`: all of them.
    only: Option<usize>,
    /// The HTTP instrumentator series of this front.
    pub http: Arc<HttpMetrics>,
}

/// The engine thread's side of [`EngineMetrics`]: folds stats in, publishes snapshots.
pub struct MetricsRecorder {
    series: Vec<EngineSeries>,
    store: Arc<Store>,
    /// Changed since the last publish, per engine.
    dirty: Vec<bool>,
}

impl MetricsRecorder {
    fn at(&mut self, engine: usize) -> usize {
        engine.min(self.series.len() - 1)
    }

    /// After a `schedule()`: the gauges move (published with the next [`Self::publish`]).
    pub fn step(&mut self, s: &StepStats) {
        let i = self.at(s.engine_index);
        self.series[i].scheduler(s.engine_index, &s.scheduler);
        self.dirty[i] = true;
    }

    /// After a step's output or a batch of aborts that delivered `num_outputs` request outputs.
    pub fn iteration(&mut self, it: &IterationStats, num_outputs: usize) {
        let i = self.at(it.engine_index);
        self.series[i].iteration(it, num_outputs);
        self.dirty[i] = true;
    }

    /// The parameters of requests the engine thread placed on `engine` (the HTTP tasks'
    /// request-parameter lock, held for a few observations).
    pub fn request_params(&mut self, engine: usize, params: &[ParamObservation]) {
        if !params.is_empty() {
            self.store.slot(engine).observe(params);
        }
    }

    /// Makes everything recorded so far visible to readers (a copy of the changed engines'
    /// series, a few KB each).
    pub fn publish(&mut self) {
        for (i, d) in self.dirty.iter_mut().enumerate() {
            if *d {
                self.store.engines[i].snapshot.set(self.series[i].clone());
                *d = false;
            }
        }
    }
}

/// vLLM's `CacheConfig.metrics_info()` for an engine configuration: the labels of
/// `vllm:cache_config_info`, with vLLM 0.19's defaults for what llm-emu does not model.
/// `gpu_memory_utilization`, `num_gpu_blocks_override` and `kv_cache_memory_bytes` are the
/// flags as given.
pub fn cache_config_labels(
    cfg: &EngineConfig,
    gpu_memory_utilization: f64,
    num_gpu_blocks_override: Option<u32>,
    kv_cache_memory_bytes: Option<u64>,
) -> Vec<(String, String)> {
    let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
    let none = || "None".to_string();
    let mut v = vec![
        ("_block_size_resolved", py_bool(true)),
        ("block_size", cfg.block_size.to_string()),
        ("cache_dtype", "auto".into()),
        ("calculate_kv_scales", py_bool(false)),
        ("cpu_kvcache_space_bytes", none()),
        ("enable_prefix_caching", py_bool(cfg.enable_prefix_caching)),
        ("gpu_memory_utilization", py_float(gpu_memory_utilization)),
        ("is_attention_free", py_bool(false)),
        ("kv_cache_dtype_skip_layers", "[]".into()),
        (
            "kv_cache_memory_bytes",
            kv_cache_memory_bytes.map_or_else(none, |n| n.to_string()),
        ),
        ("kv_offloading_backend", "native".into()),
        ("kv_offloading_size", none()),
        ("kv_sharing_fast_prefill", py_bool(false)),
        ("mamba_block_size", none()),
        ("mamba_cache_dtype", "auto".into()),
        ("mamba_cache_mode", "none".into()),
        ("mamba_page_size_padded", none()),
        ("mamba_ssm_cache_dtype", "auto".into()),
        ("num_cpu_blocks", none()),
        ("num_gpu_blocks", cfg.num_gpu_blocks.to_string()),
        (
            "num_gpu_blocks_override",
            num_gpu_blocks_override.map_or_else(none, |n| n.to_string()),
        ),
        ("prefix_caching_hash_algo", "sha256".into()),
        ("sliding_window", none()),
        ("user_specified_block_size", py_bool(true)),
    ];
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A float as Python's `str` writes it (`0.9`, `1.0`).
fn py_float(v: f64) -> String {
    format!("{v:?}")
}

impl EngineMetrics {
    /// One engine's series.
    pub fn new(model_name: &str, max_model_len: usize) -> EngineMetrics {
        EngineMetrics::fleet(model_name, max_model_len, 1, Vec::new())
    }

    /// The series of `engines` engines (at least 1), `cache_info` the labels of
    /// `vllm:cache_config_info` ([`cache_config_labels`]; empty: the family is left out).
    pub fn fleet(
        model_name: &str,
        max_model_len: usize,
        engines: usize,
        cache_info: Vec<(String, String)>,
    ) -> EngineMetrics {
        let tokens = buckets_1_2_5(max_model_len as u64);
        let engines = (0..engines.max(1))
            .map(|i| {
                let mut series = EngineSeries::new(&tokens);
                series.engine_index = i;
                Slot {
                    snapshot: Published::new(series),
                    params: Mutex::new(ParamSeries {
                        request_max_num_generation_tokens: Histogram::new(&tokens),
                        request_params_n: Histogram::new(N_BUCKETS),
                        request_params_max_tokens: Histogram::new(&tokens),
                    }),
                }
            })
            .collect();
        EngineMetrics {
            store: Arc::new(Store {
                model_name: model_name.to_string(),
                created: unix_now_f64(),
                engines,
                token_buckets: tokens,
                cache_info,
            }),
            only: None,
            http: Arc::new(HttpMetrics::new()),
        }
    }

    /// The view of one engine's port: the same series, only engine `engine`'s rendered, and
    /// HTTP series of its own.
    pub fn instance(&self, engine: usize) -> EngineMetrics {
        EngineMetrics {
            store: self.store.clone(),
            only: Some(engine.min(self.store.engines.len() - 1)),
            http: Arc::new(HttpMetrics::new()),
        }
    }

    /// How many engines the series cover.
    pub fn num_engines(&self) -> usize {
        self.store.engines.len()
    }

    /// The engine indexes this front renders.
    pub fn engine_indexes(&self) -> std::ops::Range<usize> {
        match self.only {
            Some(i) => i..i + 1,
            None => 0..self.store.engines.len(),
        }
    }

    /// The one engine this front serves, if it serves one alone.
    pub fn only_engine(&self) -> Option<usize> {
        self.only
    }

    /// The writer for the engine thread (one per engine thread; it starts from empty series).
    pub fn recorder(self: &Arc<Self>) -> MetricsRecorder {
        let n = self.store.engines.len();
        MetricsRecorder {
            series: (0..n)
                .map(|i| {
                    let mut s = EngineSeries::new(&self.store.token_buckets);
                    s.engine_index = i;
                    s
                })
                .collect(),
            store: self.store.clone(),
            dirty: vec![false; n],
        }
    }

    /// Per-request parameters of one request with `n` choices (vLLM records them with the
    /// request's outputs; the values are the same): on the engine this front serves alone;
    /// else on the engine the request is placed on, when it is submitted inside a placed HTTP
    /// request ([`crate::fleet_front`]); else on engine 0.
    pub fn observe_request_params(&self, n: u32, max_tokens_param: Option<u32>, max_tokens: u32) {
        let obs = ParamObservation {
            n,
            max_tokens_param,
            max_tokens,
        };
        if self.only.is_none() && self.store.engines.len() > 1 && defer_params(obs) {
            return;
        }
        self.store.slot(self.only.unwrap_or(0)).observe(&[obs]);
    }

    /// Request parameters of one request placed on `engine`.
    pub fn observe_request_params_on(
        &self,
        engine: usize,
        n: u32,
        max_tokens_param: Option<u32>,
        max_tokens: u32,
    ) {
        self.store.slot(engine).observe(&[ParamObservation {
            n,
            max_tokens_param,
            max_tokens,
        }]);
    }

    /// Running and waiting requests over the engines this front serves (for `/load` and
    /// tests).
    pub fn num_requests(&self) -> (usize, usize) {
        self.engine_indexes()
            .map(|i| self.engine_requests(i))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Running and waiting requests of engine `engine`.
    pub fn engine_requests(&self, engine: usize) -> (usize, usize) {
        let s = self.store.slot(engine).snapshot.get();
        (s.running, s.waiting)
    }

    /// KV cache usage, 0–1: the mean over the engines this front serves.
    pub fn kv_cache_usage(&self) -> f64 {
        let r = self.engine_indexes();
        let n = r.len().max(1) as f64;
        r.map(|i| self.engine_kv_cache_usage(i)).sum::<f64>() / n
    }

    /// KV cache usage of engine `engine`, 0–1.
    pub fn engine_kv_cache_usage(&self, engine: usize) -> f64 {
        self.store.slot(engine).snapshot.get().kv_usage
    }

    /// The whole exposition of this front: `process_*`, the engines' `vllm:` series, the HTTP
    /// series (no lock held while rendering).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(48 * 1024);
        crate::process_metrics::render(&mut out);
        self.render_engines(&mut out);
        self.http.render(&mut out);
        out
    }

    /// The `vllm:` series of the engines this front serves, each family once with one sample
    /// set per engine.
    pub fn render_engines(&self, out: &mut String) {
        let store = &self.store;
        let engines: Vec<(String, Arc<EngineSeries>, ParamSeries)> = self
            .engine_indexes()
            .map(|i| {
                let slot = &store.engines[i];
                let p = slot
                    .params
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                (
                    format!(
                        "engine=\"{i}\",model_name=\"{}\"",
                        escape_label(&store.model_name)
                    ),
                    slot.snapshot.get(),
                    p,
                )
            })
            .collect();
        let mut r = Renderer {
            out,
            engines: &engines,
            created: store.created,
        };
        r.gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            |s| s.running as f64,
        );
        r.gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            |s| s.waiting as f64,
        );
        r.sleep_state();
        r.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            |s| s.kv_usage,
        );
        r.counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            |c| c.prefix_cache_queries,
        );
        r.counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            |c| c.prefix_cache_hits,
        );
        // No KV connector and no multi-modal inputs here: these stay 0, as vLLM shows them
        // without either.
        r.counter(
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in \
             terms of number of queried tokens.",
            |_| 0,
        );
        r.counter(
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms \
             of number of cached tokens.",
            |_| 0,
        );
        r.counter(
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
            |_| 0,
        );
        r.counter(
            "vllm:mm_cache_hits",
            "Multi-modal cache hits, in terms of number of cached items.",
            |_| 0,
        );
        r.counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            |c| c.num_preemptions,
        );
        r.counter(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            |c| c.prompt_tokens,
        );
        r.prompt_tokens_by_source();
        r.counter(
            "vllm:prompt_tokens_cached",
            "Number of cached prompt tokens (local + external).",
            |c| c.prompt_cached,
        );
        r.counter(
            "vllm:prompt_tokens_recomputed",
            "Number of cached tokens recomputed for forward pass.",
            |c| c.prompt_recomputed,
        );
        r.counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            |c| c.generation_tokens,
        );
        r.request_success();
        r.histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            |s, _| &s.request_prompt_tokens,
        );
        r.histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            |s, _| &s.request_generation_tokens,
        );
        r.histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            |s, _| &s.iteration_tokens,
        );
        r.histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            |_, p| &p.request_max_num_generation_tokens,
        );
        r.histogram(
            "vllm:request_params_n",
            "Histogram of the n request parameter.",
            |_, p| &p.request_params_n,
        );
        r.histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            |_, p| &p.request_params_max_tokens,
        );
        r.histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            |s, _| &s.ttft,
        );
        r.histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            |s, _| &s.itl,
        );
        r.histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            |s, _| &s.tpot,
        );
        r.histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            |s, _| &s.e2e,
        );
        r.histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            |s, _| &s.queue,
        );
        r.histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            |s, _| &s.inference,
        );
        r.histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            |s, _| &s.prefill,
        );
        r.histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            |s, _| &s.decode,
        );
        r.histogram(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            |s, _| &s.request_prefill_kv_computed_tokens,
        );
        if !store.cache_info.is_empty() {
            r.cache_config_info(&store.cache_info);
        }
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
    /// The figures of engine `engine`'s periodic stats log line, from its latest snapshot (a
    /// pointer clone).
    pub fn log_figures(&self, engine: usize) -> LogFigures {
        let s = self.store.slot(engine).snapshot.get();
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

/// Unix time now, seconds.
pub fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A label value escaped as the text format needs.
pub fn escape_label(v: &str) -> String {
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

/// Writes families in `prometheus_client`'s layout: `# HELP`, `# TYPE`, then each engine's
/// samples in engine order; counters and histograms are followed by their `_created` gauge.
struct Renderer<'a> {
    out: &'a mut String,
    /// Per engine: its `engine="i",model_name="…"` labels, series and request parameters.
    engines: &'a [(String, Arc<EngineSeries>, ParamSeries)],
    created: f64,
}

impl Renderer<'_> {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: impl Fn(&EngineSeries) -> f64) {
        self.header(name, help, "gauge");
        for (labels, s, _) in self.engines {
            let _ = writeln!(self.out, "{name}{{{labels}}} {}", go_float(v(s)));
        }
    }

    /// A counter whose samples carry one more label, `extra` (name, values in order),
    /// placed among `engine` and `model_name` in name order, as vLLM's exposition shows them.
    fn labelled_counter(
        &mut self,
        base: &str,
        help: &str,
        extra: &str,
        values: &[&str],
        v: impl Fn(&Counters, usize) -> u64,
    ) {
        for (suffix, kind) in [("_total", "counter"), ("_created", "gauge")] {
            self.header(&format!("{base}{suffix}"), help, kind);
            for (labels, s, _) in self.engines {
                let (engine, model) = labels.split_once(',').expect("two labels");
                for (k, value) in values.iter().enumerate() {
                    let x = if suffix == "_total" {
                        v(&s.counters, k) as f64
                    } else {
                        self.created
                    };
                    let labels = if extra < "model_name" {
                        format!("{engine},{extra}=\"{value}\",{model}")
                    } else {
                        format!("{engine},{model},{extra}=\"{value}\"")
                    };
                    let _ = writeln!(self.out, "{base}{suffix}{{{labels}}} {}", go_float(x));
                }
            }
        }
    }

    fn counter(&mut self, base: &str, help: &str, v: impl Fn(&Counters) -> u64) {
        self.header(&format!("{base}_total"), help, "counter");
        for (labels, s, _) in self.engines {
            let _ = writeln!(
                self.out,
                "{base}_total{{{labels}}} {}",
                go_float(v(&s.counters) as f64)
            );
        }
        self.header(&format!("{base}_created"), help, "gauge");
        for (labels, _, _) in self.engines {
            let _ = writeln!(
                self.out,
                "{base}_created{{{labels}}} {}",
                go_float(self.created)
            );
        }
    }

    fn request_success(&mut self) {
        self.labelled_counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            "finished_reason",
            FINISH_REASONS,
            |c, k| c.request_success[k],
        );
    }

    /// `vllm:prompt_tokens_by_source`, in vLLM's `PromptTokenStats.ALL_SOURCES` order.
    fn prompt_tokens_by_source(&mut self) {
        self.labelled_counter(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            "source",
            &["local_compute", "local_cache_hit", "external_kv_transfer"],
            |c, k| match k {
                0 => c.prompt_local_compute,
                1 => c.prompt_local_cache_hit,
                _ => 0,
            },
        );
    }

    /// `vllm:engine_sleep_state`: llm-emu's engines never sleep (`awake` 1).
    fn sleep_state(&mut self) {
        self.header(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is \
             awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            "gauge",
        );
        for (labels, _, _) in self.engines {
            for (state, v) in [
                ("awake", 1.0),
                ("weights_offloaded", 0.0),
                ("discard_all", 0.0),
            ] {
                let _ = writeln!(
                    self.out,
                    "vllm:engine_sleep_state{{{labels},sleep_state=\"{state}\"}} {}",
                    go_float(v)
                );
            }
        }
    }

    /// `vllm:cache_config_info`: a gauge at 1 per engine, labelled with the cache
    /// configuration (`log_metrics_info("cache_config", …)`).
    fn cache_config_info(&mut self, info: &[(String, String)]) {
        self.header(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            "gauge",
        );
        for (labels, s, _) in self.engines {
            let _ = labels;
            let mut all: Vec<(&str, String)> = info
                .iter()
                .map(|(k, v)| (k.as_str(), escape_label(v)))
                .collect();
            all.push(("engine", s.engine_index.to_string()));
            all.sort_by(|a, b| a.0.cmp(b.0));
            let text: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = writeln!(self.out, "vllm:cache_config_info{{{}}} 1.0", text.join(","));
        }
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        h: impl for<'s> Fn(&'s EngineSeries, &'s ParamSeries) -> &'s Histogram,
    ) {
        self.header(name, help, "histogram");
        for (labels, s, p) in self.engines {
            let h = h(s, p);
            let (engine, model) = labels.split_once(',').expect("two labels");
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
                "{name}_count{{{labels}}} {}",
                go_float(h.count as f64)
            );
            let _ = writeln!(self.out, "{name}_sum{{{labels}}} {}", go_float(h.sum));
        }
        self.header(&format!("{name}_created"), help, "gauge");
        for (labels, _, _) in self.engines {
            let _ = writeln!(
                self.out,
                "{name}_created{{{labels}}} {}",
                go_float(self.created)
            );
        }
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
            rec.iteration(
                &IterationStats {
                    num_prompt_tokens: prompt,
                    num_generation_tokens: gen,
                    ..Default::default()
                },
                1,
            );
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

    fn finished(prompt: usize, cached: usize, first_token: bool) -> FinishedRequestStats {
        FinishedRequestStats {
            request_id: "r".into(),
            tag: 0,
            finish_reason: llm_emu_core::FinishReason::Length,
            stop_token: None,
            times: llm_emu_core::request::RequestTimes {
                arrival: llm_emu_core::Nanos::ZERO,
                queued: llm_emu_core::Nanos::ZERO,
                first_scheduled: None,
                first_token: first_token.then_some(llm_emu_core::Nanos(1)),
                last_token: None,
            },
            finished_at: llm_emu_core::Nanos(2),
            num_prompt_tokens: prompt,
            num_generation_tokens: 1,
            num_cached_tokens: cached,
            num_preemptions: 0,
        }
    }

    #[test]
    fn prompt_tokens_by_source_follow_vllms_prompt_token_stats() {
        let m = Arc::new(EngineMetrics::new("m", 100));
        let mut rec = m.recorder();
        let it = IterationStats {
            finished_requests: vec![
                // 32 tokens, 16 cached: 16 computed, 16 hits.
                finished(32, 16, true),
                // 32 tokens, all but the last cached: that one is recomputed.
                finished(32, 31, true),
                // Never prefilled (aborted while waiting): not counted.
                finished(32, 0, false),
            ],
            ..Default::default()
        };
        rec.iteration(&it, 0);
        rec.publish();
        let text = m.render();
        let get = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{series}"))
                .parse()
                .unwrap()
        };
        let by = |src: &str| {
            get(&format!(
                "vllm:prompt_tokens_by_source_total{{engine=\"0\",model_name=\"m\",source=\"{src}\"}}"
            ))
        };
        assert_eq!(by("local_compute"), 17.0);
        assert_eq!(by("local_cache_hit"), 48.0);
        assert_eq!(by("external_kv_transfer"), 0.0);
        assert_eq!(
            get("vllm:prompt_tokens_cached_total{engine=\"0\",model_name=\"m\"}"),
            47.0
        );
        assert_eq!(
            get("vllm:prompt_tokens_recomputed_total{engine=\"0\",model_name=\"m\"}"),
            1.0
        );
    }

    #[test]
    fn iteration_tokens_observe_batches_with_outputs_only() {
        let m = Arc::new(EngineMetrics::new("m", 100));
        let mut rec = m.recorder();
        // A chunk of a long prefill: no output, not observed.
        rec.iteration(&IterationStats::default(), 0);
        // A decode step of one request: one token, observed in the `le="1.0"` bucket.
        rec.iteration(
            &IterationStats {
                num_generation_tokens: 1,
                ..Default::default()
            },
            1,
        );
        rec.publish();
        let text = m.render();
        assert!(
            text.contains("vllm:iteration_tokens_total_count{engine=\"0\",model_name=\"m\"} 1.0")
        );
        assert!(text.contains(
            "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"1.0\",model_name=\"m\"} 1.0"
        ));
    }

    #[test]
    fn a_fleet_renders_each_family_once_with_every_engine() {
        let m = Arc::new(EngineMetrics::fleet("m", 100, 3, Vec::new()));
        let mut rec = m.recorder();
        rec.iteration(
            &IterationStats {
                engine_index: 2,
                num_generation_tokens: 5,
                ..Default::default()
            },
            1,
        );
        rec.publish();
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE vllm:generation_tokens_total counter")
                .count(),
            1
        );
        for (e, v) in [(0, "0.0"), (1, "0.0"), (2, "5.0")] {
            assert!(text.contains(&format!(
                "vllm:generation_tokens_total{{engine=\"{e}\",model_name=\"m\"}} {v}"
            )));
        }
        let one = m.instance(2).render();
        assert!(one.contains("engine=\"2\"") && !one.contains("engine=\"0\""));
        m.observe_request_params_on(1, 2, Some(7), 7);
        let text = m.render();
        assert!(text
            .contains("vllm:request_params_max_tokens_count{engine=\"1\",model_name=\"m\"} 2.0"));
    }
}
