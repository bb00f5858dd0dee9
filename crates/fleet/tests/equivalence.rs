//! A one-rank data-parallel fleet, and one replica behind any router, are the plain engine.

mod common;

use common::engine;
use llm_emu_core::EngineCore;
use llm_emu_fleet::{router_by_name, DataParallel, Replicas, ROUTER_NAMES};
use llm_emu_sim::synthetic::SyntheticWorkload;
use llm_emu_sim::{RequestRecord, SimResult, Sinks};

/// Runs 300 synthetic requests at 40/s (enough to queue and preempt on 600 blocks).
fn simulate(e: &mut dyn EngineCore) -> (SimResult, Vec<RequestRecord>) {
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Default::default()
    };
    let w = SyntheticWorkload::new(300, 40.0, 7).map(Ok);
    let res = llm_emu_sim::run(e, w, &mut sinks, &mut |_| {}).expect("runs");
    (res, sinks.records.take().expect("kept"))
}

fn same(a: &(SimResult, Vec<RequestRecord>), b: &(SimResult, Vec<RequestRecord>)) {
    assert_eq!(a.0.completed, b.0.completed);
    assert_eq!(a.0.num_steps, b.0.num_steps);
    assert_eq!(a.0.end, b.0.end);
    assert_eq!(a.1.len(), b.1.len());
    for (x, y) in a.1.iter().zip(&b.1) {
        assert_eq!(format!("{x:?}"), format!("{y:?}"));
    }
}

#[test]
fn one_rank_reproduces_the_plain_engine() {
    let plain = simulate(&mut engine(600, 20.0));
    assert!(plain.0.completed > 250, "the workload runs");
    assert!(
        plain.1.iter().any(|r| r.num_preemptions > 0),
        "the workload is under KV pressure"
    );
    let dp = simulate(&mut DataParallel::new(vec![engine(600, 20.0)], 1));
    same(&plain, &dp);
}

#[test]
fn one_replica_reproduces_the_plain_engine_under_every_router() {
    let plain = simulate(&mut engine(600, 20.0));
    for name in ROUTER_NAMES {
        let mut r = Replicas::new(vec![engine(600, 20.0)], router_by_name(name).unwrap());
        same(&plain, &simulate(&mut r));
    }
}

#[test]
fn fleets_can_run_on_an_engine_thread() {
    fn send<T: Send>() {}
    send::<DataParallel>();
    send::<Replicas>();
}
