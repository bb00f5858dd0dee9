//! `/metrics` rendered while the engine thread runs: every scrape is one consistent snapshot
//! (never a mix of two steps), counters only grow, and once the requests end the snapshot holds
//! all of them.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, NewRequest, SamplingParams};
use llm_emu_serve::engine_loop::{EngineEvent, EngineThread};
use llm_emu_serve::metrics::EngineMetrics;
use llm_emu_serve::thread_priority::PriorityRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "m";
const REQUESTS: u64 = 8;
const MAX_TOKENS: u32 = 40;
const PROMPT: u64 = 16;

fn sample(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{engine=\"0\",model_name=\"{MODEL}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

/// Counters of one scrape that must agree with each other.
struct Scrape {
    prompt: f64,
    generation: f64,
    ttft_count: f64,
    itl_count: f64,
    finished: f64,
    running: f64,
}

fn scrape(m: &EngineMetrics) -> Scrape {
    let t = m.render();
    let length = format!(
        "vllm:request_success_total{{engine=\"0\",finished_reason=\"length\",model_name=\"{MODEL}\"}} "
    );
    Scrape {
        prompt: sample(&t, "vllm:prompt_tokens_total"),
        generation: sample(&t, "vllm:generation_tokens_total"),
        ttft_count: sample(&t, "vllm:time_to_first_token_seconds_count"),
        itl_count: sample(&t, "vllm:inter_token_latency_seconds_count"),
        finished: t
            .lines()
            .find_map(|l| l.strip_prefix(&length))
            .unwrap()
            .parse()
            .unwrap(),
        running: sample(&t, "vllm:num_requests_running"),
    }
}

#[test]
fn scrapes_under_a_running_engine_are_consistent_snapshots() {
    let mut cfg = EngineConfig::with_defaults(1000, 1024);
    cfg.async_scheduling = true;
    // 2 ms steps: 40 tokens take ~80 ms, long enough to scrape many times mid-run.
    let engine = Engine::new(
        cfg,
        Box::new(LinearLatency::new(2000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    let metrics = Arc::new(EngineMetrics::new(MODEL, 1024));
    let thread = EngineThread::spawn(engine, metrics.clone(), PriorityRequest::Normal).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let now = thread.handle.clock.now();
    let requests = (0..REQUESTS)
        .map(|i| {
            let req = NewRequest {
                tenant: None,
                request_id: format!("r{i}"),
                prompt_token_ids: llm_emu_core::PromptTokens::from(
                    (0..PROMPT as u32).collect::<Vec<_>>(),
                ),
                sampling: SamplingParams {
                    max_tokens: MAX_TOKENS,
                    min_tokens: MAX_TOKENS,
                    ignore_eos: true,
                    ..Default::default()
                },
                priority: 0,
                cache_salt: None,
                arrival: now,
            };
            (req, i as u32)
        })
        .collect();
    thread.handle.add(requests, tx).unwrap();

    let mut last = scrape(&metrics);
    let mut mid_run = 0;
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while done < REQUESTS {
        assert!(Instant::now() < deadline, "requests did not finish");
        while let Ok((_, ev)) = rx.try_recv() {
            if let EngineEvent::Token {
                finish: Some(_), ..
            } = ev
            {
                done += 1;
            }
        }
        let s = scrape(&metrics);
        // One snapshot: every generated token is a first token or has a gap before it, and
        // each first token brought its prompt.
        assert_eq!(s.generation, s.ttft_count + s.itl_count);
        assert_eq!(s.prompt, s.ttft_count * PROMPT as f64);
        assert!(s.finished + s.running <= REQUESTS as f64);
        // Counters never go back.
        assert!(s.generation >= last.generation && s.finished >= last.finished);
        if s.generation > 0.0 && s.finished == 0.0 {
            mid_run += 1;
        }
        last = s;
        std::thread::sleep(Duration::from_micros(500));
    }
    assert!(mid_run > 0, "no scrape landed while the requests ran");
    // A client that has its last token finds it counted.
    let end = scrape(&metrics);
    assert_eq!(end.finished, REQUESTS as f64);
    assert_eq!(end.generation, (REQUESTS * MAX_TOKENS as u64) as f64);
    assert_eq!(end.ttft_count, REQUESTS as f64);
    assert_eq!(end.running, 0.0);
    let lateness = thread.handle.lateness();
    assert_eq!(lateness.admit.count, REQUESTS);
    assert!(lateness.wakes > 0);
    thread.shutdown();
}
