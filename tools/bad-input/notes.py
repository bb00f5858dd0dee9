"""Why llm-emu answers a bad-input case differently from vLLM 0.19: (case-name prefix, reason).
The first matching prefix wins; docs/serve.md lists the same decisions."""

COERCION = ("pydantic's lax mode coerces numeric strings, integral floats, 0/1 and 'true'/'yes' "
            "into ints and bools (and list[int] takes negative ids); llm-emu parses strictly "
            "(serde) and answers 400 Bad Request instead of guessing what was meant")
VLLM_500 = ("vLLM 0.19 fails with 500 InternalServerError (a model validator calls data.get() "
            "on a value that is not a dict, or a bool reaches an int-only path); llm-emu "
            "answers 400 Bad Request")
SAME_STATUS_OTHER_STAGE = ("same 400; vLLM's pydantic model refuses it (type 'Bad Request'), "
                           "llm-emu finds the same fault one step later, while rendering or "
                           "checking the request (type 'BadRequestError'), or the reverse")

NOTES = [
    ("route_unknown_get /v1/completions/", "Starlette redirects a trailing slash (307); llm-emu answers 404"),
    ("route_unknown_get /health/", "Starlette redirects a trailing slash (307); llm-emu answers 404"),
    ("method_POST /metrics", "vLLM mounts prometheus_client's ASGI app at /metrics, which answers any method; llm-emu: GET only (405)"),
    ("method_DELETE /metrics", "vLLM mounts prometheus_client's ASGI app at /metrics, which answers any method; llm-emu: GET only (405)"),
    ("head_health", "vLLM's /health is GET only (405 to HEAD); axum answers HEAD on every GET route"),
    ("options_preflight", "vLLM's CORSMiddleware (allow_origins '*' by default) answers CORS preflights with 200; llm-emu has no CORS support, so no cross-origin page can call it"),
    ("body_array", VLLM_500),
    ("body_string", VLLM_500),
    ("body_number", VLLM_500),
    ("body_null", VLLM_500),
    ("cmpl_logprobs=True", VLLM_500),
    ("chat_logprobs#23=1", VLLM_500),
    ("body_nan", "Python's json accepts NaN and Infinity; serde_json refuses them (400)"),
    ("body_infinity", "Python's json accepts NaN and Infinity; serde_json refuses them (400)"),
    ("body_duplicate_key", "Python's json keeps the last of duplicate keys; serde refuses a duplicate field (400)"),
    ("body_bom", "Python's json.loads(bytes) skips a UTF-8 byte-order mark; serde_json refuses it (400)"),
    ("cmpl_max_tokens='5'", COERCION), ("cmpl_max_tokens=5.0", COERCION), ("cmpl_max_tokens=True", COERCION),
    ("cmpl_n='2'", COERCION), ("cmpl_temperature='0.5'", COERCION), ("cmpl_top_k='3'", COERCION),
    ("cmpl_min_tokens='1'", COERCION), ("cmpl_echo=", COERCION), ("cmpl_ignore_eos='true'", COERCION),
    ("cmpl_stream='true'", COERCION), ("chat_max_tokens#22='2'", COERCION),
    ("cmpl_stop_token_ids=[-1]", COERCION),
    ("cmpl_max_tokens=1000000000000000000000000000000",
     "same 400; Python ints are unbounded, so vLLM's range check answers (BadRequestError); serde refuses a number past i64 while parsing (Bad Request)"),
    ("cmpl_logprobs='2'", "same 400; vLLM coerces '2' and then refuses it in its sampling checks (BadRequestError); llm-emu refuses the string while parsing (Bad Request)"),
    ("cmpl_logprobs=-1", SAME_STATUS_OTHER_STAGE),
    ("cmpl_prompt=['']", SAME_STATUS_OTHER_STAGE), ("cmpl_prompt=[[]]", SAME_STATUS_OTHER_STAGE),
    ("chat_messages#3=", SAME_STATUS_OTHER_STAGE), ("chat_messages#4=", SAME_STATUS_OTHER_STAGE),
    ("chat_messages#5=", SAME_STATUS_OTHER_STAGE), ("chat_messages#6=", SAME_STATUS_OTHER_STAGE),
    ("chat_messages#9=", SAME_STATUS_OTHER_STAGE), ("chat_chat_template_kwargs#37=", SAME_STATUS_OTHER_STAGE),
    ("chat_tools#40=", SAME_STATUS_OTHER_STAGE), ("chat_tools#41=", SAME_STATUS_OTHER_STAGE),
    ("chat_continue_and_generation_prompt", SAME_STATUS_OTHER_STAGE),
    ("detokenize_tokens_oov", "vLLM's tokenizer decodes an id past the vocabulary to ''; llm-emu refuses it (400), as vLLM's input processor does for prompts"),
    ("header_too_many", "uvicorn runs the httptools parser, where vLLM's h11 header-count limit (256) has no effect; llm-emu refuses more than 256 headers (431)"),
]


def why(name):
    for prefix, reason in NOTES:
        if name.startswith(prefix):
            return reason
    return None
