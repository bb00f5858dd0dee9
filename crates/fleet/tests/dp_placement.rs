//! vLLM 0.19's DP load balancer, choices derived by hand from `core_client.py`
//! (`get_core_engine_for_request`) and `coordinator.py` (publication timing).

mod common;

use common::{engine, item, req, tokens};
use llm_emu_core::{EngineCore, Nanos, NoSink};
use llm_emu_fleet::{AddError, DataParallel, LoadBalancer};
use llm_emu_sim::Sinks;

fn ms(x: u64) -> Nanos {
    Nanos::from_millis(x)
}

/// Places one request at `t` and returns the rank.
fn place(lb: &mut LoadBalancer, t: Nanos) -> usize {
    lb.advance(t);
    let r = lb.peek();
    lb.commit(r);
    r
}

#[test]
fn fresh_ranks_alternate_through_local_increments() {
    // Scores start 0,0: rank 0 (first lowest); its waiting becomes 1 (score 4), so rank 1;
    // then 4,4: rank 0; then 8,4: rank 1.
    let mut lb = LoadBalancer::new(2, 1);
    let got: Vec<usize> = (0..4).map(|_| place(&mut lb, Nanos::ZERO)).collect();
    assert_eq!(got, [0, 1, 0, 1]);
    assert_eq!(lb.client_counts(0).unwrap(), &[[2, 0], [2, 0]]);
}

/// The coordinator publishes once at start-up (`coordinator.py`: `last_publish_time = 0`
/// before its loop, so the first poll times out after 50 ms and publishes the zeros), which
/// the balancer puts at time 0; the next publication is then at `max(0 + 100 ms, change +
/// 50 ms)`. The times below start a second in, past that start-up publication, so that the
/// `change + 50 ms` rule shows.
#[test]
fn counts_are_stale_until_the_coordinator_publishes() {
    let mut lb = LoadBalancer::new(2, 1);
    // Rank 0 reports 3 running at 1.010 s; publication at max(0 + 0.1, 1.010 + 0.05) = 1.060 s.
    lb.report(0, 0, 3, ms(1010));
    // At 1.020 s the client still sees zeros: rank 0, the busy one.
    assert_eq!(place(&mut lb, ms(1020)), 0);
    // Just before the publication its own increment (waiting 1 → score 4) steers to rank 1.
    assert_eq!(place(&mut lb, ms(1059)), 1);
    // At 1.060 s the published counts replace the copy: rank 0 scores 3, rank 1 scores 0.
    assert_eq!(place(&mut lb, ms(1060)), 1);
    // Rank 1 now scores 4 (local increment), rank 0 scores 3.
    assert_eq!(place(&mut lb, ms(1070)), 0);
    // Rank 0: 4 + 3 = 7, rank 1: 4.
    assert_eq!(place(&mut lb, ms(1075)), 1);
    // Rank 1 reports 2 running at 1.080 s: next publication at max(1.060 + 0.1, 1.080 + 0.05)
    // = 1.160 s.
    lb.report(1, 0, 2, ms(1080));
    // At 1.159 s the copy is 7 vs 8: rank 0.
    assert_eq!(place(&mut lb, ms(1159)), 0);
    // At 1.160 s: 3 vs 2, increments gone: rank 1.
    assert_eq!(place(&mut lb, ms(1160)), 1);
    assert_eq!(lb.client_counts(0).unwrap(), &[[0, 3], [1, 2]]);
}

#[test]
fn a_change_right_after_the_start_up_publication_waits_for_the_100_ms_interval() {
    let mut lb = LoadBalancer::new(2, 1);
    // Published at 0 (start-up); rank 0 reports at 10 ms: next at max(0 + 100, 10 + 50) = 100.
    lb.report(0, 0, 3, ms(10));
    assert_eq!(place(&mut lb, ms(99)), 0, "zeros until 100 ms");
    assert_eq!(place(&mut lb, ms(100)), 1, "3 vs 0 from 100 ms");
}

#[test]
fn unchanged_counts_are_republished_every_five_seconds() {
    let mut lb = LoadBalancer::new(2, 1);
    lb.report(0, 0, 3, ms(1000));
    assert_eq!(place(&mut lb, ms(1050)), 1); // published at 1.05 s: 3 vs 0
    assert_eq!(place(&mut lb, ms(2000)), 0); // 3 vs 4
    assert_eq!(place(&mut lb, ms(2000)), 1); // 7 vs 4
                                             // Nothing changes; the 6.05 s republication drops the increments (7 vs 8 → 3 vs 0).
    assert_eq!(place(&mut lb, ms(6049)), 0);
    assert_eq!(place(&mut lb, ms(6050)), 1);
    // A report after a long quiet spell (republished at 11.05 and 16.05 s) is published
    // 50 ms later, not at once: at 21.049 s the copy of 16.05 s says 3 vs 0.
    lb.report(1, 5, 0, ms(21_000));
    assert_eq!(place(&mut lb, ms(21_049)), 1);
    // Published at 21.05 s: 3 vs 4·5.
    assert_eq!(place(&mut lb, ms(21_050)), 0);
}

#[test]
fn ranks_that_never_report_leave_the_copies_to_the_increments_and_the_5_s_zeros() {
    // A dense model's ranks (plain `EngineCoreProc`s) send no counts: a report changes
    // nothing, and only the coordinator's republications of zeros at 5 s, 10 s, … reset the
    // copy.
    let mut lb = LoadBalancer::new(2, 1).without_count_reports();
    assert!(!lb.counts_reported());
    lb.report(0, 0, 7, ms(10));
    // Zeros and the increments: 0, 1, 0 (copy [2, 0], [1, 0]).
    assert_eq!(place(&mut lb, ms(100)), 0);
    assert_eq!(place(&mut lb, ms(200)), 1);
    assert_eq!(place(&mut lb, ms(4999)), 0);
    // The copy now scores 8 vs 4 (rank 1 next), but at 5 s the zeros are back: rank 0.
    assert_eq!(lb.client_counts(0).unwrap(), &[[2, 0], [1, 0]]);
    assert_eq!(place(&mut lb, ms(5000)), 0);
    assert_eq!(lb.client_counts(0).unwrap(), &[[1, 0], [0, 0]]);
}

/// Sequential requests, 300 ms apart, each done within a few ms (8-token prompt, 2 output
/// tokens, 1 ms steps), on 2 ranks behind one API server; `reports` says whether the ranks
/// send their counts. Returns each request's rank.
fn sequential_ranks(reports: bool, arrivals_ms: &[u64]) -> Vec<usize> {
    let dp = DataParallel::new(vec![engine(256, 1.0), engine(256, 1.0)], 1);
    let mut dp = dp.with_count_reports(reports);
    let w = arrivals_ms
        .iter()
        .enumerate()
        .map(|(i, &t)| item(&format!("r{i:02}"), tokens(i as u32, 0, 8), 2, ms(t)))
        .map(Ok);
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    llm_emu_sim::run(&mut dp, w, &mut sinks, &mut |_| {}).expect("runs");
    let mut r = sinks.records.take().expect("kept");
    r.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    r.iter().map(|r| r.engine.expect("placed")).collect()
}

#[test]
fn a_dense_model_s_sequential_requests_alternate_from_the_local_increments() {
    // vLLM 0.19 with `--api-server-count 1` placed sequential requests 0, 1, 0, 1, … on a dense
    // model (docs/fleet.md): its ranks never report, so the client's copy only gathers its
    // own increments ([1, 0] → rank 1, [1, 1] → rank 0, …) until the 5 s republication of
    // zeros. Six requests from 0 to 1.5 s: 0, 1, 0, 1, 0, 1 (copy [3, 0], [3, 0]); at 4.9 s
    // the tie of 12 and 12 goes to rank 0; at 5.2 s, after the zeros of 5 s, rank 0 again.
    let t = [0, 300, 600, 900, 1200, 1500, 4900, 5200];
    assert_eq!(sequential_ranks(false, &t), [0, 1, 0, 1, 0, 1, 0, 0]);
    // A MoE model's ranks report: each request's start and end are published within 100 ms,
    // so every request after the first sees zeros again and goes to rank 0.
    assert_eq!(sequential_ranks(true, &t), [0; 8]);
}

#[test]
fn each_api_server_starts_its_scan_at_its_own_rank_and_adds_the_client_count() {
    // Two API servers (vLLM's default for DP 2) take requests in turn. Server 0 scans from
    // rank 0, server 1 from rank (2·1)//2 = 1; each adds 2 to its own copy.
    let mut lb = LoadBalancer::new(2, 2);
    let got: Vec<usize> = (0..4).map(|_| place(&mut lb, Nanos::ZERO)).collect();
    // s0: 0,0 → 0 (copy [2,0],[0,0]); s1: 0,0 from rank 1 → 1 (copy [0,0],[2,0]);
    // s0: 8 vs 0 → 1; s1: 0 vs 8 → 0.
    assert_eq!(got, [0, 1, 1, 0]);
    assert_eq!(lb.client_counts(0).unwrap(), &[[2, 0], [2, 0]]);
}

#[test]
fn an_explicit_rank_is_obeyed_without_an_increment_and_checked() {
    let mut dp = DataParallel::new(vec![engine(256, 1.0), engine(256, 1.0)], 1);
    let r = dp
        .add_to_rank(req("a", tokens(1, 0, 32), 4, Nanos::ZERO), 1, Some(1))
        .unwrap();
    assert_eq!(r, 1);
    assert_eq!(
        dp.load_balancer().client_counts(0).unwrap(),
        &[[0, 0], [0, 0]]
    );
    // The balancer still sees zeros: rank 0.
    assert_eq!(
        dp.add_to_rank(req("b", tokens(2, 0, 32), 4, Nanos::ZERO), 2, None)
            .unwrap(),
        0
    );
    assert_eq!(
        dp.add_to_rank(req("c", tokens(3, 0, 32), 4, Nanos::ZERO), 3, Some(2)),
        Err(AddError::RankOutOfRange { rank: 2, size: 2 })
    );
    assert_eq!(dp.rank_of("a"), Some(1));
    assert_eq!(dp.rank_of("b"), Some(0));
}

#[test]
fn ranks_report_to_the_balancer_as_they_run() {
    // Three requests at 0 on 2 ranks of a MoE model (which report their counts): 0, 1, 0.
    // The ranks run at 0 and report; the publication at max(0 + 100, 0 + 50) = 100 ms (the
    // start-up one was at 0) shows rank 0 with 2 running, rank 1 with 1.
    let mut dp =
        DataParallel::new(vec![engine(256, 1.0), engine(256, 1.0)], 1).with_count_reports(true);
    for i in 0..3u32 {
        dp.add(
            req(&format!("r{i}"), tokens(i, 0, 64), 1000, Nanos::ZERO),
            i as u64,
        )
        .unwrap();
    }
    assert_eq!(
        (dp.rank_of("r0"), dp.rank_of("r1"), dp.rank_of("r2")),
        (Some(0), Some(1), Some(0))
    );
    let mut now = Nanos::ZERO;
    while now < ms(100) {
        match dp.run(now, &mut NoSink) {
            llm_emu_core::Wake::At(t) => now = t.min(ms(100)),
            llm_emu_core::Wake::Idle => break,
        }
    }
    // Before the publication the copy holds the increments: [2, 0] vs [1, 0] → rank 1.
    assert_eq!(
        dp.load_balancer().client_counts(0).unwrap(),
        &[[2, 0], [1, 0]]
    );
    // After it: rank 0 scores 2, rank 1 scores 1.
    assert_eq!(dp.peek_rank(ms(100)), 1);
    assert_eq!(
        dp.load_balancer().client_counts(0).unwrap(),
        &[[0, 2], [0, 1]]
    );
}

#[test]
fn aborts_reach_the_rank_that_holds_the_request() {
    let mut dp = DataParallel::new(vec![engine(256, 1.0), engine(256, 1.0)], 1);
    dp.add(req("a", tokens(1, 0, 64), 100, Nanos::ZERO), 1)
        .unwrap();
    dp.add(req("b", tokens(2, 0, 64), 100, Nanos::ZERO), 2)
        .unwrap();
    dp.run(Nanos::ZERO, &mut NoSink);
    dp.abort("b");
    assert_eq!(dp.num_unfinished(), 2);
    dp.run(ms(10), &mut NoSink);
    assert_eq!(dp.num_unfinished(), 1);
    assert_eq!(dp.rank_of("b"), None);
    assert_eq!(dp.rank_of("a"), Some(0));
}
