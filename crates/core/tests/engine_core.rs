//! The driver-facing interface: tags echoed in every output, stats that agree with the engine's
//! detailed observer, stops reported as `stop`.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::sched::RequestUpdate;
use llm_emu_core::{
    Engine, EngineConfig, EngineCore, EngineObserver, EngineSink, FinishReason, IterationStats,
    Nanos, NewRequest, RequestOutput, SamplingParams, Scheduler, StepStats, Wake,
};
use std::collections::HashMap;

fn engine(async_scheduling: bool) -> Engine {
    let mut cfg = EngineConfig::with_defaults(64, 1024);
    cfg.async_scheduling = async_scheduling;
    cfg.max_num_batched_tokens = 64;
    Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 1.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap()
}

fn req(id: &str, prompt: usize, max_tokens: u32, arrival: u64) -> NewRequest {
    NewRequest {
        tenant: None,
        request_id: id.into(),
        prompt_token_ids: llm_emu_core::PromptTokens::from(
            (0..prompt as u32).map(|i| i + 3).collect::<Vec<_>>(),
        ),
        sampling: SamplingParams {
            max_tokens,
            min_tokens: max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        arrival: Nanos(arrival),
    }
}

#[derive(Default)]
struct Sink {
    steps: Vec<StepStats>,
    iterations: Vec<IterationStats>,
    outputs: Vec<RequestOutput>,
}

impl EngineSink for Sink {
    fn on_step(&mut self, s: &StepStats) {
        self.steps.push(*s);
    }
    fn on_iteration(&mut self, stats: &IterationStats, outputs: &[RequestOutput]) {
        self.iterations.push(stats.clone());
        self.outputs.extend_from_slice(outputs);
    }
}

/// (request id, token) in output order, as the detailed observer sees them.
#[derive(Default)]
struct Tokens(Vec<(String, Option<u32>)>);

impl EngineObserver for Tokens {
    fn on_update(&mut self, _now: Nanos, ups: &[RequestUpdate], s: &Scheduler) {
        for u in ups {
            let id = match (&u.finished, s.request(u.key)) {
                (Some(r), _) => r.request_id.clone(),
                (None, Some(r)) => r.request_id.clone(),
                (None, None) => panic!("update for an unknown request"),
            };
            self.0.push((id, u.new_token));
        }
    }
}

fn drive<E: EngineCore>(e: &mut E, sink: &mut Sink) {
    let mut now = Nanos::ZERO;
    while let Wake::At(t) = e.run(now, sink) {
        now = t;
    }
}

const REQS: [(&str, usize, u32, u64); 4] = [
    ("a", 40, 5, 0),
    ("b", 100, 3, 0),
    ("c", 7, 8, 0),
    ("d", 64, 1, 0),
];

#[test]
fn every_output_carries_its_tag_and_matches_the_observer() {
    for async_scheduling in [false, true] {
        let mut e = engine(async_scheduling);
        let mut tags = HashMap::new();
        for (i, (id, p, m, a)) in REQS.iter().enumerate() {
            let tag = 1000 + 7 * i as u64;
            e.add(req(id, *p, *m, *a), tag).unwrap();
            tags.insert(tag, (*id, *m));
        }
        let mut sink = Sink::default();
        drive(&mut e, &mut sink);

        let mut reference = engine(async_scheduling);
        for (id, p, m, a) in REQS {
            reference.add_request(req(id, p, m, a)).unwrap();
        }
        let mut obs = Tokens::default();
        let mut now = Nanos::ZERO;
        while let Wake::At(t) = reference.run(now, &mut obs) {
            now = t;
        }

        let seen: Vec<(String, Option<u32>)> = sink
            .outputs
            .iter()
            .map(|o| (tags[&o.tag].0.to_string(), o.new_token))
            .collect();
        assert_eq!(seen, obs.0, "async={async_scheduling}");
        for (tag, (id, max)) in &tags {
            let n = sink.outputs.iter().filter(|o| o.tag == *tag).count();
            assert_eq!(n, *max as usize, "{id}: one output per token");
            let last = sink.outputs.iter().rfind(|o| o.tag == *tag).unwrap();
            assert_eq!(last.finish.unwrap().reason, FinishReason::Length);
        }
        let finished: Vec<_> = sink
            .iterations
            .iter()
            .flat_map(|i| &i.finished_requests)
            .collect();
        assert_eq!(finished.len(), REQS.len());
        for f in finished {
            assert_eq!(tags[&f.tag].0, f.request_id);
            assert_eq!(f.num_generation_tokens, tags[&f.tag].1 as usize);
        }
        // Tokens, first tokens and gaps add up: each generated token is a first token or has a
        // gap to the one before.
        let gen: u64 = sink
            .iterations
            .iter()
            .map(|i| i.num_generation_tokens)
            .sum();
        let ttfts: usize = sink
            .iterations
            .iter()
            .map(|i| i.time_to_first_tokens_iter.len())
            .sum();
        let itls: usize = sink
            .iterations
            .iter()
            .map(|i| i.inter_token_latencies_iter.len())
            .sum();
        assert_eq!(gen, REQS.iter().map(|r| r.2 as u64).sum::<u64>());
        assert_eq!(ttfts, REQS.len());
        assert_eq!(gen as usize, ttfts + itls);
        let prompt: u64 = sink.iterations.iter().map(|i| i.num_prompt_tokens).sum();
        assert_eq!(prompt, REQS.iter().map(|r| r.1 as u64).sum::<u64>());
        assert!(sink.steps.iter().any(|s| s.num_prefill_tokens > 0));
        assert_eq!(
            sink.steps.iter().map(|s| s.index).collect::<Vec<_>>(),
            (0..sink.steps.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(e.num_unfinished(), 0);
        assert!(!EngineCore::has_work(&e));
    }
}

#[test]
fn stopped_requests_finish_as_stop_and_aborted_as_abort() {
    let mut e = engine(true);
    e.add(req("s", 10, 50, 0), 1).unwrap();
    e.add(req("x", 10, 50, 0), 2).unwrap();
    e.add(req("keep", 10, 3, 0), 3).unwrap();
    let mut sink = Sink::default();
    let mut now = Nanos::ZERO;
    // Two steps in, stop one and abort another.
    for _ in 0..2 {
        if let Wake::At(t) = EngineCore::run(&mut e, now, &mut sink) {
            now = t;
        }
    }
    EngineCore::finish_stopped(&mut e, "s");
    EngineCore::abort(&mut e, "x");
    while let Wake::At(t) = EngineCore::run(&mut e, now, &mut sink) {
        now = t;
    }
    let reason = |tag: u64| {
        let o = sink
            .outputs
            .iter()
            .rfind(|o| o.tag == tag)
            .expect("an output");
        o.finish.map(|f| f.reason)
    };
    assert_eq!(reason(1), Some(FinishReason::Stop));
    assert_eq!(reason(2), Some(FinishReason::Abort));
    assert_eq!(reason(3), Some(FinishReason::Length));
    let stopped = sink
        .outputs
        .iter()
        .rfind(|o| o.tag == 1)
        .expect("an output");
    assert_eq!(stopped.new_token, None, "a stop from outside adds no token");
    let f = sink
        .iterations
        .iter()
        .flat_map(|i| &i.finished_requests)
        .find(|f| f.tag == 1)
        .unwrap();
    assert_eq!(f.finish_reason, FinishReason::Stop);
    assert_eq!(f.request_id, "s");
    assert!(f.num_generation_tokens < 50);
}

#[test]
fn engine_index_is_carried_by_stats() {
    let mut e = engine(false).with_engine_index(3);
    e.add(req("a", 10, 2, 0), 0).unwrap();
    let mut sink = Sink::default();
    drive(&mut e, &mut sink);
    assert!(!sink.steps.is_empty() && !sink.iterations.is_empty());
    assert!(sink.steps.iter().all(|s| s.engine_index == 3));
    assert!(sink.iterations.iter().all(|i| i.engine_index == 3));
}
