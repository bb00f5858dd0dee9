//! Replicas of data-parallel groups (`--replicas M --data-parallel-size N`): the router sees
//! every rank of every group and names the rank it picks; each group runs its ranks as it
//! would alone.

mod common;

use common::{engine, item, run, tokens};
use llm_emu_core::latency::{LatencyModel, LinearLatency};
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, EngineCore, Nanos};
use llm_emu_fleet::{
    router_by_name, AllToAll, DataParallel, EpGroup, Link, Replicas, ROUTER_NAMES,
};
use llm_emu_sim::synthetic::SyntheticWorkload;
use llm_emu_sim::{RequestRecord, SimResult, Sinks};

fn simulate(e: &mut dyn EngineCore) -> (SimResult, Vec<RequestRecord>) {
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    let w = SyntheticWorkload::new(300, 80.0, 7).map(Ok);
    let res = llm_emu_sim::run(e, w, &mut sinks, &mut |_| {}).expect("runs");
    (res, sinks.records.take().expect("kept"))
}

/// `groups` groups of `ranks` independent ranks, engines numbered across the fleet.
fn dp_groups(groups: usize, ranks: usize) -> Vec<DataParallel> {
    (0..groups)
        .map(|g| {
            DataParallel::new_at(
                (0..ranks).map(|_| engine(600, 20.0)).collect(),
                ranks,
                g * ranks,
            )
        })
        .collect()
}

#[test]
fn groups_of_independent_ranks_are_replicas_of_every_rank() {
    // Without lockstep a rank is an engine of its own: 2 groups of 2 ranks behind a router
    // are 4 replicas behind it, request by request, under every router.
    for name in ROUTER_NAMES {
        let flat = simulate(&mut Replicas::new(
            (0..4).map(|_| engine(600, 20.0)).collect(),
            router_by_name(name).unwrap(),
        ));
        let grouped = simulate(&mut Replicas::of_groups(
            dp_groups(2, 2),
            router_by_name(name).unwrap(),
        ));
        assert!(flat.0.completed > 250, "{name}: the workload runs");
        assert_eq!(flat.0.end, grouped.0.end, "{name}");
        assert_eq!(flat.0.num_steps, grouped.0.num_steps, "{name}");
        for (x, y) in flat.1.iter().zip(&grouped.1) {
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "{name}");
        }
        let engines: std::collections::BTreeSet<_> =
            grouped.1.iter().filter_map(|r| r.engine).collect();
        assert_eq!(engines.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }
}

/// Two lockstep ranks, steps of 1 ms, all-to-all links of 1 ms latency: a step of a group
/// with work lasts 1 ms + (1 ms + T·2048 B / 16 GB/s) + (1 ms + T·2000 B / 16 GB/s) (dispatch of
/// hidden states and 24 router logits, combine of hidden states).
fn ep_group(first: usize) -> DataParallel {
    let models: Vec<Box<dyn LatencyModel>> = (0..2)
        .map(|_| Box::new(LinearLatency::new(1000.0, 0.0)) as _)
        .collect();
    let a2a = AllToAll {
        hidden_size: 1000,
        dtype_bytes: 2,
        num_experts: 24,
        moe_layers: 1,
        ranks: 2,
        link: Link {
            bandwidth_gbs: 16.0,
            latency_ns: 1_000_000.0,
        },
    };
    let (group, lats) = EpGroup::new(models, a2a);
    let engines = lats
        .into_iter()
        .map(|l| {
            let mut cfg = EngineConfig::with_defaults(1000, 8192);
            cfg.async_scheduling = false;
            cfg.enforce_eager = true;
            Engine::new(cfg, Box::new(l), Box::new(HashSampler::default())).expect("valid")
        })
        .collect();
    DataParallel::expert_parallel_at(engines, 2, group, first)
}

#[test]
fn each_expert_parallel_group_steps_in_its_own_lockstep() {
    let mut fleet = Replicas::of_groups(
        vec![ep_group(0), ep_group(2)],
        router_by_name("round-robin").unwrap(),
    );
    // One request, to instance 0 (group 0, rank 0): 4 prompt tokens, 2 output tokens.
    let r = run(&mut fleet, vec![item("a", tokens(0, 0, 4), 2, Nanos::ZERO)]);
    assert_eq!(r[0].engine, Some(0));
    // Prefill step, T = 4: 1 ms + (1 ms + 512 ns) + (1 ms + 500 ns); decode step, T = 1:
    // 1 ms + (1 ms + 128 ns) + (1 ms + 125 ns).
    let prefill = 1_000_000 + 2_001_012;
    let decode = 1_000_000 + 2_000_253;
    assert_eq!((r[0].first_token_s.unwrap() * 1e9).round() as u64, prefill);
    assert_eq!(
        (r[0].last_token_s.unwrap() * 1e9).round() as u64,
        prefill + decode
    );
    let groups: Vec<_> = fleet
        .groups()
        .map(|g| g.lockstep_report().unwrap())
        .collect();
    // Group 0 ran one wave of 2 steps, its idle rank 1 dummy batches; group 1 never ran.
    assert_eq!((groups[0].waves, groups[0].steps), (1, 2));
    assert_eq!(groups[0].dummy_steps, vec![0, 2]);
    assert_eq!((groups[1].waves, groups[1].steps), (0, 0));
}
