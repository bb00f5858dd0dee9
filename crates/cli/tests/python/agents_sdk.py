"""Structured output and tool calls of `llm-emu serve`, through the official `openai` SDK (and
LangChain when `langchain-openai` is installed).

Usage: agents_sdk.py BASE_URL MODEL
Exits non-zero on the first failed check; prints one line per check. Every JSON document the
server generates is validated against its schema with the `jsonschema` package.
"""

import json
import sys
from enum import Enum
from typing import Optional

import jsonschema
import openai
from pydantic import BaseModel, Field

BASE, MODEL = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE, api_key="unused")


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


class Colour(str, Enum):
    red = "red"
    green = "green"


class Address(BaseModel):
    street: str = Field(min_length=3, max_length=40)
    zip_code: str = Field(pattern=r"^\d{5}$")


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=120)
    height_m: float = Field(gt=0.5, lt=2.5)
    colour: Colour
    nickname: Optional[str] = None
    address: Address
    friends: list[str] = Field(min_length=1, max_length=3)
    active: bool


def chat_parse(**kw):
    """`client.beta.chat.completions.parse` where the SDK has it, else `chat.completions.parse`."""
    beta = getattr(getattr(client, "beta", None), "chat", None)
    parse = beta.completions.parse if beta is not None else client.chat.completions.parse
    return parse(**kw)


MSG = [{"role": "user", "content": "Describe someone."}]

# 1. parse() with a pydantic model: the SDK sends response_format json_schema (strict) and
#    parses the reply into the model.
schema = Person.model_json_schema()
for seed in range(5):
    r = chat_parse(model=MODEL, messages=MSG, response_format=Person, max_tokens=500, seed=seed)
    msg = r.choices[0].message
    check(f"parse seed={seed}", isinstance(msg.parsed, Person), msg.content)
    jsonschema.validate(json.loads(msg.content), schema)
    check(f"finish stop seed={seed}", r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)

# 2. The same seed gives the same document; another seed another one.
a = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=500, seed=7,
                                   response_format={"type": "json_schema", "json_schema": {
                                       "name": "p", "schema": schema, "strict": True}})
b = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=500, seed=7,
                                   response_format={"type": "json_schema", "json_schema": {
                                       "name": "p", "schema": schema, "strict": True}})
check("same seed same document", a.choices[0].message.content == b.choices[0].message.content)
t1 = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=12, seed=3)
t2 = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=12, seed=3)
t3 = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=12, seed=4)
check("same seed same text", t1.choices[0].text == t2.choices[0].text, t1.choices[0].text)
check("other seed other text", t1.choices[0].text != t3.choices[0].text, t3.choices[0].text)

# 3. json_object: any JSON object.
r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=200,
                                   response_format={"type": "json_object"})
check("json_object", isinstance(json.loads(r.choices[0].message.content), dict))

# 4. max_tokens shorter than the document: truncated text, finish_reason "length".
r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=5,
                                   response_format={"type": "json_schema", "json_schema": {
                                       "name": "p", "schema": schema}})
check("truncated by max_tokens", r.choices[0].finish_reason == "length"
      and r.usage.completion_tokens == 5, r.choices[0])

# 5. vLLM's structured_outputs: choice and regex, through extra_body.
r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=20,
                                   extra_body={"structured_outputs": {"choice": ["yes", "no"]}})
check("choice", r.choices[0].message.content in ("yes", "no"), r.choices[0].message.content)
r = client.completions.create(model=MODEL, prompt="Code:", max_tokens=20,
                              extra_body={"structured_outputs": {"regex": r"[A-Z]{3}-\d{4}"}})
import re  # noqa: E402
check("regex", re.fullmatch(r"[A-Z]{3}-\d{4}", r.choices[0].text) is not None, r.choices[0].text)

# 5b. A spread of schema features through structured_outputs.json, 10 seeds each, validated
#     with format checking.
SCHEMAS = {
    "formats": {"type": "object", "properties": {
        "email": {"type": "string", "format": "email"},
        "ip4": {"type": "string", "format": "ipv4"},
        "ip6": {"type": "string", "format": "ipv6"},
        "id": {"type": "string", "format": "uuid"},
        "day": {"type": "string", "format": "date"}},
        "required": ["email", "ip4", "ip6", "id", "day"]},
    "arrays": {"type": "object", "properties": {
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                 "items": False, "minItems": 2},
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number",
                 "minimum": -1, "maximum": 1}, "minItems": 1, "maxItems": 2}, "maxItems": 2},
        "set": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True,
                "minItems": 3}},
        "required": ["pair", "grid", "set"]},
    "combinators": {"type": "object", "properties": {
        "one": {"oneOf": [{"type": "integer", "minimum": 10}, {"type": "string",
                "maxLength": 0}]},
        "all": {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}},
                "required": ["x"]}, {"properties": {"y": {"const": 1}}, "required": ["y"]}]},
        "map": {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 1},
        "old": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1}},
        "required": ["one", "all", "map"]},
    "recursive": {"$defs": {"Node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        "required": ["v"]}}, "$ref": "#/$defs/Node"},
}
for name, sch in SCHEMAS.items():
    for seed in range(10):
        r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=1000, seed=seed,
                                           extra_body={"structured_outputs": {"json": sch}})
        doc = json.loads(r.choices[0].message.content)
        fc = jsonschema.FormatChecker()
        if name == "combinators":
            # Draft 4's boolean exclusiveMinimum is read by the draft 4 validator only.
            props = sch["properties"]
            rest = dict(sch, properties={k: v for k, v in props.items() if k != "old"})
            jsonschema.Draft202012Validator(rest, format_checker=fc).validate(doc)
            old = {"type": "object", "properties": {"old": props["old"]}}
            jsonschema.Draft4Validator(old, format_checker=fc).validate(doc)
        else:
            jsonschema.Draft202012Validator(sch, format_checker=fc).validate(doc)
    check(f"schema {name} (10 seeds)", True)

# 6. tools with tool_choice "required" and a named function.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
        },
    },
}
PARAMS = WEATHER["function"]["parameters"]
for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
    r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=300,
                                       tools=[WEATHER], tool_choice=choice)
    m = r.choices[0].message
    check(f"tool_calls ({choice if isinstance(choice, str) else 'named'})",
          m.tool_calls and m.tool_calls[0].function.name == "get_weather"
          and m.tool_calls[0].id.startswith("chatcmpl-tool-"), m)
    jsonschema.validate(json.loads(m.tool_calls[0].function.arguments), PARAMS)
    want = "tool_calls" if choice == "required" else "stop"
    check(f"finish_reason {want}", r.choices[0].finish_reason == want, r.choices[0].finish_reason)

# 7. Streamed tool calls assembled as clients assemble them ("auto": the server runs with
#    --tool-call-probability 1).
r = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=300, tools=[WEATHER])
m = r.choices[0].message
check("auto tool_calls", m.tool_calls and r.choices[0].finish_reason == "tool_calls", r)
jsonschema.validate(json.loads(m.tool_calls[0].function.arguments), PARAMS)
for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}, "auto"):
    calls, finish = {}, None
    for chunk in client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=300,
                                                tools=[WEATHER], tool_choice=choice, stream=True):
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                c["id"] = tc.id
            if tc.function and tc.function.name:
                c["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                c["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    check("streamed call", len(calls) == 1 and calls[0]["name"] == "get_weather"
          and calls[0]["id"].startswith("chatcmpl-tool-"), calls)
    jsonschema.validate(json.loads(calls[0]["arguments"]), PARAMS)
    want = "stop" if isinstance(choice, dict) else "tool_calls"
    check(f"streamed finish {want}", finish == want, finish)

# 8. LangChain, when installed.
try:
    from langchain_openai import ChatOpenAI
except ImportError:
    print("skip langchain: langchain-openai is not installed")
else:
    llm = ChatOpenAI(model=MODEL, base_url=BASE, api_key="unused", max_tokens=500)
    p = llm.with_structured_output(Person).invoke("Describe someone.")
    check("langchain with_structured_output", isinstance(p, Person), p)

    def get_weather(city: str, unit: str) -> str:
        """Weather in a city."""
        return "sunny"

    ai = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather?")
    check("langchain bind_tools", ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
          and isinstance(ai.tool_calls[0]["args"].get("city"), str), ai)

print("all checks passed")
