//! The bad-input matrix (`tools/bad-input/cases.json`): every case sent to llm-emu in-process,
//! its status and error type checked against the table's `llm_emu` column. The same table run
//! against the vLLM 0.19 reference (`tools/bad-input/run.py`) gives its `vllm` column; where
//! the two differ, the row says why (and docs/serve.md lists it).

mod support;

use llm_emu_serve::ServeOptions;
use llm_emu_text::{TextModel, TokenizerSource};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use support::{options, start_with};
use tokio::io::AsyncWriteExt;

const TABLE: &str = include_str!("../../../tools/bad-input/cases.json");
const API_KEY: &str = "sk-matrix";

/// The error's type as the matrix compares it (`kind` in tools/bad-input/cases.py).
fn kind(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    match v.get("error") {
        Some(Value::Object(e)) => match e.get("type") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "None".into(),
        },
        Some(Value::String(s)) => s.clone(),
        _ if v.get("detail").is_some() => "detail".into(),
        _ => String::new(),
    }
}

fn body_bytes(enc: &Value) -> Option<Vec<u8>> {
    if enc.is_null() {
        return None;
    }
    if let Some(h) = enc.get("hex").and_then(Value::as_str) {
        let b = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        return Some(b);
    }
    if let Some(t) = enc.get("text").and_then(Value::as_str) {
        return Some(t.as_bytes().to_vec());
    }
    // Python's json.dumps separators, so that byte offsets in messages match run.py's.
    Some(python_json(&enc["json"]).into_bytes())
}

/// `json.dumps(v)` with its default separators (", " and ": ") and ASCII escapes.
fn python_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_json(&Value::String(k.clone())),
                    python_json(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                        let mut buf = [0u16; 2];
                        for u in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        other => other.to_string(),
    }
}

fn request(case: &Value) -> Vec<u8> {
    let method = case["method"].as_str().unwrap();
    let path = case["path"].as_str().unwrap();
    let mut headers: Vec<(String, Option<String>)> = vec![
        ("content-type".into(), Some("application/json".into())),
        ("authorization".into(), Some(format!("Bearer {API_KEY}"))),
    ];
    for (k, v) in case["headers"].as_object().unwrap() {
        let v = v.as_str().map(str::to_string);
        match headers.iter_mut().find(|(name, _)| name == k) {
            Some(h) => h.1 = v,
            None => headers.push((k.clone(), v)),
        }
    }
    let body = body_bytes(&case["body"]);
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in &headers {
        if let Some(v) = v {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if let Some(b) = &body {
        out.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend(body.unwrap_or_default());
    out
}

/// A `Connection: close` response's status and (de-chunked) body.
async fn answer(addr: std::net::SocketAddr, req: &[u8], head_only: bool) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A server that answers before reading everything may reset the rest: fine.
    let _ = s.write_all(req).await;
    let (status, raw) = support::read_response(&mut s).await;
    if head_only {
        return (status, String::new());
    }
    (status, dechunk(&raw))
}

fn dechunk(raw: &str) -> String {
    // Bodies here are small: good enough to tell chunked framing by its first line.
    let Some((first, _)) = raw.split_once("\r\n") else {
        return raw.to_string();
    };
    if first.is_empty() || !first.chars().all(|c| c.is_ascii_hexdigit()) {
        return raw.to_string();
    }
    let mut out = String::new();
    let mut rest = raw;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix_matches_the_llm_emu_column() {
    let table: Vec<Value> = serde_json::from_str(TABLE).unwrap();
    assert!(table.len() >= 200, "{} cases", table.len());
    let model = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let opts = ServeOptions {
        served_model_names: vec!["matrix-model".into()],
        model_root: "matrix-model".into(),
        api_keys: vec![API_KEY.into()],
        ..options()
    };
    let s = start_with(
        100,
        40960,
        opts,
        Arc::new(llm_emu_serve::text::ModelText(model)),
    )
    .await;
    let mut wrong = Vec::new();
    for case in &table {
        let name = case["name"].as_str().unwrap();
        let want = &case["llm_emu"];
        let head_only = case["method"] == "HEAD";
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(60),
            answer(s.addr, &request(case), head_only),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within 60 s"));
        let got = serde_json::json!({"status": status, "type": kind(&body)});
        if &got != want {
            wrong.push(format!("{name}: expected {want}, got {got} ({body:.300})"));
        }
        // Every row that differs from vLLM says why.
        if case.get("vllm").is_some_and(|v| v != want) {
            assert!(
                case["why"].as_str().is_some_and(|w| w != "UNEXPLAINED"),
                "{name} differs from vLLM without a reason"
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
    s.stop_within(Duration::from_secs(10)).await;
}

/// The 413 names the configured limit in bytes (it used to print the length of another text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_gets_413_naming_the_limit() {
    let opts = ServeOptions {
        max_body_bytes: 1 << 20,
        ..options()
    };
    let s = support::start(1000, 4096, opts).await;
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(2 << 20));
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let (status, body) = answer(s.addr, req.as_bytes(), false).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("limit of 1048576 bytes"), "{body}");
    // Chunked, so that only reading tells the size.
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (status, body) = answer(s.addr, req.as_bytes(), false).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("limit of 1048576 bytes"), "{body}");
    s.stop_within(Duration::from_secs(10)).await;
}

/// The small gaps, each checked on its own (they are rows of the matrix too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_options_and_stream_options_as_vllm() {
    let opts = ServeOptions {
        api_keys: vec![API_KEY.into()],
        ..options()
    };
    let s = support::start(1000, 4096, opts).await;
    let post = |ct: &str, body: &str| {
        format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             {ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let ok = r#"{"prompt": [1], "max_tokens": 1}"#;
    // text/plain (a form or fetch() without a CORS preflight could send it): refused.
    let (st, body) = answer(
        s.addr,
        post("Content-Type: text/plain\r\n", ok).as_bytes(),
        false,
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("Unsupported Media Type"), "{body}");
    assert_eq!(kind(&body), "Bad Request");
    // No Content-Type: refused too (valid JSON); application/json with parameters: fine.
    let (st, _) = answer(s.addr, post("", ok).as_bytes(), false).await;
    assert_eq!(st, 400);
    let ct = "Content-Type: application/json; charset=utf-8\r\n";
    let (st, body) = answer(s.addr, post(ct, ok).as_bytes(), false).await;
    assert_eq!(st, 200, "{body}");
    // OPTIONS passes the API key check (then 405: no CORS middleware).
    let req = "OPTIONS /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (st, _) = answer(s.addr, req.as_bytes(), false).await;
    assert_ne!(st, 401);
    // stream_options without stream: vLLM's validator.
    let ct = "Content-Type: application/json\r\n";
    let bad = r#"{"prompt": [1], "max_tokens": 1, "stream_options": {"include_usage": true}}"#;
    let (st, body) = answer(s.addr, post(ct, bad).as_bytes(), false).await;
    assert_eq!(st, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["param"], "stream_options");
    assert!(body.contains("Stream options can only be defined when `stream=True`."));
    // An empty object is falsy in vLLM's check: accepted.
    let empty = r#"{"prompt": [1], "max_tokens": 1, "stream_options": {}}"#;
    let (st, body) = answer(s.addr, post(ct, empty).as_bytes(), false).await;
    assert_eq!(st, 200, "{body}");
    s.stop_within(Duration::from_secs(10)).await;
}
