"""The bad-input matrix: requests a client can get wrong (route, method, API key, content type,
body syntax, each request field's type and range), as (name, method, path, headers, body).

`headers` are applied over the defaults of `run.py` (`Content-Type: application/json` and the
matrix's API key); a value of None removes the header. `body` is a dict/list/scalar (sent as
JSON), a str (sent as UTF-8 as it is), bytes (sent as they are) or None (no body).

The expected answers live in cases.json, which `run.py --update` writes from live servers: the
`vllm` column from the vLLM 0.19 reference, the `llm_emu` column from llm-emu, and a `why` for
every case where they differ (NOTES below)."""

M = "matrix-model"
API_KEY = "sk-matrix"

CMPL = "/v1/completions"
CHAT = "/v1/chat/completions"
TOK = "/tokenize"
DETOK = "/detokenize"
USER = [{"role": "user", "content": "Hello"}]


def cmpl(**kw):
    return {"model": M, "prompt": "Hello", "max_tokens": 1, **kw}


def chat(**kw):
    return {"model": M, "messages": USER, "max_tokens": 1, **kw}


CASES = []


def case(name, method, path, body=None, headers=None):
    assert name not in {c[0] for c in CASES}, name
    CASES.append((name, method, path, headers or {}, body))


# --- routes and methods
for path in ["/", "/v1", "/v1/", "/v1/completion", "/v1/chat", "/v1/embeddings", "/v2/completions",
             "/v1/completions/", "/health/", "/tokenize/x", "/%00", "/v1/../health"]:
    case(f"route_unknown_get {path}", "GET", path)
for path in [CMPL, CHAT, TOK, DETOK]:
    for method in ["GET", "PUT", "DELETE", "PATCH"]:
        case(f"method_{method} {path}", method, path, cmpl() if method != "GET" else None)
for path in ["/v1/models", "/health", "/version", "/load", "/metrics"]:
    case(f"method_POST {path}", "POST", path, {})
    case(f"method_DELETE {path}", "DELETE", path)
case("head_health", "HEAD", "/health")
for path in [CMPL, "/v1/models", "/health"]:
    case(f"options {path}", "OPTIONS", path, headers={"authorization": None})
    case(f"options_preflight {path}", "OPTIONS", path,
         headers={"authorization": None, "origin": "http://example.com",
                  "access-control-request-method": "POST"})

# --- API key
for label, value in [("missing", None), ("wrong", "Bearer nope"), ("scheme_basic", "Basic sk-matrix"),
                     ("lowercase_scheme", "bearer sk-matrix"), ("no_token", "Bearer"),
                     ("empty_token", "Bearer "), ("two_spaces", "Bearer  sk-matrix"),
                     ("token_only", "sk-matrix"), ("trailing_space", "Bearer sk-matrix "),
                     ("prefix", "Bearer sk-matri"), ("longer", "Bearer sk-matrixx")]:
    case(f"auth_{label} completions", "POST", CMPL, cmpl(), headers={"authorization": value})
case("auth_missing models", "GET", "/v1/models", headers={"authorization": None})
case("auth_missing health", "GET", "/health", headers={"authorization": None})
case("auth_missing tokenize", "POST", TOK, {"model": M, "prompt": "hi"}, headers={"authorization": None})
case("auth_missing unknown_v1", "GET", "/v1/nothing", headers={"authorization": None})

# --- content type
for label, ct in [("text_plain", "text/plain"), ("missing", None), ("form", "application/x-www-form-urlencoded"),
                  ("multipart", "multipart/form-data; boundary=x"), ("charset", "application/json; charset=utf-8"),
                  ("upper", "APPLICATION/JSON"), ("space_before_semicolon", "application/json ; charset=utf-8"),
                  ("json_suffix", "application/vnd.api+json"), ("ndjson", "application/x-ndjson"),
                  ("empty", "")]:
    for path, body in [(CMPL, cmpl()), (CHAT, chat()), (TOK, {"model": M, "prompt": "hi"}),
                       (DETOK, {"model": M, "tokens": [1000]})]:
        case(f"ctype_{label} {path}", "POST", path, body, headers={"content-type": ct})
case("ctype_missing malformed", "POST", CMPL, '{"prompt": ', headers={"content-type": None})
case("ctype_missing empty_body", "POST", CMPL, None, headers={"content-type": None})
case("ctype_text_plain malformed", "POST", CMPL, '{"prompt": ', headers={"content-type": "text/plain"})

# --- body syntax
for label, raw in [("empty", ""), ("truncated", '{"model": "matrix-model", "prompt": '),
                   ("not_json", "hello"), ("array", "[]"), ("string", '"x"'), ("number", "1"),
                   ("null", "null"), ("trailing_garbage", '{"prompt": "x", "max_tokens": 1} x'),
                   ("single_quotes", "{'prompt': 'x'}"), ("nan", '{"prompt": "x", "max_tokens": 1, "temperature": NaN}'),
                   ("infinity", '{"prompt": "x", "max_tokens": 1, "temperature": Infinity}'),
                   ("duplicate_key", '{"prompt": "x", "max_tokens": 1, "max_tokens": 2}'),
                   ("bom", '\ufeff{"prompt": "x", "max_tokens": 1}'),
                   ("deep_nesting", '{"prompt": ' + "[" * 600 + "]" * 600 + "}")]:
    case(f"body_{label} completions", "POST", CMPL, raw)
case("body_invalid_utf8 completions", "POST", CMPL, b'{"prompt": "\xff\xfe", "max_tokens": 1}')
case("body_invalid_utf8 chat", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\xc3"}]}')
case("body_empty chat", "POST", CHAT, "")
case("body_array chat", "POST", CHAT, "[]")
case("body_empty tokenize", "POST", TOK, "")

# --- completion fields: (field, value) pairs, each in an otherwise valid request
CMPL_FIELDS = [
    ("model", 1), ("model", None), ("model", "other-model"), ("model", ""),
    ("prompt", 5), ("prompt", {"a": 1}), ("prompt", []), ("prompt", [""]), ("prompt", [[]]),
    ("prompt", ["a", 1]), ("prompt", [1, "a"]), ("prompt", [[1], "a"]), ("prompt", [-1]),
    ("prompt", [1.5]), ("prompt", [10_000_000]), ("prompt", None), ("prompt", True),
    ("prompt", "hello " * 50000),
    ("max_tokens", "5"), ("max_tokens", "five"), ("max_tokens", 5.0), ("max_tokens", 5.5),
    ("max_tokens", True), ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", 10**7),
    ("max_tokens", 10**30), ("max_tokens", [1]),
    ("n", 0), ("n", -1), ("n", "2"), ("n", 1.5), ("n", 100000),
    ("temperature", -0.1), ("temperature", "hot"), ("temperature", "0.5"), ("temperature", 1e9),
    ("temperature", None),
    ("top_p", 0), ("top_p", 1.5), ("top_p", -1), ("top_p", "x"),
    ("top_k", -2), ("top_k", 0), ("top_k", 1.5), ("top_k", "3"),
    ("min_p", -0.5), ("min_p", 2),
    ("frequency_penalty", 3), ("frequency_penalty", -3), ("presence_penalty", 2.5),
    ("repetition_penalty", 0), ("repetition_penalty", -1),
    ("min_tokens", -1), ("min_tokens", 5), ("min_tokens", "1"),
    ("stop", 1), ("stop", [1]), ("stop", [["a"]]), ("stop", ""), ("stop", [""]),
    ("stop_token_ids", 5), ("stop_token_ids", ["a"]), ("stop_token_ids", [-1]),
    ("seed", "x"), ("seed", 1.5), ("seed", 2**70), ("seed", -1),
    ("logprobs", -1), ("logprobs", 21), ("logprobs", True), ("logprobs", "2"), ("logprobs", 1.5),
    ("echo", "yes"), ("echo", 1), ("ignore_eos", "true"), ("ignore_eos", "maybe"),
    ("stream", "true"), ("stream", "x"), ("stream", 2),
    ("stream_options", {"include_usage": True}), ("stream_options", {}),
    ("stream_options", "x"), ("stream_options", {"include_usage": None}),
    ("priority", "high"), ("priority", 1.5), ("request_id", 5), ("cache_salt", 5), ("cache_salt", ""),
    ("return_token_ids", "x"), ("skip_special_tokens", "x"), ("add_special_tokens", 3),
    ("best_of", 2), ("best_of", 0), ("suffix", "x"), ("user", 5), ("logit_bias", {"x": 1}),
    ("logit_bias", {"5": 200}), ("response_format", {"type": "nope"}), ("n_unknown_field", 1),
    ("truncate_prompt_tokens", -5), ("truncate_prompt_tokens", 0),
    ("prompt_logprobs", -2), ("prompt_logprobs", 21),
    ("include_stop_str_in_output", "x"), ("spaces_between_special_tokens", "x"),
]
for field, value in CMPL_FIELDS:
    body = cmpl(**{field: value})
    if value is None and field in ("prompt",):
        body = {k: v for k, v in body.items() if k != field}
    case(f"cmpl_{field}={repr(value)[:40]}", "POST", CMPL, body)
case("cmpl_stream_options_stream_false", "POST", CMPL, cmpl(stream=False, stream_options={"include_usage": True}))
case("cmpl_stream_options_with_stream", "POST", CMPL, cmpl(stream=True, stream_options={"include_usage": True}))
case("cmpl_stream_options_bad_flag", "POST", CMPL, cmpl(stream=True, stream_options={"include_usage": "x"}))
case("cmpl_min_over_max", "POST", CMPL, cmpl(max_tokens=2, min_tokens=3))
case("cmpl_prompt_plus_max_over_len", "POST", CMPL, cmpl(prompt=[1000] * 40000, max_tokens=2000))
case("cmpl_no_model", "POST", CMPL, {"prompt": "x", "max_tokens": 1})
case("cmpl_n_stream", "POST", CMPL, cmpl(n=2, stream=True))

# --- chat fields
CHAT_FIELDS = [
    ("messages", None), ("messages", "hi"), ("messages", []), ("messages", [1]), ("messages", ["hi"]),
    ("messages", [{}]), ("messages", [{"content": "x"}]), ("messages", [{"role": "user"}]),
    ("messages", [{"role": "nobody", "content": "x"}]), ("messages", [{"role": "user", "content": 5}]),
    ("messages", [{"role": "user", "content": [{"type": "bogus", "text": "x"}]}]),
    ("messages", [{"role": "user", "content": [{"type": "text"}]}]),
    ("messages", [{"role": "user", "content": [{"text": "x"}]}]),
    ("messages", [{"role": "user", "content": None}]),
    ("messages", [{"role": "system", "content": "x"}]),
    ("messages", [{"role": "assistant", "content": "x"}]),
    ("messages", [{"role": "user", "content": "hello " * 50000}]),
    ("max_completion_tokens", 0), ("max_completion_tokens", "x"), ("max_completion_tokens", -3),
    ("max_completion_tokens", 10**7), ("max_tokens", 0), ("max_tokens", "2"),
    ("logprobs", 1), ("logprobs", "x"), ("top_logprobs", 5), ("top_logprobs", 21), ("top_logprobs", -1),
    ("n", 0), ("n", "x"), ("temperature", -1), ("top_p", 0), ("top_k", -5),
    ("stream_options", {"include_usage": True}), ("stream_options", {}),
    ("add_generation_prompt", "x"), ("continue_final_message", True),
    ("chat_template_kwargs", "x"), ("chat_template_kwargs", {"enable_thinking": False}),
    ("chat_template", 5), ("tools", "x"), ("tools", [{"type": "function"}]),
    ("tool_choice", "required"), ("tool_choice", "bogus"), ("response_format", {"type": "json_object"}),
    ("stop", 1), ("seed", "x"), ("model", "other-model"), ("model", 1), ("echo", True),
    ("documents", "x"), ("parallel_tool_calls", "x"),
]
for i, (field, value) in enumerate(CHAT_FIELDS):
    body = chat(**{field: value})
    if value is None:
        body = {k: v for k, v in body.items() if k != field}
    case(f"chat_{field}#{i}={repr(value)[:30]}", "POST", CHAT, body)
case("chat_continue_and_generation_prompt", "POST", CHAT,
     chat(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
          continue_final_message=True, add_generation_prompt=True))
case("chat_stream_options_stream_false", "POST", CHAT, chat(stream=False, stream_options={"include_usage": True}))

# --- tokenizer endpoints
for label, body in [("missing_prompt", {"model": M}), ("prompt_int", {"model": M, "prompt": 5}),
                    ("prompt_list", {"model": M, "prompt": ["a"]}), ("both", {"model": M, "prompt": "a", "messages": USER}),
                    ("messages_bad", {"model": M, "messages": "x"}), ("unknown_model", {"model": "other-model", "prompt": "a"}),
                    ("add_special_str", {"model": M, "prompt": "a", "add_special_tokens": "x"}),
                    ("return_token_strs", {"model": M, "prompt": "a", "return_token_strs": "x"})]:
    case(f"tokenize_{label}", "POST", TOK, body)
for label, body in [("missing_tokens", {"model": M}), ("tokens_str", {"model": M, "tokens": "abc"}),
                    ("tokens_strs", {"model": M, "tokens": ["a"]}), ("tokens_negative", {"model": M, "tokens": [-1]}),
                    ("tokens_float", {"model": M, "tokens": [1.5]}), ("tokens_oov", {"model": M, "tokens": [10_000_000]}),
                    ("tokens_empty", {"model": M, "tokens": []}), ("unknown_model", {"model": "other-model", "tokens": [1]})]:
    case(f"detokenize_{label}", "POST", DETOK, body)

# --- headers
case("header_request_id_long", "POST", CMPL, cmpl(), headers={"x-request-id": "r" * 4000})
case("header_many", "GET", "/health", headers={f"x-h{i}": "v" for i in range(200)})
case("header_too_many", "GET", "/health", headers={f"x-h{i}": "v" for i in range(300)})
case("header_huge", "GET", "/health", headers={"x-big": "v" * 100_000})


def kind(status, body):
    """The error's type as the matrix compares it: `error.type` of vLLM's ErrorResponse,
    "detail" for FastAPI's `{"detail": ...}`, the string of `{"error": "..."}`, "" otherwise."""
    if isinstance(body, dict):
        e = body.get("error")
        if isinstance(e, dict):
            return str(e.get("type"))
        if isinstance(e, str):
            return e
        if "detail" in body:
            return "detail"
    return ""
