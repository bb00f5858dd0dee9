//! `/v1/embeddings` with the pooling runner, as vLLM 0.19 answers it: one unit vector per
//! input of the model's hidden size, usage counting the prompt tokens, float or base64; the
//! route absent (404) on the generate runner, where the pooling server has no completions.

mod common;

use common::{Setup, TestServer, MODEL};
use serde_json::{json, Value};

const HIDDEN: usize = 48;

fn pooling() -> TestServer {
    TestServer::start(Setup {
        adjust: |o| o.pooling_hidden_size = Some(HIDDEN),
        ..Setup::default()
    })
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_have_vllm_s_shape() {
    let s = pooling();
    let (st, v) = s
        .json(
            "/v1/embeddings",
            json!({"model": MODEL, "input": ["a b c", "d e", "a b c"]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("embd-"));
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], MODEL);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "embedding");
        let e = vector(&d["embedding"]);
        assert_eq!(e.len(), HIDDEN);
        let norm: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    // The stand-in tokenizer: one token per word.
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 8);
    assert_eq!(v["usage"]["completion_tokens"], 0);

    // base64: the float32 little-endian bytes of the same vector.
    let (st, b) = s
        .json(
            "/v1/embeddings",
            json!({"input": "a b c", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let text = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(text.len(), (HIDDEN * 4).div_ceil(3) * 4);
    let floats = vector(&data[0]["embedding"]);
    let bytes: Vec<u8> = floats
        .iter()
        .flat_map(|x| (*x as f32).to_le_bytes())
        .collect();
    assert_eq!(text, llm_emu_serve::routes_embeddings::base64(&bytes));

    // Token ids as input.
    let (st, t) = s
        .json("/v1/embeddings", json!({"input": [[5, 6, 7, 8]]}))
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["usage"]["prompt_tokens"], 4);

    // The generate routes are not mounted on the pooling runner.
    let (st, _) = s
        .json("/v1/completions", json!({"prompt": "a", "max_tokens": 1}))
        .await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_errors() {
    let s = pooling();
    let (st, v) = s
        .json("/v1/embeddings", json!({"input": "a", "dimensions": 8}))
        .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not support matryoshka representation"));
    let (st, v) = s
        .json("/v1/embeddings", json!({"model": "other", "input": "a"}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["message"], "The model `other` does not exist.");
    let (st, _) = s.json("/v1/embeddings", json!({"model": MODEL})).await;
    assert_eq!(st, 400);
    let (st, _) = s
        .json(
            "/v1/embeddings",
            json!({"input": "a", "encoding_format": "hex"}),
        )
        .await;
    assert_eq!(st, 400);
    let long = vec![1u32; common::MAX_MODEL_LEN + 1];
    let (st, v) = s.json("/v1/embeddings", json!({"input": long})).await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 4096 tokens"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_runner_has_no_embeddings() {
    let s = TestServer::start(Setup::default());
    let (st, v) = s.json("/v1/embeddings", json!({"input": "a"})).await;
    assert_eq!(st, 404);
    assert_eq!(v, json!({"detail": "Not Found"}));
    s.stop().await;
}
