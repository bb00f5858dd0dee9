//! Fuzz targets of the workload reader: arbitrary bytes and arbitrary JSON lines. Whatever the
//! input, the reader ends, never panics, names every bad line by its number, and yields only
//! requests the engine can hold.
//!
//! 64 cases per target by default (a few seconds); a long run sets the count, e.g.
//! `PROPTEST_CASES=1000000 cargo test --release -p llm-emu-sim --test fuzz_workload`
//! (figures of one such run in docs/hardening.md).

use llm_emu_sim::workload::{LineErrorKind, MAX_ARRIVAL_S};
use llm_emu_sim::{LineError, WorkloadItem, WorkloadReader};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// 64 cases unless `PROPTEST_CASES` says otherwise; no regression files written.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

const MAX_MODEL_LEN: usize = 64;
const MAX_LINE: usize = 512;

/// Reads `bytes` whole with small limits and checks what every reader must guarantee.
fn check(bytes: &[u8]) -> Vec<Result<WorkloadItem, LineError>> {
    let lines = bytes.split(|&b| b == b'\n').count();
    let items: Vec<_> = WorkloadReader::new("f.jsonl", bytes, 7)
        .with_max_model_len(MAX_MODEL_LEN)
        .with_max_line_bytes(MAX_LINE)
        .with_hash_block_tokens(16)
        .collect();
    assert!(
        items.len() <= lines,
        "{} items from {lines} lines",
        items.len()
    );
    let mut last_line = 0;
    let mut last_arrival = 0u64;
    for r in &items {
        match r {
            Ok(item) => {
                let p = item.prompt_token_ids.len();
                assert!((1..MAX_MODEL_LEN).contains(&p), "prompt of {p} tokens");
                assert!(item.output_len >= 1);
                assert!(p + item.output_len as usize <= MAX_MODEL_LEN);
                assert!(item.arrival.as_secs_f64() <= MAX_ARRIVAL_S);
                assert!(item.arrival.0 >= last_arrival, "arrivals went back");
                last_arrival = item.arrival.0;
            }
            Err(e) => {
                assert_eq!(e.kind, LineErrorKind::Skipped, "{e}");
                assert!((last_line + 1..=lines).contains(&e.line), "{e}");
                assert!(e.to_string().starts_with(&format!("f.jsonl:{}: ", e.line)));
                last_line = e.line;
            }
        }
    }
    items
}

/// A JSON value of any type, numbers included at their edges.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (0u64..200).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 16, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((0u32..70_000).prop_map(|n| json!(n)), 0..80)
                .prop_map(Value::Array),
        ]
    })
}

/// An object of keys from the three workload formats (and a stranger), with values of any type.
fn workload_object() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "arrival_time_ns",
        "input_tok_ids",
        "output_toks",
        "input_toks",
        "output_tok_ids",
        "arrival_s",
        "prompt_len",
        "prompt_token_ids",
        "output_len",
        "request_id",
        "priority",
        "cache_salt",
        "timestamp",
        "input_length",
        "output_length",
        "hash_ids",
        "colour",
    ]);
    prop::collection::vec((keys, any_value()), 0..7).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

/// A well-formed plain line, so that many cases get past parsing to the checks.
fn plain_line() -> impl Strategy<Value = Value> {
    (0.0f64..100.0, 0u32..80, 0u32..80, any::<bool>()).prop_map(|(t, p, o, ids)| {
        if ids {
            json!({"arrival_s": t, "prompt_token_ids": vec![5u32; p as usize], "output_len": o})
        } else {
            json!({"arrival_s": t, "prompt_len": p, "output_len": o})
        }
    })
}

/// A Mooncake trace line, its hash ids fitting its length in blocks of 16 tokens or not.
fn mooncake_line() -> impl Strategy<Value = Value> {
    (
        0.0f64..100_000.0,
        0u32..80,
        0u32..80,
        prop::collection::vec(any::<u64>(), 0..7),
    )
        .prop_map(|(t, p, o, ids)| {
            json!({"timestamp": t, "input_length": p, "output_length": o, "hash_ids": ids})
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_lines_of_text(lines in prop::collection::vec("\\PC{0,80}", 0..20)) {
        check(lines.join("\n").as_bytes());
    }

    #[test]
    fn arbitrary_json_objects(
        objects in prop::collection::vec(
            prop_oneof![workload_object(), plain_line(), mooncake_line()],
            0..16,
        ),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
        for o in &objects {
            text.push_str(&o.to_string());
            text.push_str(sep);
        }
        let items = check(text.as_bytes());
        // Every line is accounted for: a request or an error (no blank lines were written).
        prop_assert_eq!(items.len(), objects.len());
    }
}
