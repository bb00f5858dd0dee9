//! The step-cycle latency model on generated packs whose statistics are known.

use llm_emu_core::latency::step_cycle::pack::{build_pack, Pack};
use llm_emu_core::latency::{LatencyModel, StepBatch, StepCycleLatency};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde_json::{json, Value};
use std::path::Path;

const TT_W: f64 = 64.0;
const CONC_W: f64 = 8.0;

/// The true mean step time of a shape, µs.
fn true_mean(tt: f64, conc: f64) -> f64 {
    5000.0 + 10.0 * tt + 50.0 * conc
}

/// Cells for tt buckets 0..16 and conc buckets 0..8, each with `n` samples uniform in
/// mean·[0.9, 1.1] (known mean, known quantiles), at the bucket's centre shape.
fn generated(n: usize, skip: Option<(i64, i64)>) -> Value {
    let mut rng = Pcg64::seed_from_u64(7);
    let mut steps = Vec::new();
    for t in 0..16i64 {
        for c in 0..8i64 {
            if Some((t, c)) == skip {
                continue;
            }
            let (tt, conc) = (t as f64 * TT_W + 32.0, c as f64 * CONC_W + 4.0);
            for _ in 0..n {
                let us = true_mean(tt, conc) * rng.random_range(0.9..1.1);
                steps.push((tt as u64, conc as u64, 0, us));
            }
        }
    }
    build_pack(steps, TT_W, CONC_W, None)
}

fn model(pack: &Value, seed: u64) -> StepCycleLatency {
    let p = Pack::parse(Path::new("gen.json"), &pack.to_string()).expect("generated pack parses");
    StepCycleLatency::new(p, seed, 16)
}

fn draws(m: &mut StepCycleLatency, tt: usize, conc: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let b = StepBatch {
                requests: &[],
                total_tokens: tt,
                padded_tokens: tt,
                num_running: conc,
            };
            m.step_time(&b).0 as f64 / 1e3
        })
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn draws_reproduce_each_cells_distribution() {
    let pack = generated(200, None);
    let mut m = model(&pack, 1);
    for (tt, conc) in [(32usize, 4usize), (500, 30), (1000, 60), (1020, 3)] {
        let (t, c) = ((tt as f64 / TT_W).floor(), (conc as f64 / CONC_W).floor());
        let mu = true_mean(t * TT_W + 32.0, c * CONC_W + 4.0);
        let d = draws(&mut m, tt, conc, 4000);
        assert!(
            (mean(&d) / mu - 1.0).abs() < 0.01,
            "{tt},{conc}: {} vs {mu}",
            mean(&d)
        );
        // Uniform on mu·[0.9, 1.1]: p10 ≈ 0.92·mu, p90 ≈ 1.08·mu.
        assert!((quantile(&d, 0.1) / mu - 0.92).abs() < 0.01);
        assert!((quantile(&d, 0.9) / mu - 1.08).abs() < 0.01);
        assert!(d
            .iter()
            .all(|&x| x >= 0.9 * mu - 1e-3 && x <= 1.1 * mu + 1e-3));
    }
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
}

#[test]
fn a_missing_cell_pools_its_neighbours() {
    let pack = generated(200, Some((8, 4)));
    let mut m = model(&pack, 2);
    // Bucket (8, 4) is absent: its 4 nearest neighbours (distance 1) are pooled equally, whose
    // means average to the missing cell's (the truth is linear).
    let mu = true_mean(8.0 * TT_W + 32.0, 4.0 * CONC_W + 4.0);
    let d = draws(&mut m, 8 * 64 + 10, 4 * 8 + 2, 8000);
    assert!((mean(&d) / mu - 1.0).abs() < 0.01, "{} vs {mu}", mean(&d));
    // The neighbours' spread is wider than one cell's.
    assert!(quantile(&d, 0.01) < 0.9 * mu || quantile(&d, 0.99) > 1.1 * mu);
    let w = m.warnings();
    assert!(w.iter().any(|x| x.contains("pooled")), "{w:?}");
}

#[test]
fn sparse_cells_pool_until_enough_samples() {
    // 4 samples per cell, 16 needed: the own cell plus its neighbours at distance 1.
    let pack = generated(4, None);
    let mut m = model(&pack, 3);
    let mu = true_mean(5.0 * TT_W + 32.0, 3.0 * CONC_W + 4.0);
    let d = draws(&mut m, 5 * 64 + 1, 3 * 8 + 1, 6000);
    assert!((mean(&d) / mu - 1.0).abs() < 0.02, "{} vs {mu}", mean(&d));
}

#[test]
fn same_seed_same_steps() {
    let pack = generated(50, None);
    let (mut a, mut b, mut c) = (model(&pack, 9), model(&pack, 9), model(&pack, 10));
    let (da, db, dc) = (
        draws(&mut a, 300, 20, 100),
        draws(&mut b, 300, 20, 100),
        draws(&mut c, 300, 20, 100),
    );
    assert_eq!(da, db);
    assert_ne!(da, dc);
}

#[test]
fn beyond_the_table_scales_and_says_so() {
    let pack = generated(50, None);
    let mut m = model(&pack, 4);
    // The largest tt bucket is 15 (960..1024 tokens, edge at its centre 992); 1984 tokens →
    // about twice the edge cells' durations.
    let edge = mean(&draws(&mut m, 990, 20, 2000));
    let far = mean(&draws(&mut m, 1984, 20, 2000));
    assert!((far / edge - 2.0).abs() < 0.05, "{far} vs {edge}");
    // Beyond the largest conc bucket (56..64): the edge cells, unscaled.
    let top_conc = mean(&draws(&mut m, 990, 60, 2000));
    let big_conc = mean(&draws(&mut m, 990, 500, 2000));
    assert!(
        (big_conc / top_conc - 1.0).abs() < 0.02,
        "{big_conc} vs {top_conc}"
    );
    let w = m.warnings();
    assert!(w.iter().any(|x| x.contains("1984 tokens")), "{w:?}");
    assert!(w.iter().any(|x| x.contains("500 running")), "{w:?}");
}

#[test]
fn bad_packs_are_refused_with_the_reason() {
    let good = generated(2, None).to_string();
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_string(), "EOF"),
        (json!({"bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8}, "prefill_2d_distribution": []}).to_string(), "no profile_type"),
        (json!({"profile_type": "other", "bucketing": {}, "prefill_2d_distribution": []}).to_string(), "expected `serving_step_cycle_2d`"),
        (json!({"profile_type": "serving_step_cycle_2d", "prefill_2d_distribution": []}).to_string(), "bucketing"),
        (json!({"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bucket_width": 0, "conc_bucket_width": 8}, "prefill_2d_distribution": []}).to_string(), "tt_bucket_width must be > 0"),
        (json!({"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8},
                "prefill_2d_distribution": [{"tt": 0, "conc": 0, "num_samples": 1, "samples": [-5.0]}]}).to_string(), "not a positive duration"),
        (json!({"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8},
                "prefill_2d_distribution": [{"tt": 0, "conc": 0, "samples": ["fast"]}]}).to_string(), "prefill_2d_distribution[0]"),
        (json!({"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8},
                "prefill_2d_distribution": [{"tt": 0, "conc": 0, "num_samples": 0, "samples": []}]}).to_string(), "no cell has samples"),
        (json!({"profile_type": "serving_step_cycle_2d", "bucketing": {"tt_bucket_width": 64, "conc_bucket_width": 8, "ctx_bucket_width": 1024},
                "prefill_2d_distribution": [{"tt": 0, "conc": 0, "samples": [5.0]}]}).to_string(), "no valid ctx"),
    ];
    for (text, want) in cases {
        let e = Pack::parse(Path::new("bad.json"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.json") && e.contains(want), "{want}: {e}");
    }
    // Extra keys and a num_samples that disagrees are accepted and reported.
    let mut v = generated(2, None);
    v["llm_emu_note"] = "extra".into();
    v["prefill_2d_distribution"][0]["num_samples"] = 99.into();
    let p = Pack::parse(Path::new("x.json"), &v.to_string()).unwrap();
    assert_eq!(p.count_mismatches, 1);
    let m = StepCycleLatency::new(p, 0, 1);
    assert!(m.warnings().iter().any(|w| w.contains("num_samples")));
}

#[test]
fn the_context_axis_separates_steps_of_equal_shape() {
    // Same (tt, conc), two context buckets with different durations.
    let steps = (0..100)
        .map(|_| (100u64, 10u64, 1000u64, 10_000.0))
        .chain((0..100).map(|_| (100, 10, 50_000, 30_000.0)));
    let pack = build_pack(steps, TT_W, CONC_W, Some(8192.0));
    let p = Pack::parse(Path::new("ctx.json"), &pack.to_string()).unwrap();
    assert_eq!(p.ctx_width, Some(8192.0));
    let mut m = StepCycleLatency::new(p, 0, 16);
    let mut store = llm_emu_core::sched::store::RequestStore::default();
    let key = store.insert(llm_emu_core::Request::new(
        llm_emu_core::NewRequest {
            request_id: "r".into(),
            prompt_token_ids: vec![1u32; 4].into(),
            sampling: Default::default(),
            priority: 0,
            cache_salt: None,
            arrival: llm_emu_core::Nanos(0),
        },
        llm_emu_core::Nanos(0),
        16,
        false,
    ));
    let req = |computed: usize| llm_emu_core::sched::ScheduledRequest {
        key,
        num_tokens: 10,
        num_computed_before: computed,
        num_prompt_tokens: computed + 10,
        samples: true,
    };
    let near = [req(1000)];
    let far = [req(50_000)];
    let t = |m: &mut StepCycleLatency, r: &[llm_emu_core::sched::ScheduledRequest]| {
        m.step_time(&StepBatch {
            requests: r,
            total_tokens: 100,
            padded_tokens: 100,
            num_running: 10,
        })
        .0
    };
    assert_eq!(t(&mut m, &near), 10_000_000);
    assert_eq!(t(&mut m, &far), 30_000_000);
}
