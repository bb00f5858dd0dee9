//! Structured output, tool calls, seeds and echo mode over HTTP, on the real tokenizer: the
//! documents satisfy their schemas, the engine's rules still end requests, tool calls have
//! vLLM's shapes (whole and streamed).

mod common;

use common::{structured_server, with_tool_parser, MODEL};
use llm_emu_serve::structured::{OutputMode, StructuredOptions};
use serde_json::{json, Value};

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                          "max_tokens": 400});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// A schema with what pydantic emits: `$defs` and `$ref`, `anyOf` with null, enums, bounds.
fn person_schema() -> Value {
    json!({
        "$defs": {
            "Address": {"type": "object", "properties": {
                "street": {"type": "string", "minLength": 3, "maxLength": 12},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["street", "zip"]},
            "Colour": {"enum": ["red", "green"], "type": "string"}
        },
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18, "maximum": 30},
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "colour": {"$ref": "#/$defs/Colour"},
            "address": {"$ref": "#/$defs/Address"},
            "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
            "kind": {"const": "person"},
            "active": {"type": "boolean"}
        },
        "required": ["name", "age", "score", "colour", "address", "tags", "kind", "active"]
    })
}

/// The checks of [`person_schema`], written out.
fn assert_person(v: &Value) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    for k in [
        "name", "age", "score", "colour", "address", "tags", "kind", "active",
    ] {
        assert!(o.contains_key(k), "{k} missing: {v}");
    }
    assert!(v["name"].is_string(), "{v}");
    let age = v["age"].as_i64().expect("integer age");
    assert!((18..=30).contains(&age), "{v}");
    let score = v["score"].as_f64().unwrap();
    assert!(score > 0.0 && score < 1.0, "{v}");
    assert!(
        ["red", "green"].contains(&v["colour"].as_str().unwrap()),
        "{v}"
    );
    let street = v["address"]["street"].as_str().unwrap();
    assert!((3..=12).contains(&street.chars().count()), "{v}");
    let zip = v["address"]["zip"].as_str().unwrap();
    assert!(
        zip.len() == 5 && zip.bytes().all(|b| b.is_ascii_digit()),
        "{v}"
    );
    if let Some(n) = o.get("nick") {
        assert!(n.is_string() || n.is_null(), "{v}");
    }
    let tags = v["tags"].as_array().unwrap();
    assert!(
        (2..=3).contains(&tags.len()) && tags.iter().all(Value::is_string),
        "{v}"
    );
    assert_eq!(v["kind"], "person");
    assert!(v["active"].is_boolean(), "{v}");
}

fn json_schema_format() -> Value {
    json!({"type": "json_schema",
           "json_schema": {"name": "person", "schema": person_schema(), "strict": true}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_documents_validate_and_decide_where_eos_falls() {
    let s = structured_server(StructuredOptions::default());
    for seed in 0..8 {
        let (st, v) = s
            .json(
                "/v1/chat/completions",
                chat(json!({"response_format": json_schema_format(), "seed": seed})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_person(&serde_json::from_str(content).unwrap());
        // The test server's replies are 6 tokens long; the document's own end decides here.
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 6, "{v}");
    }
    // structured_outputs.json (vLLM's own field) and json_object, on completions too.
    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "max_tokens": 400,
                   "structured_outputs": {"json": person_schema()}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_person(&serde_json::from_str(v["choices"][0]["text"].as_str().unwrap()).unwrap());
    let (_, v) = s
        .json(
            "/v1/chat/completions",
            chat(json!({"response_format": {"type": "json_object"}})),
        )
        .await;
    let doc: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(doc.is_object(), "{doc}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rules_cut_or_extend_documents() {
    let s = structured_server(StructuredOptions::default());
    let body = |extra: Value| {
        let mut b = chat(json!({"response_format": json_schema_format(), "seed": 3}));
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (_, full) = s.json("/v1/chat/completions", body(json!({}))).await;
    let full_text = full["choices"][0]["message"]["content"].as_str().unwrap();
    // max_tokens shorter than the document: its prefix, finish reason "length".
    let (_, cut) = s
        .json("/v1/chat/completions", body(json!({"max_tokens": 5})))
        .await;
    assert_eq!(cut["choices"][0]["finish_reason"], "length", "{cut}");
    assert_eq!(cut["usage"]["completion_tokens"], 5);
    let cut_text = cut["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        full_text.starts_with(cut_text) && cut_text.len() < full_text.len(),
        "{cut_text:?} vs {full_text:?}"
    );
    // ignore_eos: the engine runs to max_tokens; past the document only EOS (not shown).
    let (_, long) = s
        .json(
            "/v1/chat/completions",
            body(json!({"ignore_eos": true, "max_tokens": 300})),
        )
        .await;
    assert_eq!(long["choices"][0]["finish_reason"], "length", "{long}");
    assert_eq!(long["usage"]["completion_tokens"], 300);
    assert_eq!(long["choices"][0]["message"]["content"], full_text);
    // choice and regex.
    let (_, v) = s
        .json(
            "/v1/chat/completions",
            chat(json!({"structured_outputs": {"choice": ["alpha", "beta"]}})),
        )
        .await;
    assert!(["alpha", "beta"].contains(&v["choices"][0]["message"]["content"].as_str().unwrap()));
    let (_, v) = s
        .json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "max_tokens": 50,
                   "structured_outputs": {"regex": "[A-Z]{2}-[0-9]{3}"}}),
        )
        .await;
    let t = v["choices"][0]["text"].as_str().unwrap();
    assert!(
        t.len() == 6 && t.as_bytes()[2] == b'-' && t[3..].bytes().all(|b| b.is_ascii_digit()),
        "{t:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_use_vllm_s_words() {
    let s = structured_server(StructuredOptions::default());
    let cases = [
        (
            json!({"response_format": {"type": "json_schema",
                   "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/Missing"}}}}),
            "Grammar error: ",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "You must use one kind of structured outputs constraint but none are specified",
        ),
        (
            json!({"structured_outputs": {"choice": []}}),
            "Choice '[]' cannot be an empty list",
        ),
        (
            json!({"structured_outputs": {"json": {"type": "object"}, "regex": "a"}}),
            "You can only use one kind of constraints for structured outputs",
        ),
        (
            json!({"structured_outputs": {"regex": "(unclosed"}}),
            "Grammar error: ",
        ),
        (
            json!({"structured_outputs": {"grammar": "  "}}),
            "structured_outputs.grammar cannot be an empty string",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
        ),
    ];
    for (extra, want) in cases {
        let (st, v) = s.json("/v1/chat/completions", chat(extra.clone())).await;
        assert_eq!(st, 400, "{extra}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{extra}: {msg}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_repeat_text_token_ids_and_logprobs() {
    let s = structured_server(StructuredOptions::default());
    let body = |seed: i64| {
        json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 12, "seed": seed,
               "logprobs": 2, "return_token_ids": true, "ignore_eos": true, "n": 2})
    };
    let (_, a) = s.json("/v1/completions", body(5)).await;
    let (_, b) = s.json("/v1/completions", body(5)).await;
    let (_, c) = s.json("/v1/completions", body(6)).await;
    for i in 0..2 {
        for k in ["text", "token_ids", "logprobs"] {
            assert_eq!(a["choices"][i][k], b["choices"][i][k], "{k}");
        }
        assert_ne!(a["choices"][i]["token_ids"], c["choices"][i]["token_ids"]);
    }
    // The choices of one seeded request differ from each other.
    assert_ne!(a["choices"][0]["token_ids"], a["choices"][1]["token_ids"]);
    // Without a seed, two requests differ.
    let mut unseeded = body(0);
    unseeded.as_object_mut().unwrap().remove("seed");
    let (_, x) = s.json("/v1/completions", unseeded.clone()).await;
    let (_, y) = s.json("/v1/completions", unseeded).await;
    assert_ne!(x["choices"][0]["token_ids"], y["choices"][0]["token_ids"]);
    s.stop().await;
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"]}}})
}

fn assert_weather_args(args: &str) {
    let v: Value = serde_json::from_str(args).unwrap_or_else(|e| panic!("{e}: {args}"));
    assert!(v["city"].is_string(), "{v}");
    assert!(
        ["celsius", "fahrenheit"].contains(&v["unit"].as_str().unwrap()),
        "{v}"
    );
    if let Some(d) = v.get("days") {
        assert!((1..=7).contains(&d.as_i64().unwrap()), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tool_choices_reply_with_tool_calls() {
    let s = structured_server(with_tool_parser());
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    for (choice, finish) in [(json!("required"), "tool_calls"), (named, "stop")] {
        let (st, v) = s
            .json(
                "/v1/chat/completions",
                chat(json!({"tools": [weather_tool()], "tool_choice": choice})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "", "{v}");
        let calls = m["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{v}");
        let id = calls[0]["id"].as_str().unwrap();
        assert!(
            id.len() == 14 + 32
                && id.starts_with("chatcmpl-tool-")
                && id[14..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_weather_args(calls[0]["function"]["arguments"].as_str().unwrap());
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{v}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tool_choice_follows_the_probability() {
    let flags = |p: f64| StructuredOptions {
        enable_auto_tool_choice: true,
        tool_call_parser: Some("hermes".into()),
        tool_call_probability: p,
        ..StructuredOptions::default()
    };
    let always = structured_server(flags(1.0));
    let (_, v) = always
        .json(
            "/v1/chat/completions",
            chat(json!({"tools": [weather_tool()]})),
        )
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null, "{v}");
    assert_weather_args(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    );
    // Streamed, as the Hermes parser streams: id, type and name alone, then arguments.
    let body = chat(json!({"tools": [weather_tool()], "stream": true}));
    let (_, text) = always
        .call(
            "POST",
            "/v1/chat/completions",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    let lists: Vec<Value> = events(&text)
        .iter()
        .map(|e| e["choices"][0]["delta"]["tool_calls"].clone())
        .filter(|t| !t.is_null())
        .collect();
    let first = lists[0].as_array().unwrap();
    assert_eq!(first.len(), 2, "{text}");
    assert_eq!(
        first[0]["function"],
        json!({"name": "get_weather"}),
        "{text}"
    );
    assert!(
        first[0]["id"].is_string() && first[1].get("id").is_none(),
        "{text}"
    );
    let args: String = lists
        .iter()
        .flat_map(|l| l.as_array().unwrap().clone())
        .filter_map(|c| c["function"]["arguments"].as_str().map(str::to_string))
        .collect();
    assert_weather_args(&args);
    always.stop().await;
    let never = structured_server(flags(0.0));
    let (_, v) = never
        .json(
            "/v1/chat/completions",
            chat(json!({"tools": [weather_tool()], "tool_choice": "auto"})),
        )
        .await;
    assert_eq!(v["choices"][0]["message"]["tool_calls"], json!([]), "{v}");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    never.stop().await;
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_calls_have_vllm_s_delta_shapes() {
    let s = structured_server(with_tool_parser());
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    for (choice, later_name, finish) in [
        (json!("required"), Some(Value::Null), "tool_calls"),
        (named, None, "stop"),
    ] {
        let body = chat(json!({"tools": [weather_tool()], "tool_choice": choice,
                               "stream": true}));
        let (st, text) = s
            .call(
                "POST",
                "/v1/chat/completions",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(st, 200, "{text}");
        let deltas: Vec<Value> = events(&text)
            .iter()
            .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
            .map(|c| c["delta"]["tool_calls"].clone())
            .filter(|t| !t.is_null())
            .collect();
        assert!(deltas.len() > 1, "{text}");
        let first = &deltas[0][0];
        assert_eq!(first["type"], "function");
        assert_eq!(first["index"], 0);
        assert_eq!(first["function"]["name"], "get_weather");
        assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-tool-"));
        let mut args = String::new();
        for d in &deltas {
            args.push_str(d[0]["function"]["arguments"].as_str().unwrap());
        }
        for d in &deltas[1..] {
            assert!(d[0].get("id").is_none(), "{d}");
            assert_eq!(d[0]["function"].get("name").cloned(), later_name, "{d}");
        }
        assert_weather_args(&args);
        let finishes: Vec<Value> = events(&text)
            .iter()
            .filter_map(|e| e["choices"][0].get("finish_reason").cloned())
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, [json!(finish)], "{text}");
        // No content deltas: all the text went into the tool call.
        assert!(!events(&text)
            .iter()
            .any(|e| e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_repeats_the_prompt_tokens() {
    let s = structured_server(StructuredOptions {
        output_mode: OutputMode::Echo,
        ..StructuredOptions::default()
    });
    let prompt: Vec<u32> = vec![9906, 1917, 13];
    let (_, v) = s
        .json(
            "/v1/completions",
            json!({"model": MODEL, "prompt": prompt, "max_tokens": 7, "ignore_eos": true,
                   "return_token_ids": true}),
        )
        .await;
    let want: Vec<u32> = (0..7).map(|i| prompt[i % prompt.len()]).collect();
    assert_eq!(v["choices"][0]["token_ids"], json!(want), "{v}");
    s.stop().await;
}
