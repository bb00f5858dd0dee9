//! The client's concurrency limit (`run_limited`, `--max-concurrency`) on runs small enough to
//! compute by hand.

use llm_emu_core::latency::LinearLatency;
use llm_emu_core::sampler::HashSampler;
use llm_emu_core::{Engine, EngineConfig, Nanos};
use llm_emu_sim::report::summary_json;
use llm_emu_sim::{run_limited, Sinks};
use support::item;

mod support;

/// Sync scheduling, 10 ms per step whatever the batch.
fn engine() -> (Engine, EngineConfig) {
    let mut cfg = EngineConfig::with_defaults(1000, 4096);
    cfg.async_scheduling = false;
    let e = Engine::new(
        cfg.clone(),
        Box::new(LinearLatency::new(10_000.0, 0.0)),
        Box::new(HashSampler::default()),
    )
    .unwrap();
    (e, cfg)
}

#[test]
fn one_slot_sends_the_next_request_when_the_first_finishes() {
    // `a` arrives at 0: tokens at 10, 20, 30, 40 ms. `b` arrives at 5 ms but the one slot is
    // taken: it is sent when `a` finishes (40 ms), its prefill step ends at 50 ms and its
    // second token comes at 60 ms. Measured from the send: TTFT 10 ms, E2E 20 ms.
    let (mut e, cfg) = engine();
    let items = vec![Ok(item("a", 0, 40, 4)), Ok(item("b", 5, 20, 2))];
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Sinks::default()
    };
    let mut res = run_limited(&mut e, items.into_iter(), &mut sinks, &mut |_| {}, Some(1)).unwrap();
    assert_eq!((res.completed, res.failed), (2, 0));
    assert_eq!(res.end, Nanos::from_millis(60));
    let recs = sinks.records.take().unwrap();
    let b = recs.iter().find(|r| r.request_id == "b").unwrap();
    assert_eq!(b.arrival_s, 0.04);
    assert_eq!(b.first_token_s, Some(0.05));
    let m = summary_json(&mut res, e.scheduler(), &cfg, "test");
    let f = |k: &str| m[k].as_f64().unwrap();
    assert_eq!(f("mean_ttft_ms"), 10.0);
    assert_eq!(f("mean_e2el_ms"), 30.0);
}

#[test]
fn waiting_requests_are_sent_in_arrival_order_and_never_exceed_the_limit() {
    // Ten requests at once through two slots: at most two are ever between send and finish,
    // and they are sent in the order they arrived.
    let (mut e, _) = engine();
    let items: Vec<_> = (0..10)
        .map(|i| Ok(item(&format!("r{i}"), i, 16 + i as u32, 3)))
        .collect();
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Sinks::default()
    };
    let res = run_limited(&mut e, items.into_iter(), &mut sinks, &mut |_| {}, Some(2)).unwrap();
    assert_eq!(res.completed, 10);
    let mut recs = sinks.records.take().unwrap();
    recs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let order: Vec<usize> = recs
        .iter()
        .map(|r| r.request_id[1..].parse().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "sent in arrival order");
    for r in &recs {
        let t = r.arrival_s;
        let in_flight = recs
            .iter()
            .filter(|o| o.arrival_s <= t && o.last_token_s.unwrap() > t)
            .count();
        assert!(in_flight <= 2, "{in_flight} in flight at {t}");
    }
    // Unlimited, the same requests overlap more than two at a time.
    let (mut e, _) = engine();
    let items: Vec<_> = (0..10)
        .map(|i| Ok(item(&format!("r{i}"), i, 16 + i as u32, 3)))
        .collect();
    let mut sinks = Sinks {
        records: Some(Vec::new()),
        ..Sinks::default()
    };
    run_limited(&mut e, items.into_iter(), &mut sinks, &mut |_| {}, None).unwrap();
    let recs = sinks.records.take().unwrap();
    let most = recs
        .iter()
        .map(|r| {
            recs.iter()
                .filter(|o| o.arrival_s <= r.arrival_s && o.last_token_s.unwrap() > r.arrival_s)
                .count()
        })
        .max()
        .unwrap();
    assert!(most > 2);
}
