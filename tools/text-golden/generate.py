#!/usr/bin/env python3
"""Golden cases for crates/text, produced by the code vLLM 0.19 itself runs.

Run with the vLLM reference venv (vLLM 0.19.0, transformers, tokenizers):

    ~/.cache/vllm-reference/venv/bin/python tools/text-golden/generate.py QWEN3_DIR

QWEN3_DIR holds Qwen3's tokenizer.json + tokenizer_config.json (tools/fetch-test-tokenizers.sh
puts them in ~/.cache/llm-emu/qwen3). The Llama 3.1 tokenizer is the one embedded in
crates/text/data (meta-llama/Llama-3.1-8B-Instruct's files). Writes
crates/text/tests/golden/text-golden.json:

- encode: `tokenizer(text, add_special_tokens=...)` ids; decode: `tokenizer.decode(ids, ...)`;
- chat: vLLM's `parse_chat_messages` (text parts) + content-format detection, then
  `tokenizer.apply_chat_template(tokenize=False)`, and the prompt ids vLLM's chat endpoint
  uses (`add_special_tokens=False`);
- detok: vLLM's v1 `FastIncrementalDetokenizer` fed one token at a time with
  `get_next_output_text(finished, delta=True)` after each, as the output processor calls it.
"""
import gzip
import json
import os
import random
import sys
import tempfile
from types import SimpleNamespace

from transformers import AutoTokenizer
from vllm.entrypoints.chat_utils import parse_chat_messages
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionToolsParam
from vllm.renderers.hf import _detect_content_format
from vllm.v1.engine.detokenizer import FastIncrementalDetokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "crates", "text", "data")
OUT = os.path.join(ROOT, "crates", "text", "tests", "golden", "text-golden.json")

TEXTS = [
    "Hello, world!",
    "",
    " leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\nmany",
    "Ünïcödé façade naïve café — “quotes” … ellipsis",
    "日本語のテキストと中文文本，还有한국어.",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "code: def f(x):\n    return x**2  # comment\n",
    "numbers 1234567890 3.14159 -42 1e10",
    "URL https://example.com/path?q=1&r=2#frag",
    "Don't I'm we've they're it's isn't .,!? ' quote",
    "<|begin_of_text|>special in text<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>",
    "   ",
    "a" * 50,
    "Zero\u200bwidth and \u00a0nbsp and combining e\u0301",
]

MESSAGES = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First part."},
                {"type": "text", "text": "Second part with emoji 😀."},
            ],
        }
    ],
    [
        {"role": "system", "content": "  padded system  "},
        {"role": "user", "content": "Unicode: 日本語 and ünïcödé\n\nnew paragraph"},
    ],
    [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Autumn moonlight"},
    ],
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Météo actuelle — current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. 東京"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
                },
                "required": ["city"],
            },
        },
    },
    {"function": {"parameters": {"type": "object", "properties": {}}, "name": "now", "strict": True}},
]

TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "21 °C, sunny"},
]

BUILTIN_TOOL_CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "brave_search", "arguments": "{\"query\": \"weather Paris\"}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "21 °C, sunny"},
]

# A template written for these tests: Jinja features chat templates lean on (trim/lstrip
# blocks, loop controls, namespace, slicing, Python string methods, tojson options, kwargs).
CUSTOM_TEMPLATE = """{{ bos_token }}
{%- set ns = namespace(n=0, sys='') %}
{%- if messages[0]['role'] == 'system' %}{% set ns.sys = messages[0]['content'].strip() %}{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}
{% if ns.sys %}
SYS[{{ ns.sys.upper() }}|{{ ns.sys.split(' ') | length }}]
{% endif %}
{% for m in msgs %}
    {% if m.role == 'assistant' and loop.last and not add_generation_prompt %}{% continue %}{% endif %}
    {% set ns.n = ns.n + 1 %}
    <{{ m.role }}{{ ' last' if loop.last }}>{{ m.content | trim }}{{ '|' + m.content.replace('a', 'A').lstrip('Hh') if m.content is string }}
    {% if ns.n > 5 %}{% break %}{% endif %}
{% endfor %}
{% if tools %}
{% for t in tools %}{{ t | tojson(indent=2) }}
{{ t.function | tojson }}
{{ t.function.parameters.properties | tojson(ensure_ascii=True, sort_keys=True) }}
{{ t | tojson(separators=(',', ':')) }}
{% for k, v in t.function.parameters.properties.items() %}{{ k }}={{ v['type'] }};{% endfor %}
{% endfor %}
{% endif %}
{{ 'n=' ~ ns.n ~ ' extra=' ~ (extra_var if extra_var is defined else 'none') }}
[{{ add_generation_prompt }}|{{ documents }}|{{ msgs[0] }}|{{ ["it's", 'q"', 1, 2.5, none, true] }}]
{%- if add_generation_prompt %}<assistant>{% endif %}
"""

OPTIONS = [
    {"add_generation_prompt": True},
    {"add_generation_prompt": False},
]


def load(path):
    return AutoTokenizer.from_pretrained(path)


def fake_model_config():
    return SimpleNamespace(multimodal_config=None, hf_config=SimpleNamespace(), allowed_local_media_path="", allowed_media_domains=None)


def chat_case(tok, messages, opts):
    template = opts.get("chat_template") or tok.chat_template
    # The chat endpoint passes tools through its pydantic model: [tool.model_dump() ...].
    tools = opts.get("tools")
    if tools is not None:
        tools = [ChatCompletionToolsParam(**t).model_dump() for t in tools]
    fmt = _detect_content_format(template, default="string")
    conversation, _, _ = parse_chat_messages(messages, fake_model_config(), fmt)
    kwargs = dict(opts.get("chat_template_kwargs", {}))
    rendered = tok.apply_chat_template(
        conversation,
        tools=tools,
        chat_template=opts.get("chat_template"),
        add_generation_prompt=opts.get("add_generation_prompt", True),
        continue_final_message=opts.get("continue_final_message", False),
        tokenize=False,
        **kwargs,
    )
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    return {
        "messages": messages,
        "options": opts,
        "content_format": fmt,
        "rendered": rendered,
        "prompt_ids": ids,
    }


def detok_case(tok, prompt_ids, output_ids, params, stop_terminated=False):
    sp = SimpleNamespace(
        stop=params.get("stop", []),
        min_tokens=params.get("min_tokens", 0),
        include_stop_str_in_output=params.get("include_stop_str_in_output", False),
        skip_special_tokens=params.get("skip_special_tokens", True),
        spaces_between_special_tokens=params.get("spaces_between_special_tokens", True),
    )
    req = SimpleNamespace(request_id="golden", prompt_token_ids=list(prompt_ids), sampling_params=sp)
    d = FastIncrementalDetokenizer(tok, req)
    steps = []
    stop = None
    for i, t in enumerate(output_ids):
        last = i == len(output_ids) - 1
        st = stop_terminated and last
        stop = d.update([t], st)
        finished = stop is not None or st
        delta = d.get_next_output_text(finished, True)
        steps.append({"delta": delta, "stop": stop})
        if finished:
            break
    flush = d.get_next_output_text(True, True)
    return {
        "prompt_ids": list(prompt_ids),
        "output_ids": list(output_ids),
        "params": params,
        "stop_terminated": stop_terminated,
        "steps": steps,
        "flush": flush,
        "text": d.output_text,
    }


def tokenizer_cases(name, tok, special_ids):
    enc = []
    for t in TEXTS:
        for add in (True, False):
            enc.append({"text": t, "add_special_tokens": add, "ids": tok(t, add_special_tokens=add)["input_ids"]})
    dec = []
    rng = random.Random(7)
    for t in TEXTS[:8]:
        ids = tok(t, add_special_tokens=True)["input_ids"]
        for skip in (True, False):
            dec.append({"ids": ids, "skip_special_tokens": skip, "text": tok.decode(ids, skip_special_tokens=skip)})
    chat = [chat_case(tok, m, o) for m in MESSAGES for o in OPTIONS]
    chat.append(chat_case(tok, MESSAGES[4], {"add_generation_prompt": False, "continue_final_message": True}))
    chat.append(chat_case(tok, TOOL_CHAT, {"add_generation_prompt": True, "tools": TOOLS}))
    for m in MESSAGES:
        chat.append(chat_case(tok, m, {"add_generation_prompt": True, "chat_template": CUSTOM_TEMPLATE, "tools": TOOLS}))
    chat.append(chat_case(tok, MESSAGES[4], {"add_generation_prompt": False, "chat_template": CUSTOM_TEMPLATE, "chat_template_kwargs": {"extra_var": "kw"}}))
    if name == "qwen3":
        chat.append(chat_case(tok, MESSAGES[1], {"add_generation_prompt": True, "chat_template_kwargs": {"enable_thinking": False}}))
    if name == "llama3_1":
        # Llama 3.1's system header: the date from chat_template_kwargs, tools in the system
        # message, and built-in tools (ipython environment, <|python_tag|> calls, <|eom_id|>).
        chat.append(chat_case(tok, MESSAGES[1], {"add_generation_prompt": True, "chat_template_kwargs": {"date_string": "01 Jan 2025"}}))
        chat.append(chat_case(tok, TOOL_CHAT, {"add_generation_prompt": True, "tools": TOOLS, "chat_template_kwargs": {"tools_in_user_message": False}}))
        chat.append(chat_case(tok, BUILTIN_TOOL_CHAT, {"add_generation_prompt": True, "chat_template_kwargs": {"builtin_tools": ["brave_search", "wolfram_alpha"]}}))

    prompt = tok("The quick brown fox", add_special_tokens=True)["input_ids"]
    detok = []
    for t in TEXTS[4:11]:
        out = tok(t, add_special_tokens=False)["input_ids"]
        detok.append(detok_case(tok, prompt, out, {}))
    multi = tok("café 😀 日本語 👨‍👩‍👧‍👦 done. STOP here, then more", add_special_tokens=False)["input_ids"]
    detok.append(detok_case(tok, prompt, multi, {"stop": ["STOP"]}))
    detok.append(detok_case(tok, prompt, multi, {"stop": ["STOP"], "include_stop_str_in_output": True}))
    detok.append(detok_case(tok, prompt, multi, {"stop": ["日本", "done"]}))
    detok.append(detok_case(tok, prompt, multi, {"stop": ["then more", "xyz-not-there"]}))
    detok.append(detok_case(tok, prompt, multi, {"stop": ["café"], "min_tokens": 4}))
    detok.append(detok_case(tok, prompt, multi, {"stop": ["👨"]}))
    detok.append(detok_case(tok, [], multi, {}))
    # Special tokens in the output.
    sp = sorted(special_ids)[:3]
    mixed = tok("Hi", add_special_tokens=False)["input_ids"] + [sp[0], sp[1]] + tok(" there", add_special_tokens=False)["input_ids"] + [sp[2]]
    for skip in (True, False):
        for spaces in (True, False):
            detok.append(detok_case(tok, prompt, mixed, {"skip_special_tokens": skip, "spaces_between_special_tokens": spaces}))
    eos = tok.eos_token_id
    detok.append(detok_case(tok, prompt, tok(" bye", add_special_tokens=False)["input_ids"] + [eos], {"skip_special_tokens": False}, stop_terminated=True))
    detok.append(detok_case(tok, prompt, tok(" bye", add_special_tokens=False)["input_ids"] + [eos], {"skip_special_tokens": False, "include_stop_str_in_output": True}, stop_terminated=True))
    # Random ids, byte-level fragments included (invalid UTF-8 on their own).
    base = tok.backend_tokenizer.get_vocab_size(with_added_tokens=False)
    for k in range(3):
        ids = [rng.randrange(base) for _ in range(40)]
        detok.append(detok_case(tok, prompt, ids, {"stop": ["e"]} if k == 2 else {}))
    return {"encode": enc, "decode": dec, "chat": chat, "detok": detok,
            "eos_token_id": tok.eos_token_id, "vocab_size": len(tok)}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    qwen_dir = sys.argv[1]
    out = {"generator": "tools/text-golden/generate.py", "versions": {}}
    import tokenizers, transformers, vllm
    out["versions"] = {"vllm": vllm.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    with tempfile.TemporaryDirectory() as llama_dir:
        with gzip.open(os.path.join(DATA, "llama3_1-tokenizer.json.gz"), "rb") as f, open(os.path.join(llama_dir, "tokenizer.json"), "wb") as g:
            g.write(f.read())
        for name in ("tokenizer_config.json", "generation_config.json"):
            with open(os.path.join(DATA, "llama3_1-" + name), "rb") as f, open(os.path.join(llama_dir, name), "wb") as g:
                g.write(f.read())
        llama = load(llama_dir)
        out["llama3_1"] = tokenizer_cases("llama3_1", llama, llama.all_special_ids + [128006, 128007])
    qwen = load(qwen_dir)
    out["qwen3"] = tokenizer_cases("qwen3", qwen, qwen.all_special_ids)
    with open(OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
