//! vLLM 0.19's DP load balancer, choices derived by hand from `core_client.py`
//! (`get_core_engine_for_request`) and `coordinator.py` (publication timing).

mod common;

use common::{engine, req, tokens};
use llm_emu_core::{EngineCore, Nanos, NoSink};
use llm_emu_fleet::{AddError, DataParallel, LoadBalancer};

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

#[test]
fn counts_are_stale_until_the_coordinator_publishes() {
    let mut lb = LoadBalancer::new(2, 1);
    // Rank 0 reports 3 running at 10 ms; first publication at 10 + 50 = 60 ms.
    lb.report(0, 0, 3, ms(10));
    // At 20 ms the client still sees zeros: rank 0, the busy one.
    assert_eq!(place(&mut lb, ms(20)), 0);
    // Just before the publication its own increment (waiting 1 → score 4) steers to rank 1.
    assert_eq!(place(&mut lb, ms(59)), 1);
    // At 60 ms the published counts replace the copy: rank 0 scores 3, rank 1 scores 0.
    assert_eq!(place(&mut lb, ms(60)), 1);
    // Rank 1 now scores 4 (local increment), rank 0 scores 3.
    assert_eq!(place(&mut lb, ms(70)), 0);
    // Rank 0: 4 + 3 = 7, rank 1: 4.
    assert_eq!(place(&mut lb, ms(75)), 1);
    // Rank 1 reports 2 running at 80 ms: next publication at max(60 + 100, 80 + 50) = 160 ms.
    lb.report(1, 0, 2, ms(80));
    // At 159 ms the copy is 7 vs 8: rank 0.
    assert_eq!(place(&mut lb, ms(159)), 0);
    // At 160 ms: 3 vs 2, increments gone: rank 1.
    assert_eq!(place(&mut lb, ms(160)), 1);
    assert_eq!(lb.client_counts(0).unwrap(), &[[0, 3], [1, 2]]);
}

#[test]
fn unchanged_counts_are_republished_every_five_seconds() {
    let mut lb = LoadBalancer::new(2, 1);
    lb.report(0, 0, 3, Nanos::ZERO);
    assert_eq!(place(&mut lb, ms(50)), 1); // published at 50 ms: 3 vs 0
    assert_eq!(place(&mut lb, ms(1000)), 0); // 3 vs 4
    assert_eq!(place(&mut lb, ms(1000)), 1); // 7 vs 4
                                             // Nothing changes; the 5.05 s republication drops the increments (7 vs 8 → 3 vs 0).
    assert_eq!(place(&mut lb, ms(5049)), 0);
    assert_eq!(place(&mut lb, ms(5050)), 1);
    // A report after a long quiet spell (republished at 10.05 and 15.05 s) is published
    // 50 ms later, not at once: at 20.049 s the copy of 15.05 s says 3 vs 0.
    lb.report(1, 5, 0, ms(20_000));
    assert_eq!(place(&mut lb, ms(20_049)), 1);
    // Published at 20.05 s: 3 vs 4·5.
    assert_eq!(place(&mut lb, ms(20_050)), 0);
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
    // Three requests at 0 on 2 ranks: 0, 1, 0. The ranks run at 0 and report; the
    // publication at 50 ms shows rank 0 with 2 running, rank 1 with 1.
    let mut dp = DataParallel::new(vec![engine(256, 1.0), engine(256, 1.0)], 1);
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
    while now < ms(50) {
        match dp.run(now, &mut NoSink) {
            llm_emu_core::Wake::At(t) => now = t.min(ms(50)),
            llm_emu_core::Wake::Idle => break,
        }
    }
    // After the publication: rank 0 scores 2, rank 1 scores 1.
    assert_eq!(dp.peek_rank(ms(50)), 1);
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
