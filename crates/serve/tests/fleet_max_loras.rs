//! vLLM's `max_loras` rule on every member of a served fleet: a request's LoRA adapter
//! (`Placement::lora`) reaches the engine it runs on — a data-parallel rank, a replica, and
//! both halves of a prefill/decode request — so that with `max_loras` 1 a second adapter waits
//! until the first has left the batch, as on a single engine. Run on a virtual clock.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{
    Engine, EngineConfig, EngineSink, IterationStats, Nanos, NewRequest, RequestOutput,
    SamplingParams, Wake,
};
use llm_emu_fleet::{router_by_name, DataParallel, Disaggregated, Link, PdRole, Replicas};
use llm_emu_serve::fleet_front::{Placement, ServedCore};
use std::collections::HashMap;

fn engine() -> Engine {
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    cfg.async_scheduling = false;
    Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap()
}

fn req(id: &str) -> NewRequest {
    NewRequest {
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
        tenant: None,
        arrival: Nanos::ZERO,
    }
}

/// First and last client-visible token time of each tag.
#[derive(Default)]
struct Times(HashMap<u64, (Nanos, Nanos)>);

impl EngineSink for Times {
    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        for o in outputs.iter().filter(|o| o.new_token.is_some()) {
            let t = it.iteration_timestamp;
            self.0.entry(o.tag).or_insert((t, t)).1 = t;
        }
    }
}

/// Adapter 1's request (tag 0) and adapter 2's (tag 1) arrive together, both placed on
/// `engine` (or by the fleet); every engine has `max_loras`. Returns each tag's times.
fn run(
    core: &mut dyn ServedCore,
    engine: Option<usize>,
    max_loras: usize,
) -> HashMap<u64, (Nanos, Nanos)> {
    core.each_engine(&mut |_, e| e.set_max_loras(Some(max_loras)));
    for (tag, (id, lora)) in [("a", 1), ("b", 2)].into_iter().enumerate() {
        let to = Placement {
            engine,
            lora: Some(lora),
            ..Default::default()
        };
        core.add_placed(req(id), tag as u64, &to).unwrap();
    }
    let mut times = Times::default();
    let mut now = Nanos::ZERO;
    while let Wake::At(t) = core.run(now, &mut times) {
        now = t;
    }
    assert_eq!(times.0.len(), 2, "both answered");
    times.0
}

fn pd(decode_dp: bool) -> Disaggregated {
    let f = Disaggregated::new(
        (0..2).map(|_| engine()).collect(),
        vec![PdRole::Prefill, PdRole::Decode],
        vec![1_000; 2],
        Link::default(),
        router_by_name("round-robin").unwrap(),
        router_by_name("round-robin").unwrap(),
    )
    .unwrap();
    if decode_dp {
        f.with_data_parallel_side(PdRole::Prefill, 1)
            .with_data_parallel_side(PdRole::Decode, 1)
    } else {
        f
    }
}

/// Every fleet kind, with the engine both requests are sent to.
fn fleets() -> Vec<(&'static str, Box<dyn ServedCore>, Option<usize>)> {
    vec![
        ("engine", Box::new(engine()), None),
        (
            "data-parallel rank",
            Box::new(DataParallel::new(vec![engine(), engine()], 1)),
            Some(1),
        ),
        (
            "replica",
            Box::new(Replicas::new(
                vec![engine(), engine()],
                router_by_name("round-robin").unwrap(),
            )),
            Some(1),
        ),
        (
            "replica of a DP group",
            Box::new(Replicas::of_groups(
                vec![DataParallel::new(vec![engine(), engine()], 2)],
                router_by_name("round-robin").unwrap(),
            )),
            Some(0),
        ),
        ("prefill/decode", Box::new(pd(false)), None),
        ("prefill/decode of DP sides", Box::new(pd(true)), None),
    ]
}

#[test]
fn a_second_adapter_waits_for_the_first_on_every_fleet_member() {
    for (name, mut core, engine) in fleets() {
        let t = run(core.as_mut(), engine, 1);
        assert!(
            t[&1].0 > t[&0].1,
            "{name}: adapter 2 started at {:?}, before adapter 1 ended at {:?}",
            t[&1].0,
            t[&0].1
        );
    }
}

#[test]
fn two_adapters_share_the_batch_when_max_loras_allows() {
    for (name, mut core, engine) in fleets() {
        let t = run(core.as_mut(), engine, 2);
        assert_eq!(t[&1].0, t[&0].0, "{name}: both start together");
    }
}
