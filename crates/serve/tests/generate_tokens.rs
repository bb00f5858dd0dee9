//! `POST /inference/v1/generate`, vLLM 0.19's token-in/token-out route: token ids and
//! `sampling_params` in, `GenerateResponse` out, errors as the completions route gives them.

mod common;

use common::{Setup, TestServer, MODEL};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_tokens_out() {
    let s = TestServer::start(Setup::default());
    let (st, v) = s
        .json(
            "/inference/v1/generate",
            json!({"model": MODEL, "token_ids": [1, 2, 3, 4],
                   "sampling_params": {"max_tokens": 5, "n": 2, "ignore_eos": true}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "choices",
            "prompt_logprobs",
            "kv_transfer_params"
        ]
    );
    assert_eq!(v["request_id"].as_str().unwrap().len(), 16);
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["token_ids"].as_array().unwrap().len(), 5, "{c}");
        assert_eq!(c["finish_reason"], "length");
        assert!(c["logprobs"].is_null());
    }

    // SamplingParams' default max_tokens is 16.
    let (st, v) = s
        .json(
            "/inference/v1/generate",
            json!({"token_ids": [1, 2], "sampling_params": {"ignore_eos": true}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["token_ids"].as_array().unwrap().len(), 16);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_errors() {
    let s = TestServer::start(Setup::default());
    let (st, _) = s
        .json(
            "/inference/v1/generate",
            json!({"token_ids": [1, -2], "sampling_params": {}}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .json("/inference/v1/generate", json!({"token_ids": [1]}))
        .await;
    assert_eq!(st, 400, "sampling_params is required");
    let (st, v) = s
        .json(
            "/inference/v1/generate",
            json!({"model": "x", "token_ids": [1], "sampling_params": {}}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["message"], "The model `x` does not exist.");
    let (st, v) = s
        .json(
            "/inference/v1/generate",
            json!({"token_ids": [1], "sampling_params": {"max_tokens": 0}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    s.stop().await;
}
