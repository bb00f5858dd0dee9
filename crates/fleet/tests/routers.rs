//! Routers in front of independent replicas.

mod common;

use common::{engine, multi_turn, req, tokens};
use llm_emu_core::{EngineCore, Nanos, NoSink};
use llm_emu_fleet::{router_by_name, Replicas, RouterError, Tallied};
use llm_emu_sim::Sinks;

fn replicas(n: usize, router: &str) -> Replicas {
    Replicas::new(
        (0..n).map(|_| engine(2048, 50.0)).collect(),
        router_by_name(router).unwrap(),
    )
}

#[test]
fn round_robin_takes_instances_in_turn() {
    let mut r = replicas(3, "round-robin");
    let got: Vec<usize> = (0..7u32)
        .map(|i| {
            r.add_in_session(
                req(&format!("r{i}"), tokens(i, 0, 32), 4, Nanos::ZERO),
                i as u64,
                None,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn a_refused_request_is_not_counted_on_any_instance() {
    let mut r = replicas(2, "least-loaded");
    // 9000 tokens exceed max_model_len 8192 on every instance.
    assert!(r
        .add(req("big", tokens(1, 0, 9000), 4, Nanos::ZERO), 1)
        .is_err());
    assert!(r.routed_loads().iter().all(|l| l.requests == 0));
    assert_eq!(r.num_unfinished(), 0);
    assert!(!r.has_work());
}

#[test]
fn least_loaded_prefers_the_shorter_queue() {
    let mut r = replicas(3, "least-loaded");
    // All equal: the first instance; then instance 0 has one waiting (queue score 0 there,
    // 1 elsewhere): instance 1; then 2; then all equal again: 0.
    let got: Vec<usize> = (0..4u32)
        .map(|i| {
            r.add_in_session(
                req(&format!("r{i}"), tokens(i, 0, 32), 4, Nanos::ZERO),
                i as u64,
                None,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(got, [0, 1, 2, 0]);
}

#[test]
fn least_loaded_weighs_kv_usage_when_queues_are_equal() {
    let mut r = replicas(2, "least-loaded");
    // A long request runs on instance 0 (KV in use there, nothing waiting once scheduled).
    r.add(req("long", tokens(1, 0, 4000), 500, Nanos::ZERO), 1)
        .unwrap();
    r.run(Nanos::ZERO, &mut NoSink);
    let i = r
        .add_in_session(req("next", tokens(2, 0, 32), 4, Nanos::ZERO), 2, None)
        .unwrap();
    assert_eq!(i, 1);
}

#[test]
fn session_affinity_keeps_a_session_on_its_instance() {
    let mut r = replicas(3, "session");
    let mut place = |id: &str, s: Option<&str>| {
        r.add_in_session(req(id, tokens(9, 0, 32), 4, Nanos::ZERO), 0, s)
            .unwrap()
    };
    assert_eq!(place("a1", Some("alice")), 0);
    assert_eq!(place("b1", Some("bob")), 1);
    assert_eq!(place("x", None), 2);
    assert_eq!(place("a2", Some("alice")), 0);
    assert_eq!(place("c1", Some("carol")), 0);
    assert_eq!(place("b2", Some("bob")), 1);
}

#[test]
fn session_affinity_falls_back_to_the_cache_salt() {
    let mut r = replicas(2, "session");
    let mut salted = |id: &str, salt: &str| {
        let mut q = req(id, tokens(3, 0, 32), 4, Nanos::ZERO);
        q.cache_salt = Some(salt.into());
        r.add(q, 0).unwrap();
        r.instance_of(id).unwrap()
    };
    assert_eq!(salted("t1", "tenant-a"), 0);
    assert_eq!(salted("t2", "tenant-b"), 1);
    assert_eq!(salted("t3", "tenant-a"), 0);
}

#[test]
fn unknown_router_is_refused_by_name() {
    assert_eq!(
        router_by_name("random").err(),
        Some(RouterError::Unknown("random".into()))
    );
}

#[test]
fn prefix_aware_routes_to_the_instance_holding_the_prefix() {
    let mut r = replicas(4, "prefix-aware");
    // A 512-token conversation lands on instance 0 (all equal), and runs to the end.
    r.add(req("t0", tokens(5, 0, 512), 2, Nanos::ZERO), 0)
        .unwrap();
    let mut now = Nanos::ZERO;
    while let llm_emu_core::Wake::At(t) = r.run(now, &mut NoSink) {
        now = t;
    }
    // Its next turn (512 + 256 tokens) goes back to instance 0: 32 cached blocks there
    // make its cost 16 + 48 = 64 against 48 + 48 = 96 elsewhere.
    r.add(req("t1", tokens(5, 0, 768), 2, now), 1).unwrap();
    assert_eq!(r.instance_of("t1"), Some(0));
    // Another conversation arriving now avoids the instance with outstanding prefill.
    r.add(req("u0", tokens(6, 0, 768), 2, now), 2).unwrap();
    assert_eq!(r.instance_of("u0"), Some(1));
}

/// (prefix-cache hit rate over all instances, mean TTFT in ms) of the multi-turn workload.
fn multi_turn_on(router: &str) -> (f64, f64) {
    let mut fleet = Tallied::new(replicas(4, router));
    let w = multi_turn(10, 5).into_iter().map(Ok);
    let mut sinks = Sinks::default();
    let res = llm_emu_sim::run(&mut fleet, w, &mut sinks, &mut |_| {}).expect("runs");
    assert_eq!(res.completed, 50);
    let (hits, queries) = fleet.tallies().iter().fold((0, 0), |(h, q), t| {
        (
            h + t.scheduler.prefix_cache_hits,
            q + t.scheduler.prefix_cache_queries,
        )
    });
    let ttft = res.stats.ttft_ms.iter().sum::<f64>() / res.stats.ttft_ms.len() as f64;
    (hits as f64 / queries as f64, ttft)
}

#[test]
fn prefix_aware_beats_round_robin_on_multi_turn_sessions() {
    let (rr_hit, rr_ttft) = multi_turn_on("round-robin");
    let (pa_hit, pa_ttft) = multi_turn_on("prefix-aware");
    let (ll_hit, ll_ttft) = multi_turn_on("least-loaded");
    eprintln!("round-robin: hit rate {rr_hit:.3}, mean TTFT {rr_ttft:.2} ms");
    eprintln!("least-loaded: hit rate {ll_hit:.3}, mean TTFT {ll_ttft:.2} ms");
    eprintln!("prefix-aware: hit rate {pa_hit:.3}, mean TTFT {pa_ttft:.2} ms");
    assert!(pa_hit > rr_hit + 0.2, "{pa_hit} vs {rr_hit}");
    assert!(pa_ttft < rr_ttft, "{pa_ttft} vs {rr_ttft}");
    assert!(pa_hit > ll_hit && pa_ttft < ll_ttft, "{pa_hit} vs {ll_hit}");
}
