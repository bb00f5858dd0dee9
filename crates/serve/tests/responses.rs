//! `POST /v1/responses` (OpenAI Responses API as vLLM 0.19 serves it without parsers): the
//! response's shape, usage, status, function calls and errors.

mod common;

use common::{structured_server, with_tool_parser, TestServer, MAX_MODEL_LEN, MODEL};
use serde_json::json;

fn server() -> TestServer {
    structured_server(with_tool_parser())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_has_vllm_s_shape() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/responses",
            json!({"model": MODEL, "input": "hello", "instructions": "be brief",
                   "max_output_tokens": 3}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["max_output_tokens"], 3);
    assert_eq!(v["instructions"], "be brief");
    let out = &v["output"][0];
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert!(out["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out["content"][0]["type"], "output_text");
    assert!(!out["content"][0]["text"].as_str().unwrap().is_empty());
    let u = &v["usage"];
    assert_eq!(u["output_tokens"], 3);
    let input = u["input_tokens"].as_u64().unwrap();
    assert_eq!(u["total_tokens"], input + 3);
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 0);

    // The same conversation as chat messages gives the same prompt length.
    let (_, c) = s
        .json(
            "/v1/chat/completions",
            json!({"max_tokens": 3, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}),
        )
        .await;
    assert_eq!(u["input_tokens"], c["usage"]["prompt_tokens"]);

    // Without max_output_tokens vLLM reports the rest of the context; input items work.
    let (st, v) = s
        .json(
            "/v1/responses",
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let input = v["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(v["max_output_tokens"], MAX_MODEL_LEN as u64 - input);
    assert_eq!(v["status"], "completed");
    assert!(v["incomplete_details"].is_null());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_items() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/responses",
            json!({"input": "weather?", "tool_choice": "required",
                   "tools": [{"type": "function", "name": "get_weather", "parameters":
                       {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"]}}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function_call: {v}"));
    assert_eq!(call["name"], "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());
    assert!(call["call_id"].is_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_errors() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/responses",
            json!({"input": "a", "previous_response_id": "resp_x"}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        v["error"]["message"],
        "Response with id 'resp_x' not found."
    );
    let (st, v) = s
        .json("/v1/responses", json!({"model": "nope", "input": "a"}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["message"], "The model `nope` does not exist.");
    let (st, _) = s.json("/v1/responses", json!({"model": MODEL})).await;
    assert_eq!(st, 400, "input is required");
    s.stop().await;
}
