//! The driver's metrics on runs small enough to compute by hand.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_sim::report::summary_json;
use llm_emu_sim::{run, Sinks};
use support::item;

mod support;

#[test]
fn two_requests_exact_metrics() {
    // Sync scheduling, 10 ms per step whatever the batch. `a` arrives at 0: its prefill step
    // ends at 10 ms (first token), then 3 decodes: tokens at 10, 20, 30, 40 ms. `b` arrives at
    // 5 ms, is taken in when step 1 ends (10 ms) and joins step 2: tokens at 20 and 30 ms.
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    cfg.async_scheduling = false;
    let cfg2 = cfg.clone();
    let mut e = Engine::new(
        cfg,
        Box::new(LinearLatency::new(10_000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    let items = vec![Ok(item("a", 0, 40, 4)), Ok(item("b", 5, 20, 2))];
    let mut sinks = Sinks::default();
    let mut res = run(&mut e, items.into_iter(), &mut sinks, &mut |_| {}).unwrap();
    assert_eq!((res.completed, res.failed), (2, 0));
    assert_eq!(res.end, Nanos::from_millis(40));
    let m = summary_json(&mut res, e.scheduler(), &cfg2, "test");
    let f = |k: &str| m[k].as_f64().unwrap();
    // TTFT: a 10 ms, b 20 − 5 = 15 ms.
    assert_eq!(f("mean_ttft_ms"), 12.5);
    // TPOT: a (40 − 10)/3 = 10, b (30 − 20)/1 = 10.
    assert_eq!(f("mean_tpot_ms"), 10.0);
    // E2EL: a 40, b 25.
    assert_eq!(f("mean_e2el_ms"), 32.5);
    assert_eq!(f("median_e2el_ms"), 32.5);
    // Four inter-token gaps of 10 ms.
    assert!((f("mean_itl_ms") - 10.0).abs() < 1e-9);
    assert_eq!(f("duration"), 0.04);
    assert_eq!(f("output_throughput"), 6.0 / 0.04);
    assert_eq!(m["num_steps"], 4);
}
