//! The step-cycle latency model on generated packs with known statistics: per-cell draws
//! reproduce the cells' means and quantiles, sparse and missing cells pool their neighbours by
//! distance, shapes outside the table are extrapolated along the fitted trend with one warning,
//! the seed fixes the draws, and bad packs are refused with a reason.

use llm_emu_perf::latency::step_cycle::build::{PackBuilder, StepSample};
use llm_emu_perf::latency::step_cycle::pack::{Bucketing, Cell, StepCyclePack, PROFILE_TYPE_2D};
use llm_emu_perf::latency::BatchRequest;
use llm_emu_perf::latency::{
    latency_spec_for_profile, parse_latency_spec, HardwareDefaults, LatencyModel, LatencySpec,
    StepBatch, StepCycleLatency,
};
use llm_emu_perf::sizing::ModelShape;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

/// `conc` requests with `tt` tokens in all: the first carries the surplus (a prompt chunk when
/// `prefill`), the others decode one token each over `ctx_each` computed tokens.
fn requests(tt: usize, conc: usize, prefill: bool, ctx_each: usize) -> Vec<BatchRequest> {
    assert!(tt >= conc);
    (0..conc)
        .map(|i| {
            let first = i == 0;
            BatchRequest {
                num_tokens: if first { tt - (conc - 1) } else { 1 },
                num_computed_before: if first && prefill { 0 } else { ctx_each },
                num_prompt_tokens: if first && prefill { 100_000 } else { ctx_each },
                samples: true,
            }
        })
        .collect()
}

fn draw_us(m: &mut dyn LatencyModel, reqs: &[BatchRequest]) -> f64 {
    let total = reqs.iter().map(|r| r.num_tokens).sum();
    let b = StepBatch {
        requests: reqs,
        total_tokens: total,
        padded_tokens: total,
        num_running: reqs.len(),
    };
    m.step_time(&b).0 as f64 / 1000.0
}

/// A fresh folder for a test's files, removed when the returned handle drops (pass or fail).
fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("llm-emu-stepcycle-")
        .tempdir()
        .unwrap()
}

/// Writes `text` to `name` in `dir` (from [`scratch`]); the file's path.
fn tmp_file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn cell(tt: u64, conc: u64, samples: Vec<f64>) -> Cell {
    Cell {
        tt,
        conc,
        ctx: None,
        num_samples: samples.len(),
        samples,
    }
}

fn pack_2d(prefill: Vec<Cell>, decode: Vec<Cell>, tt_w: u64, conc_w: u64) -> StepCyclePack {
    StepCyclePack {
        version: Some("2.0".into()),
        gpu_model: None,
        model_name: None,
        profile_type: PROFILE_TYPE_2D.into(),
        alpha_kv: None,
        bucketing: Some(Bucketing {
            tt_bucket_width: tt_w,
            conc_bucket_width: conc_w,
            ctx_bucket_width: None,
        }),
        prefill_2d_distribution: prefill,
        decode_2d_distribution: decode,
        step_cycle_2d_distribution: vec![],
    }
}

fn save(dir: &TempDir, name: &str, p: &StepCyclePack) -> PathBuf {
    tmp_file(dir, name, &serde_json::to_string(p).unwrap())
}

/// Mean step time of a cell, µs: a + 20 µs/token + 50 µs/request (+3000 for prefill steps).
fn cell_mean(tt: u64, conc: u64, prefill: bool) -> f64 {
    5000.0 + 20.0 * tt as f64 + 50.0 * conc as f64 + if prefill { 3000.0 } else { 0.0 }
}

const SPREAD: f64 = 400.0;

/// tt buckets of width 32 (keys 16, 48, …, 1008), conc buckets of width 5 (keys 2, 7, …, 32);
/// each cell holds 300 samples uniform on mean ± 400 µs.
fn linear_pack() -> StepCyclePack {
    let mut rng = Pcg64::seed_from_u64(7);
    let mut mk = |prefill: bool| {
        let mut cells = vec![];
        for tt in (16..1024).step_by(32) {
            for conc in (2..35).step_by(5) {
                if conc > tt {
                    continue;
                }
                let m = cell_mean(tt, conc, prefill);
                let s = (0..300)
                    .map(|_| ((m + rng.random_range(-SPREAD..SPREAD)) * 10.0).round() / 10.0)
                    .collect();
                cells.push(cell(tt, conc, s));
            }
        }
        cells
    };
    let prefill = mk(true);
    let decode = mk(false);
    pack_2d(prefill, decode, 32, 5)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn draws_reproduce_cell_means_and_quantiles() {
    let tmp = scratch();
    let path = save(&tmp, "linear.json", &linear_pack());
    let mut m = parse_latency_spec(&format!("step-cycle:path={},seed=3", path.display())).unwrap();
    assert!(m.describe().starts_with("step-cycle:"), "{}", m.describe());
    for (tt, conc, prefill) in [
        (16, 2, false),
        (48, 7, false),
        (528, 22, false),
        (1008, 32, false),
        (16, 2, true),
        (400, 12, true),
        (1008, 32, true),
    ] {
        // A shape inside the bucket but not at its key draws from the same cell.
        let reqs = requests(tt as usize + 5, conc as usize + 1, prefill, 200);
        let mut v: Vec<f64> = (0..6000).map(|_| draw_us(m.as_mut(), &reqs)).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let want = cell_mean(tt, conc, prefill);
        let label = format!("tt={tt} conc={conc} prefill={prefill}");
        // Uniform ±400: sd 231; the cell's own 300 samples' mean is within ~±40 of `want`.
        assert!((mean - want).abs() < 50.0, "{label}: mean {mean} vs {want}");
        let (p10, p90) = (quantile(&mut v, 0.1), quantile(&mut v, 0.9));
        assert!(
            (p10 - (want - 0.8 * SPREAD)).abs() < 60.0,
            "{label}: p10 {p10}"
        );
        assert!(
            (p90 - (want + 0.8 * SPREAD)).abs() < 60.0,
            "{label}: p90 {p90}"
        );
        assert!(v[0] >= want - SPREAD - 0.1 && v[v.len() - 1] <= want + SPREAD + 0.1);
    }
}

#[test]
fn the_trend_is_fitted_from_the_cells() {
    let p = linear_pack();
    let m = StepCycleLatency::new(&p, "linear.json".as_ref(), 0, 5).unwrap();
    let d = m.describe();
    // 20 µs/token, 50 µs/request, recovered from noisy cell means.
    assert!(d.contains("trend 20.0") || d.contains("trend 19.9"), "{d}");
    assert!(
        d.contains("µs/token 50.") || d.contains("µs/token 49."),
        "{d}"
    );
}

#[test]
fn a_missing_cell_pools_its_neighbours_along_the_trend() {
    // Decode cells along tt every 32 tokens with constant samples on an exact line 1000 + 10·tt;
    // the cell at key 48 is missing: its equidistant neighbours 16 and 80 are pooled and each
    // is moved to 48 along the fitted slope, so every draw is exactly 1000 + 10·48.
    let cells: Vec<Cell> = [16u64, 80, 112, 144]
        .iter()
        .map(|&tt| cell(tt, 2, vec![1000.0 + 10.0 * tt as f64; 20]))
        .collect();
    let p = pack_2d(vec![], cells, 32, 5);
    let mut m = StepCycleLatency::new(&p, "gap.json".as_ref(), 1, 5).unwrap();
    assert!(m.describe().contains("prefill_2d_distribution missing"));
    let reqs = requests(48, 2, false, 10);
    for _ in 0..100 {
        assert!((draw_us(&mut m, &reqs) - 1480.0).abs() < 0.01);
    }
    // A prefill step uses the decode table, the only one there is.
    assert!((draw_us(&mut m, &requests(16, 2, true, 0)) - 1160.0).abs() < 0.01);
}

#[test]
fn a_sparse_cell_is_mixed_with_its_neighbours_by_distance() {
    // Cell 48 has one sample (5000 µs); its neighbours 16 and 80 hold 100 samples of 1000 µs
    // (symmetric, so the fitted tt slope is 0). With min_samples 5 the pool is: own cell,
    // weight min(1,5)/(1+0) = 1; each neighbour min(100,5)/(1+1) = 2.5 → P(5000) = 1/6.
    let p = pack_2d(
        vec![],
        vec![
            cell(16, 2, vec![1000.0; 100]),
            cell(48, 2, vec![5000.0]),
            cell(80, 2, vec![1000.0; 100]),
        ],
        32,
        5,
    );
    let mut m = StepCycleLatency::new(&p, "sparse.json".as_ref(), 9, 5).unwrap();
    let reqs = requests(48, 2, false, 10);
    let n = 30_000;
    let mut high = 0;
    for _ in 0..n {
        let us = draw_us(&mut m, &reqs);
        assert!(us == 1000.0 || us == 5000.0, "{us}");
        high += (us == 5000.0) as usize;
    }
    let frac = high as f64 / n as f64;
    assert!((frac - 1.0 / 6.0).abs() < 0.01, "P(own sample) = {frac}");
    // With min_samples 1 the own cell suffices.
    let mut m1 = StepCycleLatency::new(&p, "sparse.json".as_ref(), 9, 1).unwrap();
    assert_eq!(draw_us(&mut m1, &reqs), 5000.0);
}

#[test]
fn outside_the_table_extrapolates_along_the_trend_and_warns_once() {
    let cells: Vec<Cell> = [16u64, 48, 80]
        .iter()
        .flat_map(|&tt| {
            [2u64, 7].map(|c| {
                cell(
                    tt,
                    c,
                    vec![1000.0 + 10.0 * tt as f64 + 100.0 * c as f64; 10],
                )
            })
        })
        .collect();
    let p = pack_2d(cells.clone(), cells, 32, 5);
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let w = warnings.clone();
    let mut m = StepCycleLatency::new(&p, "edge.json".as_ref(), 0, 5)
        .unwrap()
        .with_warn_sink(Box::new(move |s| w.lock().unwrap().push(s.into())));
    // tt 4000 → key 4016, conc 7: nearest cell (80, 7) moved by 10 µs × (4016 − 80).
    let far = requests(4000, 7, false, 10);
    for _ in 0..5 {
        let us = draw_us(&mut m, &far);
        assert!((us - (1000.0 + 10.0 * 4016.0 + 700.0)).abs() < 0.01, "{us}");
    }
    // conc 40 → key 42: beyond the conc edge too.
    let wide = requests(60, 40, false, 10);
    let us = draw_us(&mut m, &wide);
    assert!(
        (us - (1000.0 + 10.0 * 48.0 + 100.0 * 42.0)).abs() < 0.01,
        "{us}"
    );
    let w = warnings.lock().unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("tt bucket 4016 is above") && w[0].contains("16..=80"),
        "{}",
        w[0]
    );
    assert!(w[1].contains("conc bucket 42 is above"), "{}", w[1]);
}

#[test]
fn draws_never_fall_below_the_smallest_sample() {
    // Below the table's range the trend would go under the data: floored at its minimum.
    let cells: Vec<Cell> = [1016u64, 1048]
        .iter()
        .map(|&tt| cell(tt, 2, vec![10.0 * tt as f64; 10]))
        .collect();
    let p = pack_2d(vec![], cells, 32, 5);
    let mut m = StepCycleLatency::new(&p, "floor.json".as_ref(), 0, 5)
        .unwrap()
        .with_warn_sink(Box::new(|_| {}));
    let us = draw_us(&mut m, &requests(2, 2, false, 0));
    assert_eq!(us, 10160.0);
}

#[test]
fn the_seed_fixes_the_draws() {
    let tmp = scratch();
    let path = save(&tmp, "seed.json", &linear_pack());
    let run = |seed: u64| {
        let mut m =
            parse_latency_spec(&format!("step-cycle:path={},seed={seed}", path.display())).unwrap();
        let reqs = requests(300, 10, false, 50);
        (0..200)
            .map(|_| draw_us(m.as_mut(), &reqs))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn context_tokens_select_cells_in_the_extended_pack() {
    let tmp = scratch();
    let mut b = PackBuilder::new(32, 5, Some(1000)).unwrap();
    for i in 0..40 {
        for (ctx, us) in [(100u64, 2000.0), (5100, 9000.0)] {
            b.add(&StepSample {
                tt: 10,
                conc: 10,
                ctx: Some(ctx),
                prefill: false,
                duration_us: us + i as f64,
            })
            .unwrap();
        }
    }
    let pack = b.finish(Some("gpu".into()), None).unwrap();
    assert_eq!(pack.profile_type, "llm_emu_step_cycle");
    let path = save(&tmp, "ctx.json", &pack);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"ctx_bucket_width\":1000"), "{text}");
    let mut m = parse_latency_spec(&format!("step-cycle:path={}", path.display())).unwrap();
    // 10 decodes over 10 computed tokens each → ctx 100 → bucket 500.
    let short = draw_us(m.as_mut(), &requests(10, 10, false, 10));
    assert!((2000.0..2040.0).contains(&short), "{short}");
    // 10 decodes over 510 each → ctx 5100 → bucket 5500.
    let long = draw_us(m.as_mut(), &requests(10, 10, false, 510));
    assert!((9000.0..9040.0).contains(&long), "{long}");
}

#[test]
fn alpha_kv_packs_key_cells_by_effective_tokens() {
    let tmp = scratch();
    // LLM-Emu's `--alpha-kv model` packs: cells keyed by tt + alpha_kv × Σ context tokens.
    let mut p = pack_2d(
        vec![],
        vec![
            cell(10, 2, vec![1000.0; 10]),
            cell(110, 2, vec![3000.0; 10]),
        ],
        1,
        5,
    );
    p.alpha_kv = Some(0.05);
    let mut m = StepCycleLatency::new(&p, "alpha.json".as_ref(), 0, 1).unwrap();
    assert!(m.describe().contains("tt_eff"), "{}", m.describe());
    // 2 decodes (tt 2) over 1000 context tokens each: tt_eff = 2 + 0.05 × 2000 = 102, nearest
    // cell 110, moved along the fitted 20 µs/token to 102: 3000 − 160.
    assert_eq!(draw_us(&mut m, &requests(2, 2, false, 1000)), 2840.0);
    // Over 10 each: tt_eff = 3, nearest cell 10, 1000 − 140 floored at the smallest sample.
    assert_eq!(draw_us(&mut m, &requests(2, 2, false, 10)), 1000.0);
    // Without alpha_kv the context is not looked at: tt 2 → cell 10 either way.
    p.alpha_kv = None;
    let mut plain = StepCycleLatency::new(&p, "alpha.json".as_ref(), 0, 1).unwrap();
    assert_eq!(draw_us(&mut plain, &requests(2, 2, false, 1000)), 1000.0);
    p.alpha_kv = Some(-1.0);
    let path = save(&tmp, "alpha_bad.json", &p);
    let e = parse_latency_spec(&format!("step-cycle:path={}", path.display()))
        .err()
        .expect("negative alpha_kv refused");
    assert!(e.to_string().contains("alpha_kv"), "{e}");
}

#[test]
fn builder_splits_prefill_and_decode_and_rounds_like_llm_emu() {
    let mut b = PackBuilder::new(1, 5, None).unwrap();
    for (tt, conc, prefill, us) in [
        (512, 3, true, 9000.04),
        (3, 3, false, 5000.06),
        (3, 4, false, 5100.0),
    ] {
        b.add(&StepSample {
            tt,
            conc,
            ctx: None,
            prefill,
            duration_us: us,
        })
        .unwrap();
    }
    let p = b.finish(None, None).unwrap();
    assert_eq!(p.prefill_2d_distribution, vec![cell(512, 2, vec![9000.0])]);
    // conc 3 and 4 share the bucket [0, 5) keyed 2.
    assert_eq!(
        p.decode_2d_distribution,
        vec![cell(3, 2, vec![5000.1, 5100.0])]
    );
    assert_eq!(p.step_cycle_2d_distribution.len(), 2);
    assert!(PackBuilder::new(0, 5, None).is_err());
    assert!(PackBuilder::new(1, 5, None)
        .unwrap()
        .finish(None, None)
        .is_err());
    let mut needs_ctx = PackBuilder::new(1, 5, Some(64)).unwrap();
    let no_ctx = StepSample {
        tt: 1,
        conc: 1,
        ctx: None,
        prefill: false,
        duration_us: 1.0,
    };
    assert!(needs_ctx.add(&no_ctx).is_err());
}

#[test]
fn step_records_of_each_source_are_read() {
    let read = |s: &str| StepSample::from_json(&serde_json::from_str(s).unwrap());
    let emu = read(
        r#"{"duration_ms":10.5,"num_reqs":3,"num_tokens":300,"num_prefill_tokens":298,"num_decode_reqs":2,"context_tokens":77}"#,
    );
    assert_eq!(
        emu.unwrap().unwrap(),
        StepSample {
            tt: 300,
            conc: 3,
            ctx: Some(77),
            prefill: true,
            duration_us: 10500.0
        }
    );
    let vref = read(
        r#"{"submit":1.0,"start":1.0,"end":1.005,"done":1.0051,"lat_us":5000.0,"tokens":4,"reqs":4,"decode_reqs":4,"ctx":900}"#,
    );
    assert_eq!(
        vref.unwrap().unwrap(),
        StepSample {
            tt: 4,
            conc: 4,
            ctx: Some(900),
            prefill: false,
            duration_us: 5000.0
        }
    );
    let le =
        read(r#"{"total_tokens":130,"num_new_reqs":1,"num_decode_seqs":2,"step_cycle_us":7000.5}"#);
    assert_eq!(
        le.unwrap().unwrap(),
        StepSample {
            tt: 130,
            conc: 3,
            ctx: None,
            prefill: true,
            duration_us: 7000.5
        }
    );
    assert_eq!(read(r#"{"_header":true,"gpu_name":"x"}"#), Ok(None));
    assert_eq!(read(r#"{"__marker__":"profiling_start"}"#), Ok(None));
    assert!(read(r#"{"foo":1}"#).is_err());
    assert!(read(r#"{"total_tokens":-3,"step_cycle_us":1}"#).is_err());
    assert!(read(r#"{"total_tokens":3,"step_cycle_us":-1}"#).is_err());
    assert!(read(r#"[1,2]"#).is_err());
}

#[test]
fn bad_packs_are_refused_with_a_reason() {
    let tmp = scratch();
    let good = serde_json::to_string(&pack_2d(
        vec![cell(16, 2, vec![1000.0, 1100.0])],
        vec![],
        32,
        5,
    ))
    .unwrap();
    let err = |name: &str, text: &str| {
        let p = tmp_file(&tmp, name, text);
        match parse_latency_spec(&format!("step-cycle:path={}", p.display())) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        }
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_string(), "EOF"),
        (
            "wrongtype",
            good.replace("\"tt\":16", "\"tt\":\"16\""),
            "invalid type",
        ),
        (
            "negative",
            good.replace("1100.0", "-5.0"),
            "not a positive finite",
        ),
        (
            "zero",
            good.replace("1100.0", "0.0"),
            "not a positive finite",
        ),
        ("nan", good.replace("1100.0", "NaN"), "expected value"),
        (
            "empty",
            good.replace(
                "\"num_samples\":2,\"samples\":[1000.0,1100.0]",
                "\"num_samples\":0,\"samples\":[]",
            ),
            "empty cell",
        ),
        (
            "count",
            good.replace("\"num_samples\":2", "\"num_samples\":3"),
            "num_samples is 3",
        ),
        (
            "nobucketing",
            good.replace(
                "\"bucketing\":{\"tt_bucket_width\":32,\"conc_bucket_width\":5},",
                "",
            ),
            "no `bucketing`",
        ),
        (
            "zerowidth",
            good.replace("\"tt_bucket_width\":32", "\"tt_bucket_width\":0"),
            ">= 1",
        ),
        (
            "nocells",
            good.replace(
                "[{\"tt\":16,\"conc\":2,\"num_samples\":2,\"samples\":[1000.0,1100.0]}]",
                "[]",
            ),
            "no cells",
        ),
        (
            "type",
            good.replace(PROFILE_TYPE_2D, "forward_pass"),
            "profile_type is `forward_pass`",
        ),
        (
            "ctxtype",
            good.replace(PROFILE_TYPE_2D, "llm_emu_step_cycle"),
            "ctx_bucket_width",
        ),
    ];
    for (name, text, want) in cases {
        assert_ne!(text, good, "{name}: the case must change the pack");
        let e = err(name, &text);
        assert!(e.contains(want), "{name}: `{e}` lacks `{want}`");
    }
    // A pack built in code is checked as well.
    let empty = pack_2d(vec![], vec![], 1, 5);
    let e = StepCycleLatency::new(&empty, "code".as_ref(), 0, 5).unwrap_err();
    assert!(e.to_string().contains("no cells"), "{e}");
    // Unknown extra keys are fine.
    let extra = good.replacen(
        '{',
        "{\"model_config\":{\"hidden_size\":4096},\"alpha_kv\":0.1,",
        1,
    );
    let p = tmp_file(&tmp, "extra.json", &extra);
    assert!(parse_latency_spec(&format!("step-cycle:path={}", p.display())).is_ok());
    for spec in [
        "step-cycle:",
        "step-cycle:seed=1",
        "step-cycle:path=/nonexistent.json",
    ] {
        assert!(parse_latency_spec(spec).is_err(), "{spec}");
    }
    let p = tmp_file(&tmp, "ok.json", &good);
    for bad in ["seed=-1", "seed=x", "min_samples=0", "color=red", "path"] {
        let spec = format!("step-cycle:path={},{bad}", p.display());
        assert!(parse_latency_spec(&spec).is_err(), "{spec}");
    }
}

#[test]
fn profile_paths_are_detected() {
    let tmp = scratch();
    let pack = save(&tmp, "detect.json", &linear_pack());
    assert_eq!(
        latency_spec_for_profile(&pack).unwrap().to_string(),
        format!("step-cycle:path={}", pack.display())
    );
    let detect = tempfile::Builder::new()
        .prefix("llm-emu-detect-")
        .tempdir()
        .unwrap();
    let dir = detect.path();
    std::fs::create_dir_all(dir.join("tp1")).unwrap();
    assert!(latency_spec_for_profile(dir).is_err(), "no meta.yaml yet");
    std::fs::write(dir.join("meta.yaml"), "x: 1\n").unwrap();
    assert_eq!(
        latency_spec_for_profile(dir).unwrap().to_string(),
        format!("profile:dir={}", dir.display())
    );
    let other = tmp_file(&tmp, "other.json", r#"{"profile_type":"forward_pass"}"#);
    assert!(latency_spec_for_profile(&other)
        .unwrap_err()
        .to_string()
        .contains("unknown profile_type"));
    let text = tmp_file(&tmp, "text.txt", "hello");
    assert!(latency_spec_for_profile(&text)
        .unwrap_err()
        .to_string()
        .contains("not valid JSON"));
    assert!(latency_spec_for_profile("/nonexistent/x".as_ref()).is_err());
}

#[test]
fn a_profile_path_with_commas_loads_unsplit() {
    let tmp = scratch();
    // `,` and `=` separate a spec's parameters; a detected path never goes through that text.
    let pack = save(&tmp, "a,seed=9, b.json", &linear_pack());
    let spec = latency_spec_for_profile(&pack).unwrap();
    assert_eq!(spec, LatencySpec::step_cycle(pack.clone()));
    let hw = HardwareDefaults {
        seed: 3,
        ..Default::default()
    };
    let mut m = spec
        .build(&ModelShape::llama_3_1_8b(), &hw)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.describe().contains("a,seed=9, b.json"),
        "{}",
        m.describe()
    );
    assert!(m.describe().contains("seed 3"), "{}", m.describe());
    let mut same = parse_latency_spec(&format!(
        "step-cycle:path={},seed=3",
        save(&tmp, "plain.json", &linear_pack()).display()
    ))
    .unwrap();
    let reqs = requests(48, 7, false, 100);
    assert_eq!(draw_us(m.as_mut(), &reqs), draw_us(same.as_mut(), &reqs));
    // Through the text syntax the same path is cut at its commas.
    assert!(parse_latency_spec(&format!("step-cycle:path={}", pack.display())).is_err());
}
