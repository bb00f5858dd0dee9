//! Prefill/decode disaggregation whose sides are vLLM data-parallel deployments, derived by
//! hand: the prefill rank chosen by the prefill side's balancer at arrival, the decode rank by
//! the decode side's balancer when the prefill half is done, and TTFT = prefill step + KV
//! transfer + the decode rank's first step.

mod common;

use common::{item, ns, tokens};
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_fleet::{router_by_name, Disaggregated, Link, PdRole};
use llm_emu_sim::{RequestRecord, WorkloadItem};

/// 1 ms + 1 µs per token, synchronous scheduling, 16-token blocks.
fn engine() -> Engine {
    let mut cfg = EngineConfig::with_defaults(1000, 8192);
    cfg.async_scheduling = false;
    Engine::new(
        cfg,
        Box::new(LinearLatency::new(1000.0, 1.0)),
        Box::new(HashSampler::default()),
    )
    .expect("valid")
}

const LINK: Link = Link {
    bandwidth_gbs: 16.0,
    latency_ns: 20_000.0,
};
/// KV bytes of one block (all layers).
const BLOCK_BYTES: u64 = 1_000_000;

/// Engines 0, 1: prefill; 2, 3: decode. `dp`: both sides are DP deployments with one API
/// server each; else round robin on both sides.
fn fleet(dp: bool) -> Disaggregated {
    fleet_on(dp, LINK)
}

/// [`fleet`] over `link`.
fn fleet_on(dp: bool, link: Link) -> Disaggregated {
    use PdRole::{Decode, Prefill};
    let f = Disaggregated::new(
        (0..4).map(|_| engine()).collect(),
        vec![Prefill, Prefill, Decode, Decode],
        vec![BLOCK_BYTES; 4],
        link,
        router_by_name("round-robin").unwrap(),
        router_by_name("round-robin").unwrap(),
    )
    .expect("valid");
    if dp {
        f.with_data_parallel_side(Prefill, 1)
            .with_data_parallel_side(Decode, 1)
    } else {
        f
    }
}

/// [`common::run`], checking that no request failed.
fn run(f: &mut Disaggregated, w: Vec<WorkloadItem>) -> Vec<RequestRecord> {
    let (r, failed) = common::run_counting_failed(f, w);
    assert_eq!(failed, 0);
    r
}

/// `a` (1000 tokens out) and `b` (2 out) arrive together, `c` at 500 ms.
fn workload() -> Vec<WorkloadItem> {
    vec![
        item("a", tokens(1, 0, 100), 1000, Nanos::ZERO),
        item("b", tokens(2, 0, 100), 2, Nanos::ZERO),
        item("c", tokens(3, 0, 100), 2, Nanos::from_millis(500)),
    ]
}

#[test]
fn each_side_s_balancer_places_and_ttft_adds_the_transfer() {
    let mut f = fleet(true);
    let recs = run(&mut f, workload());
    // Prefill: `a` finds both ranks' counts zero and takes rank 0 (the scan starts at 0);
    // the API server's copy then holds rank 0's +1 waiting, so `b` takes rank 1. Both prefill
    // alone: 1 ms + 100 µs. At 1.1 ms their decode requests reach the decode deployment:
    // nothing is published yet, so `a` takes decode rank 0 (engine 2) and `b`, behind the
    // local increment, rank 1 (engine 3).
    let prefill = 1_100_000;
    // ⌈100/16⌉ = 7 blocks of 1 MB over 16 GB/s (437.5 µs) + 20 µs.
    let transfer = 20_000 + 7 * BLOCK_BYTES / 16;
    assert_eq!(f.transfer_ns(0, 100), transfer);
    // The decode rank's first step recomputes the last prompt token: 1 ms + 1 µs.
    let decode_step = 1_001_000;
    let (a, b, c) = (&recs[0], &recs[1], &recs[2]);
    assert_eq!(a.engine, Some(2));
    assert_eq!(b.engine, Some(3));
    assert_eq!(ns(a.first_token_s), prefill + transfer + decode_step);
    assert_eq!(ns(b.first_token_s), prefill + transfer + decode_step);
    // `c`: the prefill side's copy was replaced by publications of both ranks idle, so rank
    // 0 again; its decode request meets a publication in which decode rank 0 runs `a` (its
    // 1000 tokens last about a second) and rank 1 is idle (`b` ended at ~3.5 ms): rank 1,
    // where a round-robin router sends the third request to engine 2. Alone on both ranks,
    // its TTFT is again prefill + transfer + one decode step.
    assert_eq!(c.engine, Some(3));
    assert_eq!(
        ns(c.first_token_s) - ns(Some(c.arrival_s)),
        prefill + transfer + decode_step
    );
    let prefill_steps: Vec<u64> = f
        .engines()
        .take(2)
        .map(|e| e.scheduler().kv().prefix_cache_stats().queries)
        .collect();
    assert!(prefill_steps.iter().all(|&q| q > 0), "{prefill_steps:?}");
    assert!(f.load_balancer(PdRole::Decode).is_some());
    assert!(fleet(false).load_balancer(PdRole::Decode).is_none());
}

#[test]
fn a_round_robin_decode_side_differs_where_the_balancer_sees_load() {
    let mut f = fleet(false);
    let recs = run(&mut f, workload());
    assert_eq!(recs[0].engine, Some(2));
    assert_eq!(recs[1].engine, Some(3));
    assert_eq!(recs[2].engine, Some(2), "round robin's third choice");
}

#[test]
fn a_decode_rank_counts_a_transfer_on_its_way_as_waiting() {
    // A 10 MB/s link: a block (1 MB) takes 100 ms, `a`'s 7 blocks 700 ms (+ 20 µs each).
    // `a` (100 tokens, at 0) prefills on rank 0 until 1.1 ms and goes to decode rank 0
    // (engine 2); `x` (16 tokens, at 0.5 ms) prefills on rank 1 until 1.516 ms and goes to
    // decode rank 1 behind the local increment. `x`'s block reaches rank 1 at 101.536 ms and
    // it ends there a step later. The publication after that change (151.536 ms) shows rank 1
    // idle and rank 0 with `a` waiting for its KV (vLLM's `WAITING_FOR_REMOTE_KVS` is in the
    // waiting queue), so `b`, whose prefill ends at 201.1 ms, goes to rank 1 (engine 3);
    // counting only what rank 0's scheduler holds would publish both idle and take rank 0.
    let slow = Link {
        bandwidth_gbs: 0.01,
        latency_ns: 20_000.0,
    };
    let mut f = fleet_on(true, slow);
    let w = vec![
        item("a", tokens(1, 0, 100), 1, Nanos::ZERO),
        item("x", tokens(3, 0, 16), 1, Nanos::from_micros(500)),
        item("b", tokens(2, 0, 100), 1, Nanos::from_millis(200)),
    ];
    let recs = run(&mut f, w);
    let transfer = 20_000 + 7 * BLOCK_BYTES * 100;
    assert_eq!(f.transfer_ns(0, 100), transfer);
    let (a, b, x) = (&recs[0], &recs[1], &recs[2]);
    assert_eq!(a.engine, Some(2));
    assert_eq!(x.engine, Some(3));
    assert_eq!(ns(a.first_token_s), 1_100_000 + transfer + 1_001_000);
    assert_eq!(b.engine, Some(3));
    assert_eq!(
        ns(b.first_token_s) - ns(Some(b.arrival_s)),
        1_100_000 + transfer + 1_001_000
    );
}
