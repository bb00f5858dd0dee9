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

/// The `(event, data)` pairs of a Responses stream, checking each event names its data's type
/// and that sequence numbers count from 0.
fn events(body: &str) -> Vec<(String, serde_json::Value)> {
    let out: Vec<(String, serde_json::Value)> = body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (ev, data) = e.split_once('\n').unwrap_or_else(|| panic!("{e:?}"));
            let name = ev.strip_prefix("event: ").unwrap().to_string();
            let v: serde_json::Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect();
    for (i, (_, v)) in out.iter().enumerate() {
        assert_eq!(v["sequence_number"], i as u64, "{v}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_follows_vllm_s_event_sequence() {
    let s = server();
    let (st, body) = s
        .call(
            "POST",
            "/v1/responses",
            serde_json::to_vec(&json!({"input": "hello", "max_output_tokens": 4,
                                       "stream": true}))
            .unwrap(),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(!body.contains("[DONE]"));
    let ev = events(&body);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|n| **n == "response.output_text.delta")
        .count();
    assert!((1..=4).contains(&deltas), "{names:?}");
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, want);
    let created = &ev[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert!(created["usage"].is_null());
    let item_id = ev[2].1["item"]["id"].as_str().unwrap().to_string();
    assert_eq!(ev[2].1["item"]["status"], "in_progress");
    assert_eq!(ev[3].1["part"]["text"], "");
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| {
            assert_eq!(v["item_id"], item_id.as_str());
            v["delta"].as_str().unwrap().to_string()
        })
        .collect();
    let done = &ev[ev.len() - 4].1;
    assert_eq!(done["text"], text.as_str());
    assert_eq!(
        ev[ev.len() - 2].1["item"]["content"][0]["text"],
        text.as_str()
    );
    assert_eq!(ev[ev.len() - 2].1["item"]["status"], "completed");
    let completed = &ev[ev.len() - 1].1["response"];
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["status"], "incomplete");
    assert_eq!(completed["usage"]["output_tokens"], 4);
    assert_eq!(completed["output"][0]["content"][0]["text"], text.as_str());

    // The same request unstreamed reports the same usage.
    let (_, v) = s
        .json(
            "/v1/responses",
            json!({"input": "hello", "max_output_tokens": 4}),
        )
        .await;
    assert_eq!(v["usage"], completed["usage"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_function_call_carries_its_arguments() {
    let s = server();
    let (st, body) = s
        .call(
            "POST",
            "/v1/responses",
            serde_json::to_vec(&json!({"input": "weather?", "tool_choice": "required",
                "stream": true,
                "tools": [{"type": "function", "name": "get_weather", "parameters":
                    {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]}}]}))
            .unwrap(),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let ev = events(&body);
    let args: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap().to_string())
        .collect();
    let done = ev
        .iter()
        .find(|(n, _)| n == "response.function_call_arguments.done")
        .unwrap_or_else(|| panic!("no arguments.done: {body}"));
    assert_eq!(done.1["arguments"], args.as_str());
    assert_eq!(done.1["name"], "get_weather");
    let parsed: serde_json::Value = serde_json::from_str(&args).unwrap();
    assert!(parsed["city"].is_string(), "{args}");
    let completed = &ev.last().unwrap().1;
    assert_eq!(completed["type"], "response.completed");
    let call = completed["response"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .unwrap_or_else(|| panic!("{completed}"));
    assert_eq!(call["arguments"], args.as_str());
    s.stop().await;
}
