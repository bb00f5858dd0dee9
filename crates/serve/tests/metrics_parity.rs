//! Every family vLLM 0.19 shows by default exists in llm-emu's `/metrics` with the same type,
//! label names, help text and buckets. The reference exposition
//! (`data/vllm-0.19-metrics.txt`) was captured from the vLLM 0.19.0 reference server by
//! `data/capture-vllm-metrics.sh` (its defaults: max_model_len 40960, prefix caching on, after
//! a few completions and chat requests); this test sends similar traffic to llm-emu with the
//! same context length and compares family by family.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{options, start};

/// Families llm-emu leaves out on purpose, with the reason.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "python_gc_objects_collected_total",
        "Python's garbage collector: no Python here",
    ),
    (
        "python_gc_objects_uncollectable_total",
        "Python's garbage collector: no Python here",
    ),
    (
        "python_gc_collections_total",
        "Python's garbage collector: no Python here",
    ),
    (
        "python_info",
        "the Python interpreter's version: no Python here",
    ),
    (
        "vllm:estimated_flops_per_gpu_total",
        "MFU estimates from the model's shape: not computed yet",
    ),
    (
        "vllm:estimated_flops_per_gpu_created",
        "MFU estimates from the model's shape: not computed yet",
    ),
    (
        "vllm:estimated_read_bytes_per_gpu_total",
        "MFU estimates from the model's shape: not computed yet",
    ),
    (
        "vllm:estimated_read_bytes_per_gpu_created",
        "MFU estimates from the model's shape: not computed yet",
    ),
    (
        "vllm:estimated_write_bytes_per_gpu_total",
        "MFU estimates from the model's shape: not computed yet",
    ),
    (
        "vllm:estimated_write_bytes_per_gpu_created",
        "MFU estimates from the model's shape: not computed yet",
    ),
];

/// Label values that legitimately differ (the configuration of the reference run).
const VALUES_MAY_DIFFER: &[&str] = &["model_name", "num_gpu_blocks", "num_gpu_blocks_override"];

#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    /// Label names of its samples, `le` and `quantile` excluded.
    labels: BTreeSet<String>,
    /// `le` bounds of its buckets, as written.
    buckets: BTreeSet<String>,
}

/// The sample's base family for a histogram or summary series.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Splits `a="x",b="y"` into pairs (values hold no `",` here).
fn labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        out.push((
            name.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        ));
        rest = &after[(end + 1).min(after.len())..];
    }
    out
}

fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_string()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            let (series, _) = line.rsplit_once(' ').unwrap();
            let (name, label_text) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let base = family_of(name, &families).to_string();
            let f = families.entry(base).or_default();
            for (k, v) in labels(label_text) {
                match k.as_str() {
                    "le" => {
                        f.buckets.insert(v);
                    }
                    "quantile" => {}
                    _ => {
                        f.labels.insert(k);
                    }
                }
            }
        }
    }
    families
}

async fn post(addr: std::net::SocketAddr, path: &str, body: serde_json::Value) {
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
        .await
        .unwrap();
    let (status, text) = support::read_response(&mut s).await;
    assert_eq!(status, 200, "{path}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_vllm_family_is_served_alike() {
    let reference = parse(include_str!("data/vllm-0.19-metrics.txt"));
    assert!(reference.len() > 80, "the fixture holds vLLM's families");
    let server = start(1000, 40960, options()).await;
    let m = support::MODEL;
    post(
        server.addr,
        "/v1/completions",
        serde_json::json!({"model": m, "prompt": "hello there", "max_tokens": 5}),
    )
    .await;
    post(
        server.addr,
        "/v1/completions",
        serde_json::json!({"model": m, "prompt": "hello there", "max_tokens": 4, "n": 2}),
    )
    .await;
    post(
        server.addr,
        "/v1/chat/completions",
        serde_json::json!({"model": m, "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 3, "stream": true}),
    )
    .await;
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let ours = parse(&text);
    let exceptions: BTreeSet<&str> = EXCEPTIONS.iter().map(|e| e.0).collect();
    let mut problems = Vec::new();
    for (name, want) in &reference {
        if exceptions.contains(name.as_str()) {
            continue;
        }
        let Some(got) = ours.get(name) else {
            problems.push(format!("{name}: missing"));
            continue;
        };
        if got.kind != want.kind {
            problems.push(format!("{name}: type {} (vLLM: {})", got.kind, want.kind));
        }
        if got.help.trim_end() != want.help.trim_end() {
            problems.push(format!(
                "{name}: help {:?} (vLLM: {:?})",
                got.help, want.help
            ));
        }
        if got.labels != want.labels {
            problems.push(format!(
                "{name}: labels {:?} (vLLM: {:?})",
                got.labels, want.labels
            ));
        }
        if got.buckets != want.buckets {
            problems.push(format!(
                "{name}: buckets {:?} (vLLM: {:?})",
                got.buckets, want.buckets
            ));
        }
    }
    for e in &exceptions {
        assert!(
            !ours.contains_key(*e),
            "{e} is listed as an exception but is served: drop it from the list"
        );
    }
    assert!(
        problems.is_empty(),
        "differences from vLLM 0.19:\n{}",
        problems.join("\n")
    );

    // The label values of `vllm:cache_config_info` agree too, but for the configuration.
    let info_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("vllm:cache_config_info{"))
            .map(|l| labels(l.split_once('{').unwrap().1.rsplit_once('}').unwrap().0))
            .unwrap()
    };
    let theirs = info_line(include_str!("data/vllm-0.19-metrics.txt"));
    let mine = info_line(&text);
    for ((k1, v1), (k2, v2)) in theirs.iter().zip(&mine) {
        assert_eq!(k1, k2);
        if !VALUES_MAY_DIFFER.contains(&k1.as_str()) {
            assert_eq!(v1, v2, "cache_config_info {k1}");
        }
    }

    // Counts that follow from the traffic: `max_tokens` once per child request (n=2 counts
    // twice), `n` once per request.
    let count = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    let labels0 = format!("{{engine=\"0\",model_name=\"{m}\"}}");
    assert_eq!(
        count(&format!("vllm:request_params_max_tokens_count{labels0}")),
        4.0
    );
    assert_eq!(count(&format!("vllm:request_params_n_count{labels0}")), 3.0);
    assert_eq!(
        count("http_requests_total{handler=\"/v1/completions\",method=\"POST\",status=\"2xx\"}"),
        2.0
    );
    assert!(
        !text.contains("handler=\"/metrics\""),
        "vLLM's instrumentator leaves /metrics out"
    );
    server.stop_within(Duration::from_secs(10)).await;
}
