//! Fuzz target of the HTTP request types: arbitrary JSON bodies parsed into the completion,
//! chat, tokenize and detokenize requests, then run through the checks the routes apply
//! (`check_max_output`, `prompt_max_tokens`, `verify_sampling`), without a server. Whatever
//! the body: no panic; a refusal is a 400 with a JSON error body; an accepted request has a
//! usable output budget.
//!
//! 64 cases per target by default (seconds); a long run sets the count, e.g.
//! `PROPTEST_CASES=1000000 cargo test --release -p llm-emu-serve --test fuzz_protocol`
//! (figures of one such run in docs/hardening.md).

use llm_emu_serve::errors::ApiError;
use llm_emu_serve::generate::{check_max_output, prompt_max_tokens, verify_sampling};
use llm_emu_serve::protocol::{
    ChatCompletionRequest, CompletionRequest, DetokenizeRequest, PromptInput, TokenizeRequest,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const MAX_MODEL_LEN: usize = 4096;
const VOCAB: usize = 32_000;

/// 64 cases unless `PROPTEST_CASES` says otherwise; no regression files written.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-3i64..5000).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        (-1.0f64..3.0).prop_map(|x| json!(x)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((0u32..40_000).prop_map(|n| json!(n)), 0..40)
                .prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body made of the fields the request types know (and one they ignore).
fn body() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "model",
        "prompt",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "logprobs",
        "top_logprobs",
        "stream",
        "stream_options",
        "stop",
        "stop_token_ids",
        "ignore_eos",
        "min_tokens",
        "n",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "priority",
        "cache_salt",
        "request_id",
        "echo",
        "tokens",
        "add_special_tokens",
        "chat_template",
        "tools",
        "colour",
    ]);
    prop::collection::vec((keys, any_value()), 0..10)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// A refusal as the routes send it: 400 with vLLM's JSON error body.
fn assert_refusal(e: &ApiError) {
    assert_eq!(e.status().as_u16(), 400, "{}", e.body());
    let v: Value = serde_json::from_str(&e.body()).expect("error body is JSON");
    assert!(v["error"]["message"].is_string(), "{v}");
}

/// The completion route's checks on a parsed request; prompt lengths stand for tokenized text.
fn check_completion(req: &CompletionRequest) {
    if let Err(e) = check_max_output(req.max_tokens, "max_tokens", MAX_MODEL_LEN) {
        return assert_refusal(&e);
    }
    let lens: Vec<(usize, bool)> = match &req.prompt {
        None => return,
        Some(PromptInput::Text(t)) => vec![(t.len(), true)],
        Some(PromptInput::Texts(ts)) => ts.iter().map(|t| (t.len(), true)).collect(),
        Some(PromptInput::Ids(ids)) => vec![(ids.len(), false)],
        Some(PromptInput::IdLists(l)) => l.iter().map(|i| (i.len(), false)).collect(),
    };
    for (len, from_text) in lens {
        let max_tokens = match prompt_max_tokens(len, req.max_tokens, MAX_MODEL_LEN, from_text) {
            Ok(m) => m,
            Err(e) => return assert_refusal(&e),
        };
        match verify_sampling(
            &req.common,
            max_tokens,
            req.logprobs,
            req.common.prompt_logprobs,
            Some(VOCAB),
        ) {
            Ok(()) => {
                assert!(max_tokens >= 1 && len as i64 + max_tokens <= MAX_MODEL_LEN as i64);
                assert!((0..=max_tokens).contains(&req.common.min_tokens));
                assert!((1..=2048).contains(&req.common.n));
            }
            Err(e) => assert_refusal(&e),
        }
    }
}

fn check_chat(req: &ChatCompletionRequest) {
    let (requested, param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => (Some(m), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    if let Err(e) = check_max_output(requested, param, MAX_MODEL_LEN) {
        return assert_refusal(&e);
    }
    // The rendered prompt's length stands in as the messages' JSON size.
    let len = Value::Array(req.messages.clone()).to_string().len();
    let max_tokens = match prompt_max_tokens(len, requested, MAX_MODEL_LEN, true) {
        Ok(m) => m,
        Err(e) => return assert_refusal(&e),
    };
    let top = if req.logprobs.unwrap_or(false) {
        req.top_logprobs.or(Some(0))
    } else {
        None
    };
    match verify_sampling(
        &req.common,
        max_tokens,
        top,
        req.common.prompt_logprobs,
        Some(VOCAB),
    ) {
        Ok(()) => assert!(max_tokens >= 1 && len as i64 + max_tokens <= MAX_MODEL_LEN as i64),
        Err(e) => assert_refusal(&e),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_bodies(v in body(), noise in "\\PC{0,4}") {
        for text in [v.to_string(), format!("{v}{noise}"), noise.clone()] {
            if let Ok(req) = serde_json::from_str::<CompletionRequest>(&text) {
                check_completion(&req);
            }
            if let Ok(req) = serde_json::from_str::<ChatCompletionRequest>(&text) {
                check_chat(&req);
            }
            let _ = serde_json::from_str::<TokenizeRequest>(&text);
            if let Ok(req) = serde_json::from_str::<DetokenizeRequest>(&text) {
                prop_assert!(v.get("tokens").is_some_and(Value::is_array));
                prop_assert!(req.tokens.len() <= text.len());
            }
        }
    }
}
