//! Scenario workloads through the engine: what they are for shows in the run's metrics.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, SchedulingPolicy};
use llm_emu_sim::report::summary_json;
use llm_emu_sim::scenario::Scenario;
use llm_emu_sim::{run, Sinks, WorkloadItem};
use serde_json::{Map, Value};

fn simulate(spec: &str, n: usize, policy: SchedulingPolicy) -> Map<String, Value> {
    let mut cfg = EngineConfig::with_defaults(4_000, 8192);
    cfg.scheduling_policy = policy;
    let engine_cfg = cfg.clone();
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(5_000.0, 20.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    let sc: Scenario = spec.parse().unwrap();
    let items = sc.workload(n, 20.0, 11).unwrap().map(Ok::<WorkloadItem, _>);
    let mut res = run(&mut e, items, &mut Sinks::default(), &mut |_| {}).unwrap();
    assert_eq!((res.completed, res.failed), (n, 0), "{spec}");
    summary_json(&mut res, e.scheduler(), &engine_cfg, "linear")
}

#[test]
fn session_turns_hit_the_prefix_cache() {
    let rate = |m: &Map<String, Value>| m["prefix_cache_hit_rate"].as_f64().unwrap();
    let sessions = simulate(
        "sessions:turns=5,think=3,system=64",
        600,
        SchedulingPolicy::Fcfs,
    );
    let poisson = simulate("poisson", 600, SchedulingPolicy::Fcfs);
    assert!(rate(&sessions) > 0.3, "{}", rate(&sessions));
    assert!(rate(&poisson) < 0.01, "{}", rate(&poisson));
    assert_eq!(sessions["scheduling_policy"], "fcfs");
}

#[test]
fn every_policy_runs_every_scenario_and_says_which_it_was() {
    for spec in ["flash:at=5,for=5,x=8", "sessions:turns=3,think=1"] {
        for p in SchedulingPolicy::ALL {
            let m = simulate(spec, 150, p);
            assert_eq!(m["scheduling_policy"], p.label().as_str());
            assert_eq!(m["engine_config"]["scheduling_policy"], p.name());
        }
    }
}
