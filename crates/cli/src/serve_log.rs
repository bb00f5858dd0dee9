//! What `llm-emu serve` logs as vLLM logs it: the KV cache capacity lines of
//! `v1/core/kv_cache_utils.py` at startup, and the periodic stats line of
//! `v1/metrics/loggers.py::LoggingStatLogger`. The lines carry vLLM's prefix
//! (`INFO MM-DD HH:MM:SS [file.py] `, the file vLLM logs them from, without a line number) so
//! that what reads vLLM's log reads these. Everything goes to stderr: stdout carries only the
//! `listening on` line that scripts read the port from.

use llm_emu_core::EngineConfig;
use llm_emu_perf::sizing::ModelShape;
use llm_emu_serve::metrics::{EngineMetrics, LogFigures};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `vllm serve`'s logging switches.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogFlags {
    /// No access log line per request (uvicorn's `INFO:     HOST:PORT - "POST /v1/completions
    /// HTTP/1.1" 200 OK`, on stderr).
    #[arg(long)]
    pub disable_uvicorn_access_log: bool,
    /// No periodic stats line (`Engine 000: Avg prompt throughput: …`, every
    /// `VLLM_LOG_STATS_INTERVAL` seconds, default 10, skipped while idle).
    #[arg(long)]
    pub disable_log_stats: bool,
    /// Accepted as vLLM 0.10 accepted it: vLLM 0.19 logs no request contents unless
    /// `--enable-log-requests`, and neither does llm-emu, so this changes nothing.
    #[arg(long)]
    pub disable_log_requests: bool,
}

/// What the server says about itself once its engine is built.
pub struct Startup {
    pub served_model_names: Vec<String>,
    pub model_root: String,
    /// Where the tokenizer came from, in words.
    pub tokenizer: String,
    /// How many API keys are accepted (0: none required).
    pub api_keys: usize,
    pub kv: KvCapacity,
    pub max_model_len: usize,
}

impl Startup {
    /// The startup lines, on stderr.
    pub fn print(&self) {
        let names = self
            .served_model_names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        emit(&format!(
            "llm-emu serve: model `{}`, served as {names}",
            self.model_root
        ));
        emit(&format!("llm-emu serve: tokenizer: {}", self.tokenizer));
        emit(&match self.api_keys {
            0 => "llm-emu serve: API key: none required (--api-key or VLLM_API_KEY sets one)"
                .to_string(),
            n => format!(
                "llm-emu serve: API key: required on /v1 routes ({n} key{} accepted)",
                if n == 1 { "" } else { "s" }
            ),
        });
        for line in kv_capacity_lines(self.kv, self.max_model_len) {
            emit(&line);
        }
    }
}

/// The one-line warning for a model name whose architecture llm-emu does not know (the
/// built-in list is left to `--help` and the error of `simulate --model`).
pub fn no_architecture_warning(name: &str, e: &llm_emu_perf::sizing::SizingError) {
    let why = match e {
        llm_emu_perf::sizing::SizingError::UnknownModel { .. } => {
            "not a config.json path, not in the local Hugging Face cache, not built in".to_string()
        }
        other => other.to_string(),
    };
    emit(&format!(
        "llm-emu serve: warning: no architecture for `{name}` ({why}): emulating \
         --model-config's, else Llama-3.1-8B's (--model-config config.json gives its own)"
    ));
}

/// A log line as vLLM's default formatter writes it: `LEVEL MM-DD HH:MM:SS [source] message`.
pub fn vllm_line(level: &str, source: &str, msg: &str) -> String {
    let now = chrono::Local::now().format("%m-%d %H:%M:%S");
    format!("{level} {now} [{source}] {msg}")
}

/// Writes one line to stderr, ignoring a closed stderr.
pub fn emit(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The KV cache's capacity as vLLM reports it after sizing the cache.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvCapacity {
    /// `num_blocks // len(kv_cache_groups) * block_size`.
    pub tokens: u64,
    /// Requests of `max_model_len` tokens the cache holds at once
    /// (`get_max_concurrency_for_kv_cache_config`).
    pub max_concurrency: f64,
}

/// vLLM's figures for `cfg`'s cache on a model of `shape` at TP `tp`: every KV cache group
/// draws from one pool of `num_gpu_blocks`; a request needs, per group, the blocks of
/// `max_model_len` tokens (full attention) or of `min(window − 1 + max_num_batched_tokens,
/// max_model_len)` tokens plus one (sliding window).
pub fn kv_capacity(shape: &ModelShape, cfg: &EngineConfig, tp: u64) -> KvCapacity {
    let bs = cfg.block_size.max(1) as u64;
    let blocks = cfg.num_gpu_blocks as u64;
    let layout = shape.kv_layout(bs, tp);
    let max_len = cfg.max_model_len as u64;
    let mut types = shape.layers_per_window();
    if types.is_empty() {
        types.push((None, 1));
    }
    let group_size = layout.group_size.max(1);
    let per_request: u64 = types
        .iter()
        .map(|&(window, layers)| {
            let groups = if types.len() == 1 {
                1
            } else {
                layers.div_ceil(group_size)
            };
            let per_group = match window {
                None => max_len.div_ceil(bs),
                Some(w) => {
                    let tokens =
                        (w.saturating_sub(1) + cfg.max_num_batched_tokens as u64).min(max_len);
                    tokens.div_ceil(bs) + 1
                }
            };
            groups * per_group
        })
        .sum();
    KvCapacity {
        tokens: blocks / layout.num_groups.max(1) * bs,
        max_concurrency: blocks as f64 / per_request.max(1) as f64,
    }
}

/// The two lines vLLM logs once the KV cache is sized.
pub fn kv_capacity_lines(cap: KvCapacity, max_model_len: usize) -> [String; 2] {
    [
        vllm_line(
            "INFO",
            "kv_cache_utils.py",
            &format!("GPU KV cache size: {} tokens", thousands(cap.tokens)),
        ),
        vllm_line(
            "INFO",
            "kv_cache_utils.py",
            &format!(
                "Maximum concurrency for {} tokens per request: {:.2}x",
                thousands(max_model_len as u64),
                cap.max_concurrency
            ),
        ),
    ]
}

/// `f"{n:,}"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The interval of the stats line: `VLLM_LOG_STATS_INTERVAL` seconds when positive, as vLLM
/// reads it, else 10.
pub fn stats_interval() -> Duration {
    std::env::var("VLLM_LOG_STATS_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(10))
}

/// `LoggingStatLogger` of one engine: throughputs over each interval, the scheduler's state at
/// its end. Differences from vLLM: the prompt throughput counts the prompt tokens of requests
/// that got their first token less the prefix-cache hits of the interval (vLLM counts each
/// request's computed prompt tokens), and the prefix cache hit rate is over every query so far
/// (vLLM's is over the last 1000 requests).
pub struct StatsLogger {
    /// The engine's index, as vLLM's line names it (`Engine 000`).
    engine: usize,
    last: LogFigures,
    last_time: Instant,
    last_prompt_throughput: f64,
    last_generation_throughput: f64,
}

impl StatsLogger {
    pub fn new(engine: usize, now: Instant, figures: LogFigures) -> StatsLogger {
        StatsLogger {
            engine,
            last: figures,
            last_time: now,
            last_prompt_throughput: 0.0,
            last_generation_throughput: 0.0,
        }
    }

    /// The line for the interval ending at `now`, or `None` when the engine is idle: no
    /// tokens in this interval nor in the one before (vLLM then logs at DEBUG, not shown).
    pub fn tick(&mut self, now: Instant, f: LogFigures) -> Option<String> {
        let dt = now.saturating_duration_since(self.last_time).as_secs_f64();
        let rate = |n: u64| if dt > 0.0 { n as f64 / dt } else { 0.0 };
        let hits = f
            .prefix_cache_hits
            .saturating_sub(self.last.prefix_cache_hits);
        let computed = f
            .prompt_tokens
            .saturating_sub(self.last.prompt_tokens)
            .saturating_sub(hits);
        let prompt = rate(computed);
        let generation = rate(
            f.generation_tokens
                .saturating_sub(self.last.generation_tokens),
        );
        let preemptions = f.num_preemptions.saturating_sub(self.last.num_preemptions);
        let idle = prompt == 0.0
            && generation == 0.0
            && self.last_prompt_throughput == 0.0
            && self.last_generation_throughput == 0.0;
        self.last = f;
        self.last_time = now;
        self.last_prompt_throughput = prompt;
        self.last_generation_throughput = generation;
        if idle {
            return None;
        }
        let mut msg = format!(
            "Engine {:03}: Avg prompt throughput: {prompt:.1} tokens/s, Avg generation throughput: \
             {generation:.1} tokens/s, Running: {} reqs, Waiting: {} reqs, ",
            self.engine, f.running, f.waiting
        );
        if preemptions > 0 {
            msg.push_str(&format!("Preemptions: {preemptions}, "));
        }
        let hit_rate = if f.prefix_cache_queries > 0 {
            f.prefix_cache_hits as f64 / f.prefix_cache_queries as f64
        } else {
            0.0
        };
        msg.push_str(&format!(
            "GPU KV cache usage: {:.1}%, Prefix cache hit rate: {:.1}%",
            f.kv_cache_usage * 100.0,
            hit_rate * 100.0
        ));
        Some(vllm_line("INFO", "loggers.py", &msg))
    }
}

/// Logs each engine's stats line every `interval` until the runtime stops (a tokio task), as
/// vLLM logs one line per data-parallel engine.
pub fn spawn_stats_logger(metrics: Arc<EngineMetrics>, interval: Duration) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let now = Instant::now();
        let mut loggers: Vec<StatsLogger> = metrics
            .engine_indexes()
            .map(|i| StatsLogger::new(i, now, metrics.log_figures(i)))
            .collect();
        loop {
            ticks.tick().await;
            let now = Instant::now();
            for logger in &mut loggers {
                let figures = metrics.log_figures(logger.engine);
                if let Some(line) = logger.tick(now, figures) {
                    emit(&line);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(prompt: u64, gen: u64) -> LogFigures {
        LogFigures {
            prompt_tokens: prompt,
            generation_tokens: gen,
            running: 3,
            waiting: 1,
            kv_cache_usage: 0.256,
            prefix_cache_queries: 200,
            prefix_cache_hits: 50,
            ..Default::default()
        }
    }

    #[test]
    fn the_stats_line_reads_as_vllms_and_idle_intervals_are_skipped() {
        let t0 = Instant::now();
        let mut l = StatsLogger::new(0, t0, figures(0, 0));
        // Nothing happened: idle, no line.
        assert_eq!(l.tick(t0 + Duration::from_secs(10), figures(0, 0)), None);
        let line = l
            .tick(t0 + Duration::from_secs(20), figures(1000, 500))
            .expect("a busy interval is logged");
        assert!(
            line.ends_with(
                "[loggers.py] Engine 000: Avg prompt throughput: 100.0 tokens/s, Avg generation \
                 throughput: 50.0 tokens/s, Running: 3 reqs, Waiting: 1 reqs, GPU KV cache \
                 usage: 25.6%, Prefix cache hit rate: 25.0%"
            ),
            "{line}"
        );
        assert!(line.starts_with("INFO "), "{line}");
        // The interval after a busy one is logged (zeros), the next idle one is not.
        let line = l.tick(t0 + Duration::from_secs(30), figures(1000, 500));
        assert!(line
            .unwrap()
            .contains("Avg prompt throughput: 0.0 tokens/s"));
        assert_eq!(
            l.tick(t0 + Duration::from_secs(40), figures(1000, 500)),
            None
        );
        let mut f = figures(1000, 600);
        f.num_preemptions = 2;
        let line = l.tick(t0 + Duration::from_secs(50), f).unwrap();
        assert!(
            line.contains("Waiting: 1 reqs, Preemptions: 2, GPU KV"),
            "{line}"
        );
    }

    #[test]
    fn kv_capacity_is_vllms_for_a_uniform_model() {
        let shape = ModelShape::llama_3_1_8b();
        let cfg = EngineConfig::with_defaults(10_000, 8192);
        assert_eq!(cfg.block_size, 16);
        let cap = kv_capacity(&shape, &cfg, 1);
        assert_eq!(cap.tokens, 160_000);
        // 8192 tokens = 512 blocks per request.
        assert!((cap.max_concurrency - 10_000.0 / 512.0).abs() < 1e-9);
        let [size, conc] = kv_capacity_lines(cap, 8192);
        assert!(
            size.ends_with("GPU KV cache size: 160,000 tokens"),
            "{size}"
        );
        assert!(
            conc.ends_with("Maximum concurrency for 8,192 tokens per request: 19.53x"),
            "{conc}"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
