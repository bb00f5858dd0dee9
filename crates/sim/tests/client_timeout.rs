//! A client's total limit per request (`run_client` with a [`ClientTimeout`]), on runs small
//! enough to compute by hand: the engine aborts a request still running at its deadline and
//! frees its blocks, the client counts it failed and keeps it out of every figure.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_perf::FrontendLatency;
use llm_emu_sim::client_side::ClientSide;
use llm_emu_sim::client_timeout::ClientTimeout;
use llm_emu_sim::{run_client, Client, Sinks};
use support::item;

mod support;

/// One sequence at a time, sync scheduling, 10 ms per step whatever the batch.
fn engine() -> Engine {
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    cfg.async_scheduling = false;
    cfg.max_num_seqs = 1;
    Engine::new(
        cfg,
        Box::new(LinearLatency::new(10_000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap()
}

fn front_end(per_request_us: f64) -> FrontendLatency {
    FrontendLatency {
        per_request_us,
        per_prompt_token_ns: 0.0,
        per_output_token_us: 0.0,
        per_batch_output_us: 0.0,
    }
}

#[test]
fn a_request_running_at_its_deadline_is_aborted_and_the_next_one_runs() {
    // 100 ms per request. `a` (0 ms, 4 tokens): 10, 20, 30, 40 ms, in time. `b` (0 ms, 20
    // tokens) waits for the one sequence until 40 ms, gets tokens at 50 … 100 ms, and is
    // aborted at its deadline of 100 ms, before that step's output is processed: 5 tokens.
    // `c` (60 ms, 2 tokens) runs from then: 110 and 120 ms, in time (deadline 160 ms).
    let timeout = ClientTimeout::aiohttp(0.1);
    assert_eq!(timeout.map(|t| t.ceil_to_second), Some(false));
    let mut e = engine();
    let items = vec![
        Ok(item("a", 0, 40, 4)),
        Ok(item("b", 0, 40, 20)),
        Ok(item("c", 60, 40, 2)),
    ];
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        client: Some(ClientSide::new(front_end(0.0), true).with_timeout(timeout)),
        ..Sinks::default()
    };
    let client = Client {
        max_concurrency: None,
        timeout,
    };
    let res = run_client(&mut e, items.into_iter(), &mut sinks, &mut |_| {}, client).unwrap();
    assert_eq!((res.completed, res.failed), (2, 1));
    assert_eq!(res.end, Nanos::from_millis(120));
    let recs = sinks.records.take().unwrap();
    let b = recs.iter().find(|r| r.request_id == "b").unwrap();
    assert_eq!(b.finish_reason, Some("abort"));
    assert_eq!(b.output_len, 5);
    assert_eq!(b.last_token_s, Some(0.09));
    // Its blocks went back: nothing runs, nothing is held.
    assert_eq!(e.scheduler().num_running(), 0);
    assert_eq!(e.scheduler().kv().usage(), 0.0);

    let cs = sinks.client.take().unwrap();
    assert_eq!(cs.timed_out.len(), 1);
    assert_eq!(cs.timed_out[0].request_id, "b");
    assert_eq!((cs.timed_out[0].send_s, cs.timed_out[0].end_s), (0.0, 0.1));
    let reqs = cs.requests.unwrap();
    let ids: Vec<&str> = reqs.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert!((reqs[1].ttft_ms - 50.0).abs() < 1e-9, "{}", reqs[1].ttft_ms);
    // Gaps: a's three and c's one, none of b's four.
    let gaps = cs.itl_ms.unwrap();
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    assert!(gaps.iter().all(|g| (g - 10.0).abs() < 1e-9), "{gaps:?}");
}

#[test]
fn a_response_ending_in_the_engine_but_reaching_the_client_late_fails() {
    // 45 ms per request; a way in of 10 ms. The engine ends `a` at 40 ms, but its last
    // chunk reaches the client at 50 ms: the client gave up at 45 ms. The engine completed
    // it, so nothing was aborted.
    let timeout = ClientTimeout::aiohttp(0.045);
    let mut e = engine();
    let mut sinks = Sinks {
        client: Some(ClientSide::new(front_end(10_000.0), true).with_timeout(timeout)),
        ..Sinks::default()
    };
    let client = Client {
        max_concurrency: None,
        timeout,
    };
    let items = vec![Ok(item("a", 0, 40, 4)), Ok(item("b", 100, 40, 2))];
    let res = run_client(&mut e, items.into_iter(), &mut sinks, &mut |_| {}, client).unwrap();
    assert_eq!((res.completed, res.failed), (2, 0));
    let cs = sinks.client.take().unwrap();
    assert_eq!(cs.timed_out.len(), 1);
    assert_eq!(cs.timed_out[0].end_s, 0.045);
    let reqs = cs.requests.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_id, "b");
}

#[test]
fn without_a_timeout_every_request_runs_to_its_end() {
    let mut e = engine();
    let items = vec![Ok(item("a", 0, 40, 4)), Ok(item("b", 0, 40, 20))];
    let mut sinks = Sinks::default();
    let res = run_client(
        &mut e,
        items.into_iter(),
        &mut sinks,
        &mut |_| {},
        Client::default(),
    )
    .unwrap();
    assert_eq!((res.completed, res.failed), (2, 0));
    assert_eq!(res.end, Nanos::from_millis(240));
}
