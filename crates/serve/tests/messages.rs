//! `POST /v1/messages` (Anthropic Messages API as vLLM 0.19 serves it): the answer's shape,
//! usage, stop reasons, tool use, and errors in Anthropic's shape.

mod common;

use common::{structured_server, with_tool_parser, TestServer, MODEL};
use serde_json::json;

fn server() -> TestServer {
    structured_server(with_tool_parser())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_has_anthropic_shape() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 3, "system": "be brief",
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["content"][0]["type"], "text");
    assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 3);
    assert!(v.get("stop_sequence").is_none(), "nulls are left out");

    // The same prompt as a chat completion has the same number of input tokens.
    let (_, c) = s
        .json(
            "/v1/chat/completions",
            json!({"model": MODEL, "max_tokens": 3, "messages": [
                {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(v["usage"]["input_tokens"], c["usage"]["prompt_tokens"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tool_use() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 400,
                   "messages": [{"role": "user", "content": "weather?"}],
                   "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                       "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
                   "tool_choice": {"type": "tool", "name": "get_weather"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let blocks = v["content"].as_array().unwrap();
    let tool = blocks
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use: {v}"));
    assert_eq!(tool["name"], "get_weather");
    assert!(tool["input"]["city"].is_string(), "{v}");
    assert!(tool["id"].is_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_errors() {
    let s = server();
    let (st, v) = s
        .json(
            "/v1/messages",
            json!({"model": "nope", "max_tokens": 3,
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "NotFoundError",
               "message": "The model `nope` does not exist."}})
    );
    let (st, _) = s
        .json(
            "/v1/messages",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(st, 400, "max_tokens is required");
    let (st, v) = s
        .json(
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 0,
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["type"], "error");
    s.stop().await;
}

/// The events of an SSE body: (event name, JSON data).
fn events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_message_events() {
    let s = server();
    let body = json!({"model": MODEL, "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (st, text) = s
        .call("POST", "/v1/messages", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(st, 200, "{text}");
    let evs = events(&text);
    let names: Vec<_> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start", "{text}");
    assert_eq!(names[1], "content_block_start", "{text}");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(names[2..names.len() - 3]
        .iter()
        .all(|n| *n == "content_block_delta"));
    for (n, d) in &evs {
        assert_eq!(d["type"], n.as_str(), "data type is the event name");
    }
    let start = &evs[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(start["usage"]["output_tokens"], 0);
    assert!(
        start.get("type").is_none(),
        "unset fields are left out, as vLLM's exclude_unset"
    );
    let streamed: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert!(!streamed.is_empty());
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 5);
    assert_eq!(
        delta["usage"]["input_tokens"],
        start["usage"]["input_tokens"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_use() {
    let s = server();
    let body = json!({"model": MODEL, "max_tokens": 400, "stream": true,
                      "messages": [{"role": "user", "content": "weather?"}],
                      "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                          "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
                      "tool_choice": {"type": "any"}});
    let (st, text) = s
        .call("POST", "/v1/messages", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(st, 200, "{text}");
    let evs = events(&text);
    let start = evs
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block: {text}"));
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let json_text: String = evs
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    let args: serde_json::Value =
        serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{e}: {json_text}"));
    assert!(args["city"].is_string());
    let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    s.stop().await;
}
