//! End-to-end checks of the engine loop on hand-computable cases.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::sched::RequestUpdate;
use llm_emu_core::{
    Engine, EngineConfig, EngineObserver, FinishReason, Nanos, NewRequest, SamplingParams,
    Scheduler, StepRecord, Wake,
};

#[derive(Default)]
struct Log {
    steps: Vec<(u64, u64, usize)>,
    finished: Vec<(String, FinishReason, u64, u64)>,
}

impl EngineObserver for Log {
    fn on_schedule(&mut self, s: &StepRecord<'_>) {
        self.steps.push((
            s.scheduled_at.0,
            s.device_end.0,
            s.output.total_num_scheduled_tokens,
        ));
    }
    fn on_update(&mut self, _now: Nanos, ups: &[RequestUpdate], _s: &Scheduler) {
        for u in ups {
            if let Some(r) = &u.finished {
                let t = r.times;
                self.finished.push((
                    r.request_id.clone(),
                    r.status_reason(),
                    t.first_token.unwrap().0,
                    t.last_token.unwrap().0,
                ));
            }
        }
    }
}

trait Reason {
    fn status_reason(&self) -> FinishReason;
}
impl Reason for llm_emu_core::Request {
    fn status_reason(&self) -> FinishReason {
        match self.status {
            llm_emu_core::request::RequestStatus::Finished(r) => r,
            _ => panic!("not finished"),
        }
    }
}

fn req(id: &str, prompt: usize, max_tokens: u32) -> NewRequest {
    NewRequest {
        tenant: None,
        request_id: id.into(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(
            (0..prompt as u32).map(|i| i + 7).collect::<Vec<_>>(),
        ),
        sampling: SamplingParams {
            max_tokens,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        arrival: Nanos::ZERO,
    }
}

fn run_to_end(e: &mut Engine, log: &mut Log) -> u64 {
    let mut now = Nanos::ZERO;
    loop {
        match e.run(now, log) {
            Wake::At(t) => now = t,
            Wake::Idle => return now.0,
        }
    }
}

#[test]
fn sync_single_request_timing() {
    let mut cfg = EngineConfig::with_defaults(100, 1024);
    cfg.async_scheduling = false;
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    e.add_request(req("a", 20, 4)).unwrap();
    let mut log = Log::default();
    let end = run_to_end(&mut e, &mut log);
    // 4 steps of 1 ms (prefill samples the first token), then one empty schedule.
    assert_eq!(
        log.finished,
        vec![("a".into(), FinishReason::Length, 1_000_000, 4_000_000)]
    );
    assert_eq!(end, 4_000_000);
    assert_eq!(log.steps.iter().filter(|s| s.2 > 0).count(), 4);
    assert_eq!(e.scheduler().kv().num_free_blocks(), 99);
}

#[test]
fn async_single_request_timing_matches_sync() {
    let cfg = EngineConfig::with_defaults(100, 1024);
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    e.add_request(req("a", 20, 4)).unwrap();
    let mut log = Log::default();
    run_to_end(&mut e, &mut log);
    // The device runs back to back: tokens at 1, 2, 3, 4 ms; no step past max_tokens.
    assert_eq!(
        log.finished,
        vec![("a".into(), FinishReason::Length, 1_000_000, 4_000_000)]
    );
    assert_eq!(log.steps.iter().filter(|s| s.2 > 0).count(), 4);
    assert_eq!(e.scheduler().kv().num_free_blocks(), 99);
    assert!(!e.has_work());
}

#[test]
fn rejects_bad_requests_and_keeps_going() {
    let mut cfg = EngineConfig::with_defaults(5, 1024);
    cfg.async_scheduling = false;
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    assert!(e.add_request(req("big", 100, 10)).is_err());
    assert!(e.add_request(req("long", 1024, 10)).is_err());
    assert!(e.add_request(req("empty", 0, 10)).is_err());
    e.add_request(req("ok", 10, 3)).unwrap();
    assert!(e.add_request(req("ok", 10, 3)).is_err());
    let mut log = Log::default();
    run_to_end(&mut e, &mut log);
    assert_eq!(log.finished.len(), 1);
}

/// The engine keeps a queued request's block hashes but drops its prompt ids while KV cache
/// events are off, and keeps them (for `BlockStored`) while events are on; either way the
/// request runs the same and caches the same blocks.
#[test]
fn queued_requests_keep_prompt_ids_only_for_kv_events() {
    let mut outcomes = Vec::new();
    for events in [false, true] {
        let mut cfg = EngineConfig::with_defaults(100, 1024);
        cfg.async_scheduling = false;
        cfg.max_num_seqs = 1;
        let mut e = Engine::new(
            cfg,
            Box::new(LinearLatency::new(1000.0, 0.0)),
            Box::new(HashSampler::default()),
        )
        .unwrap();
        if events {
            e.enable_kv_cache_events();
        }
        e.add_request(req("a", 37, 6)).unwrap();
        e.add_request(req("b", 37, 6)).unwrap();
        let mut log = Log::default();
        // One step: "a" runs, "b" waits.
        e.run(Nanos::ZERO, &mut log);
        let s = e.scheduler();
        let b = s.request(s.key_of("b").unwrap()).unwrap();
        assert_eq!(b.num_prompt_tokens(), 37);
        assert_eq!(b.block_hashes.len(), 37 / 16);
        let prompt: Vec<u32> = (0..37).map(|i| i + 7).collect();
        if events {
            assert_eq!(b.prompt_token_ids(), Some(&prompt[..]));
        } else {
            assert_eq!(b.prompt_token_ids(), None);
        }
        let hashes = b.block_hashes.clone();
        run_to_end(&mut e, &mut log);
        let stored: Vec<Vec<u32>> = e
            .take_kv_cache_events()
            .into_iter()
            .filter_map(|ev| match ev {
                llm_emu_core::kv::KvCacheEvent::BlockStored { token_ids, .. } => Some(token_ids),
                _ => None,
            })
            .collect();
        if events {
            // "a" stores the prompt's two full blocks first, with their token ids.
            assert_eq!(stored[0], prompt[..32]);
        } else {
            assert!(stored.is_empty());
        }
        outcomes.push((log.finished, log.steps, hashes));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}
