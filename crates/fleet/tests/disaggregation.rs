//! Prefill/decode disaggregation, derived by hand: TTFT = prefill step + KV transfer + the
//! decode instance's first step.

mod common;

use common::{item, ns, tokens};
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_fleet::{router_by_name, Disaggregated, Link, PdError, PdRole};
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
/// KV bytes of one block (all layers), as the CLI derives from the model's shape.
const BLOCK_BYTES: u64 = 1_000_000;

fn fleet(roles: Vec<PdRole>) -> Disaggregated {
    let n = roles.len();
    Disaggregated::new(
        (0..n).map(|_| engine()).collect(),
        roles,
        vec![BLOCK_BYTES; n],
        LINK,
        router_by_name("round-robin").unwrap(),
        router_by_name("round-robin").unwrap(),
    )
    .expect("valid")
}

/// [`common::run`], checking that no request failed.
fn run(f: &mut Disaggregated, w: Vec<WorkloadItem>) -> Vec<RequestRecord> {
    let (r, failed) = common::run_counting_failed(f, w);
    assert_eq!(failed, 0);
    r
}

#[test]
fn ttft_is_prefill_plus_transfer_plus_the_first_decode_step() {
    let mut f = fleet(vec![PdRole::Prefill, PdRole::Decode]);
    let recs = run(&mut f, vec![item("a", tokens(1, 0, 100), 3, Nanos::ZERO)]);
    // Prefill: 100 tokens, 1 ms + 100 µs. Transfer: ⌈100/16⌉ = 7 blocks of 1 MB over
    // 16 GB/s, 437.5 µs, + 20 µs. Decode: the last prompt token recomputed, 1 ms + 1 µs.
    let prefill = 1_100_000;
    let transfer = 20_000 + 7 * BLOCK_BYTES / 16;
    assert_eq!(f.transfer_ns(0, 100), transfer);
    let decode_step = 1_001_000;
    let r = &recs[0];
    assert_eq!(r.engine, Some(1), "the decode instance answers");
    assert_eq!(ns(r.first_token_s), prefill + transfer + decode_step);
    assert_eq!(ns(r.last_token_s), prefill + transfer + 3 * decode_step);
    assert_eq!(r.output_len, 3);
    assert_eq!(f.transferred_bytes(), 7 * BLOCK_BYTES);
    // The decode instance holds the prompt's KV: its context is the prompt.
    let d = f.engines().nth(1).expect("decode");
    assert_eq!(d.scheduler().num_unfinished(), 0);
}

#[test]
fn decode_instances_are_routed_and_prefill_is_shared() {
    let mut f = fleet(vec![PdRole::Prefill, PdRole::Decode, PdRole::Decode]);
    let recs = run(
        &mut f,
        vec![
            item("a", tokens(1, 0, 100), 2, Nanos::ZERO),
            item("b", tokens(2, 0, 100), 2, Nanos::from_millis(100)),
        ],
    );
    assert_eq!(recs[0].engine, Some(1));
    assert_eq!(recs[1].engine, Some(2));
    // Each alone: the same TTFT, from its own arrival.
    let ttft = |r: &RequestRecord| ns(r.first_token_s) - ns(Some(r.arrival_s));
    assert_eq!(ttft(&recs[0]), ttft(&recs[1]));
}

#[test]
fn a_fleet_without_one_of_the_roles_is_refused() {
    let e = Disaggregated::new(
        vec![engine()],
        vec![PdRole::Decode],
        vec![1],
        LINK,
        router_by_name("round-robin").unwrap(),
        router_by_name("round-robin").unwrap(),
    )
    .err();
    assert_eq!(e, Some(PdError::MissingRole("prefill")));
}
