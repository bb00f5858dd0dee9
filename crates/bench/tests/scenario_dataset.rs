//! A generated scenario as a benchmark dataset: its times become send offsets and its
//! sessions go out as the OpenAI `user` field.

use llm_emu_bench::client::{request_body, Api, RequestInput, Target};
use llm_emu_bench::dataset::{workload, DatasetReport};
use llm_emu_sim::scenario::Scenario;
use std::time::Duration;

#[test]
fn session_scenarios_send_their_session_as_user() {
    let sc: Scenario = "sessions:turns=3,think=2".parse().unwrap();
    let items = sc.workload(60, 10.0, 5).unwrap();
    let firsts: Vec<_> = sc.workload(60, 10.0, 5).unwrap().collect();
    let o = workload::WorkloadOptions {
        num_requests: Some(60),
        seed: 5,
        request_id_prefix: "bench-",
        decode_prompts: false,
        hash_block_tokens: llm_emu_sim::mooncake_trace::MOONCAKE_HASH_BLOCK_TOKENS,
    };
    let mut report = DatasetReport::default();
    let reqs = workload::from_items(items.map(Ok), "scenario", None, &o, &mut report).unwrap();
    assert_eq!(reqs.len(), 60);
    assert_eq!(report.sampled, 60);
    let t0 = firsts[0].arrival.as_secs_f64();
    for (r, it) in reqs.iter().zip(&firsts) {
        assert_eq!(r.user.as_deref(), it.tenant.as_deref());
        assert!(r.user.as_deref().unwrap().starts_with("session-"));
        let want = it.arrival.as_secs_f64() - t0;
        assert!((r.send_at.unwrap() - want).abs() < 1e-9);
        assert_eq!(r.prompt_len, it.prompt_token_ids.len());
    }

    let target = Target {
        api: Api::Completions,
        uri: "http://127.0.0.1:1/v1/completions".parse().unwrap(),
        model: "m".into(),
        logprobs: None,
        ignore_eos: true,
        extra_body: Default::default(),
        headers: Vec::new(),
        timeout: Duration::from_secs(1),
    };
    let input = |user| RequestInput {
        prompt: &reqs[0].prompt,
        prompt_len: reqs[0].prompt_len,
        output_len: reqs[0].expected_output_len,
        request_id: None,
        user,
    };
    let with = request_body(&target, &input(reqs[0].user.as_deref()));
    assert_eq!(with["user"], reqs[0].user.as_deref().unwrap());
    let without = request_body(&target, &input(None));
    assert!(!without.contains_key("user"));
}
