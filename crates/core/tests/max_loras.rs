//! vLLM's `max_loras` rule (`scheduler.py`: a waiting request whose adapter would make the
//! step's batch hold more than `max_loras` distinct adapters is skipped, the next one tried),
//! on a hand-derived case.
//!
//! Four requests arrive together, in this order: A (adapter 1, 3 tokens), B (adapter 2),
//! C (adapter 1), D (base model). With `max_loras` 1 the first step admits A (adapters {1}),
//! skips B (a second adapter), admits C (adapter 1 is already there) and D (no adapter); B goes
//! back to the head of the queue and is skipped again in every step that schedules A or C, so
//! its first token comes one step after A's and C's last. With `max_loras` 2, or without a
//! LoRA config, all four start in the first step.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::sched::RequestUpdate;
use llm_emu_core::{
    Engine, EngineConfig, EngineObserver, Nanos, NewRequest, SamplingParams, Scheduler, Wake,
};
use std::collections::HashMap;

fn req(id: &str) -> NewRequest {
    NewRequest {
        tenant: None,
        request_id: id.into(),
        prompt_token_ids: llm_emu_core::PromptTokens::from((3..11).collect::<Vec<u32>>()),
        sampling: SamplingParams {
            max_tokens: 3,
            min_tokens: 3,
            ignore_eos: true,
            ..Default::default()
        },
        priority: 0,
        cache_salt: None,
        arrival: Nanos::ZERO,
    }
}

/// Each request's first and last token times.
#[derive(Default)]
struct Times(HashMap<String, (Nanos, Nanos)>);

impl EngineObserver for Times {
    fn on_update(&mut self, now: Nanos, ups: &[RequestUpdate], s: &Scheduler) {
        for u in ups.iter().filter(|u| u.new_token.is_some()) {
            let id = match (&u.finished, s.request(u.key)) {
                (Some(r), _) => r.request_id.clone(),
                (None, Some(r)) => r.request_id.clone(),
                (None, None) => panic!("update for an unknown request"),
            };
            self.0.entry(id).or_insert((now, now)).1 = now;
        }
    }
}

fn run(max_loras: Option<usize>) -> HashMap<String, (Nanos, Nanos)> {
    let mut cfg = EngineConfig::with_defaults(256, 1024);
    cfg.async_scheduling = false;
    cfg.enable_prefix_caching = false;
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    e.set_max_loras(max_loras);
    for (id, lora) in [("A", Some(1)), ("B", Some(2)), ("C", Some(1)), ("D", None)] {
        e.add_tagged_lora(req(id), 0, lora).unwrap();
    }
    let mut times = Times::default();
    let mut now = Nanos::ZERO;
    while let Wake::At(t) = e.run(now, &mut times) {
        now = t;
    }
    times.0
}

#[test]
fn a_second_adapter_waits_while_the_first_is_in_the_batch() {
    let t = run(Some(1));
    let first = t["A"].0;
    assert_eq!(t["C"].0, first, "same adapter: admitted together");
    assert_eq!(t["D"].0, first, "the base model is not limited");
    let a_c_end = t["A"].1.max(t["C"].1);
    assert!(t["B"].0 > a_c_end, "B starts after A and C end: {t:?}");
    // B is admitted in the step after A's and C's last token, and its prefill gives its first
    // token at that step's end: one step (1 ms) later.
    assert_eq!(t["B"].0, Nanos(a_c_end.0 + 1_000_000), "{t:?}");
}

#[test]
fn enough_slots_or_no_lora_config_admit_all_at_once() {
    for max in [Some(2), None] {
        let t = run(max);
        let first = t["A"].0;
        for id in ["B", "C", "D"] {
            assert_eq!(t[id].0, first, "{id} with max_loras {max:?}: {t:?}");
        }
    }
}
