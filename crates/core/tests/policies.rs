//! Hand-derived scenarios for each scheduling policy: a few requests with known arrivals,
//! prompts, priorities and tenants, and the admission order, preemption victim and token budget
//! that each policy's rule gives.

use llm_emu_core::sched::policy::aging::{LongestWaitingFirst, DEFAULT_AGING_PERIOD};
use llm_emu_core::sched::policy::{self, BudgetSplit, Policy};
use llm_emu_core::sched::{ReqKey, RequestStore};
use llm_emu_core::{
    EngineConfig, Nanos, NewRequest, Request, SamplingParams, Scheduler, SchedulingPolicy,
};
use std::sync::Arc;

/// A request spec: id, prompt tokens, arrival in seconds, priority, tenant.
struct Spec(&'static str, usize, f64, i32, Option<&'static str>);

fn request(s: &Spec) -> Request {
    let Spec(id, prompt, arrival_s, priority, tenant) = *s;
    let new = NewRequest {
        request_id: id.to_string(),
        // Distinct tokens per request: no prefix-cache hits between them.
        prompt_token_ids: llm_emu_core::PromptTokens::from(
            (0..prompt as u32)
                .map(|i| i + 100_000 * id.len() as u32 + id.as_bytes()[0] as u32 * 1000)
                .collect::<Vec<u32>>(),
        ),
        sampling: SamplingParams {
            max_tokens: 8,
            ..Default::default()
        },
        priority,
        cache_salt: Some(id.to_string()),
        tenant: tenant.map(Arc::from),
        arrival: Nanos::from_secs_f64(arrival_s),
    };
    Request::new(new, Nanos::ZERO, 16, true)
}

fn config(policy: SchedulingPolicy) -> EngineConfig {
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    cfg.scheduling_policy = policy;
    cfg.async_scheduling = false;
    cfg
}

/// The ids admitted by one schedule call with room for everything, in admission order.
fn admission_order(policy: SchedulingPolicy, specs: &[Spec]) -> Vec<String> {
    let mut s = Scheduler::new(config(policy));
    for spec in specs {
        s.add_request(request(spec)).expect("unique id");
    }
    let out = s.schedule(Nanos::from_secs_f64(10.0));
    out.admitted
        .iter()
        .map(|(k, _)| s.request(*k).unwrap().request_id.clone())
        .collect()
}

/// Arrivals in id order; prompts and priorities chosen so that each policy orders them
/// differently.
const MIXED: [Spec; 4] = [
    Spec("a", 50, 0.0, 0, None),
    Spec("b", 10, 3.0, -1, None),
    Spec("c", 30, 1.0, -5, None),
    Spec("d", 20, 2.0, 0, None),
];

#[test]
fn fcfs_admits_in_arrival_order() {
    assert_eq!(
        admission_order(SchedulingPolicy::Fcfs, &MIXED),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn priority_admits_lowest_priority_then_earliest() {
    // c (-5), b (-1), then a and d (0) by arrival.
    assert_eq!(
        admission_order(SchedulingPolicy::Priority, &MIXED),
        ["c", "b", "a", "d"]
    );
}

#[test]
fn shortest_prompt_first_admits_by_prompt_length() {
    // 10, 20, 30, 50 tokens.
    assert_eq!(
        admission_order(SchedulingPolicy::ShortestPromptFirst, &MIXED),
        ["b", "d", "c", "a"]
    );
}

#[test]
fn longest_waiting_first_ages_priorities_by_one_level_per_second() {
    // priority × 1 s + arrival: a 0 + 0 = 0 s, b −1 + 3 = 2 s, c −5 + 1 = −4 s, d 0 + 2 = 2 s;
    // b and d tie at 2 s and go by request id.
    assert_eq!(DEFAULT_AGING_PERIOD, Nanos::from_secs_f64(1.0));
    assert_eq!(
        admission_order(SchedulingPolicy::LongestWaitingFirst, &MIXED),
        ["c", "a", "b", "d"]
    );
    // With equal priorities it is arrival order.
    let flat = [
        Spec("x", 50, 2.0, 0, None),
        Spec("y", 10, 0.5, 0, None),
        Spec("z", 30, 1.0, 0, None),
    ];
    assert_eq!(
        admission_order(SchedulingPolicy::LongestWaitingFirst, &flat),
        ["y", "z", "x"]
    );
}

#[test]
fn fair_share_takes_tenants_in_turn() {
    let specs = [
        Spec("x1", 10, 0.0, 0, Some("x")),
        Spec("x2", 10, 0.1, 0, Some("x")),
        Spec("x3", 10, 0.2, 0, Some("x")),
        Spec("y1", 10, 0.3, 0, Some("y")),
        Spec("n1", 10, 0.4, 0, None),
        Spec("y2", 10, 0.5, 0, Some("y")),
    ];
    // Turns: x, y, anonymous, x, y, x.
    assert_eq!(
        admission_order(SchedulingPolicy::FairShare, &specs),
        ["x1", "y1", "n1", "x2", "y2", "x3"]
    );
    assert_eq!(
        admission_order(SchedulingPolicy::Fcfs, &specs),
        ["x1", "x2", "x3", "y1", "n1", "y2"]
    );
}

/// The victim each policy picks among `specs` running in this order.
fn victim(policy: SchedulingPolicy, specs: &[Spec]) -> &'static str {
    let mut store = RequestStore::default();
    let running: Vec<ReqKey> = specs.iter().map(|s| store.insert(request(s))).collect();
    let p = policy::build(policy);
    specs[p.select_victim(&running, &store)].0
}

#[test]
fn each_policy_names_its_victim() {
    // Running in admission order a, b, c, d (as fcfs would have admitted MIXED).
    assert_eq!(victim(SchedulingPolicy::Fcfs, &MIXED), "d", "the newest");
    // Largest (priority, arrival): a (0, 0 s) and d (0, 2 s) → d.
    assert_eq!(victim(SchedulingPolicy::Priority, &MIXED), "d");
    assert_eq!(
        victim(SchedulingPolicy::ShortestPromptFirst, &MIXED),
        "a",
        "the longest prompt"
    );
    // Largest priority × 1 s + arrival: b and d at 2 s, the first in running order.
    assert_eq!(victim(SchedulingPolicy::LongestWaitingFirst, &MIXED), "b");
    // x holds 2 running, y 1, anonymous 1: x's newest.
    let tenants = [
        Spec("x1", 10, 0.0, 0, Some("x")),
        Spec("y1", 10, 0.1, 0, Some("y")),
        Spec("x2", 10, 0.2, 0, Some("x")),
        Spec("n1", 10, 0.3, 0, None),
    ];
    assert_eq!(victim(SchedulingPolicy::FairShare, &tenants), "x2");
    // Tied counts: the tenant whose newest running request is the latest.
    let tied = [
        Spec("x1", 10, 0.0, 0, Some("x")),
        Spec("y1", 10, 0.1, 0, Some("y")),
        Spec("y2", 10, 0.2, 0, Some("y")),
        Spec("x2", 10, 0.3, 0, Some("x")),
    ];
    assert_eq!(victim(SchedulingPolicy::FairShare, &tied), "x2");
}

#[test]
fn a_preempted_request_is_taken_back_through_the_policy() {
    // KV for 3 one-block prompts only: the first decode step needs a fourth block, so one
    // running request is preempted. Under sjf the victim is the longest prompt, under fcfs
    // the newest.
    let specs = [
        Spec("long", 16, 0.0, 0, None),
        Spec("mid", 15, 0.1, 0, None),
        Spec("short", 14, 0.2, 0, None),
    ];
    for (policy, admitted, preempted) in [
        (SchedulingPolicy::Fcfs, ["long", "mid", "short"], "short"),
        (
            SchedulingPolicy::ShortestPromptFirst,
            ["short", "mid", "long"],
            "long",
        ),
    ] {
        let mut cfg = config(policy);
        cfg.num_gpu_blocks = 4;
        cfg.scheduler_reserve_full_isl = false;
        let mut s = Scheduler::new(cfg);
        for spec in &specs {
            s.add_request(request(spec)).unwrap();
        }
        let out = s.schedule(Nanos::ZERO);
        let names = |keys: &mut dyn Iterator<Item = ReqKey>, s: &Scheduler| -> Vec<String> {
            keys.map(|k| s.request(k).unwrap().request_id.clone())
                .collect()
        };
        assert_eq!(names(&mut out.admitted.iter().map(|a| a.0), &s), admitted);
        let tokens: Vec<Option<u32>> = out.scheduled.iter().map(|_| Some(7)).collect();
        let mut updates = Vec::new();
        s.update_from_output(&out, &tokens, Nanos(1), &mut updates);
        // "long" now has 17 tokens and needs a second block; none is free.
        let out = s.schedule(Nanos(2));
        assert_eq!(
            names(&mut out.preempted.iter().copied(), &s),
            [preempted],
            "{policy:?}"
        );
        assert_eq!(s.num_waiting(), 1);
        s.check_invariants().unwrap();
    }
}

/// A policy of a researcher's own: fcfs order, but the running requests may use at most
/// `running` tokens of each step and no request more than `chunk_cap`.
#[derive(Debug)]
struct Reserve {
    inner: Box<dyn Policy>,
    split: BudgetSplit,
}

impl Policy for Reserve {
    fn name(&self) -> &'static str {
        "reserve"
    }
    fn add(&mut self, key: ReqKey, req: &Request) {
        self.inner.add(key, req)
    }
    fn prepend(&mut self, key: ReqKey, req: &Request) {
        self.inner.prepend(key, req)
    }
    fn peek(&self, now: Nanos) -> Option<ReqKey> {
        self.inner.peek(now)
    }
    fn pop(&mut self, now: Nanos) -> Option<ReqKey> {
        self.inner.pop(now)
    }
    fn remove(&mut self, keys: &[ReqKey]) {
        self.inner.remove(keys)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        self.inner.select_victim(running, requests)
    }
    fn split_budget(&self, _budget: usize, _running: usize, _waiting: usize) -> BudgetSplit {
        self.split
    }
}

/// Tokens per request in the first two steps: a 1000-token prompt arriving first, a
/// 1000-token prompt after it, a 256-token budget.
fn two_steps(split: Option<BudgetSplit>) -> Vec<Vec<(String, usize)>> {
    let mut cfg = config(SchedulingPolicy::Fcfs);
    cfg.max_num_batched_tokens = 256;
    let mut s = match split {
        Some(split) => Scheduler::with_policy(
            cfg.clone(),
            Box::new(Reserve {
                inner: policy::build(SchedulingPolicy::Fcfs),
                split,
            }),
        ),
        None => Scheduler::new(cfg),
    };
    s.add_request(request(&Spec("a", 1000, 0.0, 0, None)))
        .unwrap();
    let mut steps = Vec::new();
    for i in 0..2 {
        if i == 1 {
            s.add_request(request(&Spec("b", 1000, 0.5, 0, None)))
                .unwrap();
        }
        let out = s.schedule(Nanos(i));
        steps.push(
            out.scheduled
                .iter()
                .map(|r| (s.request(r.key).unwrap().request_id.clone(), r.num_tokens))
                .collect(),
        );
        let none: Vec<Option<u32>> = out.scheduled.iter().map(|_| None).collect();
        s.update_from_output(&out, &none, Nanos(i), &mut Vec::new());
    }
    steps
}

#[test]
fn the_budget_split_reserves_tokens_for_waiting_requests() {
    let s = |v: &[(&str, usize)]| -> Vec<(String, usize)> {
        v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    };
    // vLLM: the running prefill takes the whole budget, b waits.
    assert_eq!(two_steps(None), [s(&[("a", 256)]), s(&[("a", 256)])]);
    assert_eq!(two_steps(Some(BudgetSplit::VLLM)), two_steps(None));
    // Running requests limited to 100 tokens: a gets 100, b is admitted with the 156 left.
    assert_eq!(
        two_steps(Some(BudgetSplit {
            running: 100,
            chunk_cap: 0
        })),
        [s(&[("a", 256)]), s(&[("a", 100), ("b", 156)])]
    );
    // One request at most 64 tokens a step: chunks of 64 for both.
    assert_eq!(
        two_steps(Some(BudgetSplit {
            running: usize::MAX,
            chunk_cap: 64
        })),
        [s(&[("a", 64)]), s(&[("a", 64), ("b", 64)])]
    );
}

#[test]
fn only_vllm_policies_say_they_are_vllm() {
    for p in SchedulingPolicy::ALL {
        let built = policy::build(p);
        assert_eq!(built.name(), p.name());
        assert_eq!(built.is_vllm(), p.is_vllm());
    }
    let custom = LongestWaitingFirst::new(Nanos(5));
    assert!(!custom.is_vllm());
}

/// Random workloads under every policy on a small KV cache (preemptions, chunked prefills,
/// prefix hits): the scheduler's invariants hold after every step and every request finishes.
#[test]
fn every_policy_runs_random_workloads_to_the_end() {
    use rand::{Rng, SeedableRng};
    for policy in SchedulingPolicy::ALL {
        for seed in 0..20u64 {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let mut cfg = config(policy);
            cfg.num_gpu_blocks = rng.random_range(20..60);
            cfg.max_num_batched_tokens = rng.random_range(16..200);
            cfg.max_num_seqs = rng.random_range(1..8);
            cfg.max_model_len = 300;
            cfg.scheduler_reserve_full_isl = rng.random_bool(0.5);
            let mut s = Scheduler::new(cfg);
            let n = 30;
            let mut finished = 0;
            let mut added = 0;
            let mut t = 0u64;
            while finished < n {
                if added < n && rng.random_bool(0.5) {
                    let prompt: Vec<u32> = (0..rng.random_range(1..120))
                        .map(|_| rng.random_range(0..4))
                        .collect();
                    let new = NewRequest {
                        request_id: format!("r{added}"),
                        prompt_token_ids: llm_emu_core::PromptTokens::from(prompt),
                        sampling: SamplingParams {
                            max_tokens: rng.random_range(1..40),
                            ..Default::default()
                        },
                        priority: rng.random_range(-2..3),
                        cache_salt: None,
                        tenant: Some(Arc::from(format!("t{}", rng.random_range(0..3)))),
                        arrival: Nanos(t),
                    };
                    s.add_request(Request::new(new, Nanos(t), 16, true))
                        .unwrap();
                    added += 1;
                }
                let out = s.schedule(Nanos(t));
                let tokens: Vec<Option<u32>> = out
                    .scheduled
                    .iter()
                    .map(|r| r.samples.then_some(rng.random_range(0..4)))
                    .collect();
                let mut updates = Vec::new();
                s.update_from_output(&out, &tokens, Nanos(t), &mut updates);
                finished += updates.iter().filter(|u| u.finished.is_some()).count();
                s.check_invariants()
                    .unwrap_or_else(|e| panic!("{policy:?} seed {seed}: {e}"));
                t += 1;
                assert!(t < 100_000, "{policy:?} seed {seed}: no progress");
            }
            assert_eq!(s.num_unfinished(), 0);
        }
    }
}

/// Aborts of waiting requests anywhere in the queue (front, middle, back, several at once,
/// one twice) leave the others in their order, counted right, under every policy; a removed
/// request is dropped lazily, so this also checks that none comes back.
#[test]
fn aborted_waiting_requests_leave_the_rest_in_order() {
    const SIX: [Spec; 6] = [
        Spec("a", 50, 0.0, 0, None),
        Spec("b", 10, 1.0, -1, None),
        Spec("c", 30, 2.0, -5, None),
        Spec("d", 20, 3.0, 0, None),
        Spec("e", 40, 4.0, -2, None),
        Spec("f", 60, 5.0, 1, None),
    ];
    for policy in [
        SchedulingPolicy::Fcfs,
        SchedulingPolicy::Priority,
        SchedulingPolicy::ShortestPromptFirst,
    ] {
        let full = admission_order(policy, &SIX);
        let mut s = Scheduler::new(config(policy));
        let keys: Vec<ReqKey> = SIX
            .iter()
            .map(|spec| s.add_request(request(spec)).expect("unique id"))
            .collect();
        // The policy's first and last, and one in the middle; one of them again.
        let first = full[0].clone();
        let last = full[5].clone();
        let gone = [first.clone(), "d".to_string(), last.clone()];
        let key_of = |id: &str| keys[SIX.iter().position(|sp| sp.0 == id).unwrap()];
        s.finish_requests(
            &[key_of(&first), key_of("d")],
            llm_emu_core::FinishReason::Abort,
        );
        s.finish_requests(
            &[key_of(&last), key_of("d")],
            llm_emu_core::FinishReason::Abort,
        );
        assert_eq!(s.num_waiting(), 3, "{policy:?}");
        s.check_invariants().unwrap();
        let out = s.schedule(Nanos::from_secs_f64(10.0));
        let admitted: Vec<String> = out
            .admitted
            .iter()
            .map(|(k, _)| s.request(*k).unwrap().request_id.clone())
            .collect();
        let want: Vec<String> = full.into_iter().filter(|id| !gone.contains(id)).collect();
        assert_eq!(admitted, want, "{policy:?}");
        assert_eq!(s.num_waiting(), 0, "{policy:?}");
    }
}
