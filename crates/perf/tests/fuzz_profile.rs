//! Fuzz targets of the profile readers: an operator profile (`meta.yaml`, `dense.csv`,
//! `per_sequence.csv`, `attention.csv`) with one file edited or replaced by arbitrary text, and
//! step-cycle packs with arbitrary values. Whatever the input, loading never panics; it either
//! fails with a message naming the file, or gives a model whose steps take positive time.
//!
//! 64 cases per target by default (seconds); a long run sets the count, e.g.
//! `PROPTEST_CASES=1000000 cargo test --release -p llm-emu-perf --test fuzz_profile`
//! (figures of one such run in docs/hardening.md).

mod support;

use llm_emu_perf::latency::step_cycle::pack::StepCyclePack;
use llm_emu_perf::latency::BatchRequest;
use llm_emu_perf::latency::{
    BatchShape, LatencyModel, ProfileLatency, StepBatch, StepCycleLatency,
};
use llm_emu_perf::sizing::ModelShape;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

/// 64 cases unless `PROPTEST_CASES` says otherwise; no regression files written.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

/// The files of a minimal valid profile: (path under the profile dir, text).
fn valid_profile() -> Vec<(&'static str, String)> {
    support::minimal_profile("model: x\ntp_degrees: [1]\nskew_fit:\n  enabled: false\n")
}

/// One edit of a file's text.
#[derive(Clone, Debug)]
enum Edit {
    /// The whole file replaced.
    Replace(String),
    /// Line `n` (modulo the line count) replaced.
    Line(usize, String),
    /// Field `f` of line `n` replaced (a CSV field, or a YAML value).
    Field(usize, usize, String),
    /// Line `n` repeated.
    Duplicate(usize),
    /// Line `n` removed.
    Remove(usize),
    /// Cut after `n` bytes (at a char boundary).
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "0",
            "-1",
            "NaN",
            "inf",
            "-inf",
            "1e308",
            "1e-300",
            "abc",
            "2",
            "64",
            "99999999999999999999",
            " ",
            ":",
            "[1, 2]",
            "'q'",
            "\"x\"",
            "#",
            "- a",
            "\t",
            "true",
        ])
        .prop_map(str::to_string),
        "\\PC{0,16}",
    ];
    prop_oneof![
        "\\PC{0,200}".prop_map(Edit::Replace),
        (any::<usize>(), "\\PC{0,40}").prop_map(|(n, s)| Edit::Line(n, s)),
        (any::<usize>(), 0usize..6, token).prop_map(|(n, f, s)| Edit::Field(n, f, s)),
        any::<usize>().prop_map(Edit::Duplicate),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match e {
        Edit::Replace(s) => return s.clone(),
        Edit::Line(i, s) => lines[i % n] = s.clone(),
        Edit::Field(i, f, s) => {
            let line = &mut lines[i % n];
            let sep = if line.contains(',') { ',' } else { ':' };
            let mut parts: Vec<String> = line.split(sep).map(str::to_string).collect();
            let k = f % parts.len();
            parts[k] = s.clone();
            *line = parts.join(&sep.to_string());
        }
        Edit::Duplicate(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::Remove(i) => {
            lines.remove(i % n);
        }
        Edit::Truncate(k) => {
            let mut k = k % (text.len() + 1);
            while !text.is_char_boundary(k) {
                k -= 1;
            }
            return text[..k].to_string();
        }
    }
    lines.join("\n") + "\n"
}

/// A fresh folder with a `tp1/` inside, removed when the returned handle drops (whether the
/// case passes or fails).
fn scratch_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("llm-emu-fuzz-profile-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(d.path().join("tp1")).unwrap();
    d
}

fn batch_shapes() -> [BatchShape; 4] {
    [
        BatchShape::decodes(1, 24),
        BatchShape::decodes(300, 100_000),
        BatchShape::from_requests([(2048, 0), (1, 5)]),
        BatchShape::from_requests([(0, 0)]),
    ]
}

fn requests(tt: usize, conc: usize, ctx: usize) -> Vec<BatchRequest> {
    (0..conc)
        .map(|i| BatchRequest {
            num_tokens: if i == 0 { tt - (conc - 1) } else { 1 },
            num_computed_before: ctx,
            num_prompt_tokens: ctx + if i == 0 { tt } else { 0 },
            samples: true,
        })
        .collect()
}

/// A pack whose fields are arbitrary JSON values around a valid shape.
fn pack_json() -> impl Strategy<Value = Value> {
    let num = prop_oneof![
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        (0u64..5000).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(Value::Null),
        Just(json!("x")),
    ];
    let cell = (
        0u64..5000,
        0u64..300,
        prop::option::of(0u64..100_000),
        0usize..6,
        prop::collection::vec(num.clone(), 0..6),
    )
        .prop_map(|(tt, conc, ctx, n, samples)| {
            let mut c = json!({"tt": tt, "conc": conc, "num_samples": n, "samples": samples});
            if let Some(x) = ctx {
                c["ctx"] = json!(x);
            }
            c
        });
    (
        prop::sample::select(vec!["serving_step_cycle_2d", "llm_emu_step_cycle", "other"]),
        (num.clone(), num.clone(), prop::option::of(num.clone())),
        prop::option::of(num),
        prop::collection::vec(cell.clone(), 0..4),
        prop::collection::vec(cell.clone(), 0..4),
        prop::collection::vec(cell, 0..4),
    )
        .prop_map(|(ty, (tw, cw, xw), alpha, p, d, a)| {
            let mut b = json!({"tt_bucket_width": tw, "conc_bucket_width": cw});
            if let Some(x) = xw {
                b["ctx_bucket_width"] = x;
            }
            let mut v = json!({
                "profile_type": ty,
                "bucketing": b,
                "prefill_2d_distribution": p,
                "decode_2d_distribution": d,
                "step_cycle_2d_distribution": a,
            });
            if let Some(x) = alpha {
                v["alpha_kv"] = x;
            }
            v
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn operator_profile_with_one_file_edited(file in 0usize..4, edits in prop::collection::vec(edit(), 1..4)) {
        let scratch = scratch_dir();
        let dir = scratch.path();
        let mut files = valid_profile();
        let (name, text) = &mut files[file];
        for e in &edits {
            *text = apply(text, e);
        }
        let edited = *name;
        for (f, t) in &files {
            std::fs::write(dir.join(f), t).unwrap();
        }
        match ProfileLatency::load(dir, &ModelShape::llama_3_1_8b(), 1) {
            Ok(m) => {
                for b in batch_shapes() {
                    let ns = m.step_ns(&b);
                    prop_assert!(ns >= 1, "{ns} ns for {b:?}");
                }
            }
            Err(e) => {
                let s = e.to_string();
                prop_assert!(s.starts_with(&dir.display().to_string()), "{s}");
                let file_name = Path::new(edited).file_name().unwrap().to_str().unwrap();
                prop_assert!(s.contains(file_name) || s.contains(".csv") || s.contains(".yaml"), "{s}");
            }
        }
    }

    #[test]
    fn step_cycle_pack_values(v in pack_json(), noise in "\\PC{0,3}") {
        // As written, and with a few arbitrary characters appended (usually broken JSON).
        for text in [v.to_string(), format!("{v}{noise}")] {
            let path = Path::new("fuzz.json");
            let Ok(pack) = StepCyclePack::parse(&text, path) else { continue };
            let mut m = StepCycleLatency::new(&pack, path, 1, 2).expect("a parsed pack is valid");
            m = m.with_warn_sink(Box::new(|_| {}));
            for (tt, conc, ctx) in [(1, 1, 0), (64, 8, 100), (5000, 300, 100_000)] {
                let reqs = requests(tt, conc, ctx);
                let b = StepBatch { requests: &reqs, total_tokens: tt, padded_tokens: tt, num_running: conc };
                let t = m.step_time(&b);
                prop_assert!(t.0 >= 1, "{t:?}");
            }
        }
    }
}
