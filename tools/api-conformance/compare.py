#!/usr/bin/env python3
"""Compares two captures of capture.py (a reference vLLM server's and another server's) case by
case: status codes, content types, the JSON structure (same keys, same types), and the values
that must agree exactly between two vLLM-compatible servers given the same tokenizer and limits —
prompt token counts and ids, usage, finish reasons, error type/param/code and messages, the SSE
event sequence and framing. Generated text and ids are synthetic on both sides: only their types
(and token-id counts) are compared.

  compare.py vllm-0.19.0-qwen3-8b.json other.json [--only CASE ...]

Exit status 1 when any case differs.
"""
import argparse
import json
import sys

# Keys whose values are synthetic or instance-specific: compared by type only.
FREE = {"created", "text", "content", "root", "system_fingerprint", "created_at", "item_id",
        "call_id", "partial_json", "arguments"}
# Error messages built from pydantic's validation text (Python paths inside) are compared by
# their first line's error kind only.
PYDANTIC_TYPES = {"Bad Request"}


def id_prefix(s):
    """`cmpl-…` → `cmpl`, `resp_…` / `msg_…` → `resp` / `msg`; a bare random id → ''."""
    cut = max(s.rfind("-"), s.rfind("_"))
    return s[:cut] if cut >= 0 else ""


def same_id(a, b):
    return isinstance(b, str) and id_prefix(a) == id_prefix(b)


def cmp(a, b, path, diffs, key=None):
    if key in ("id", "request_id") and isinstance(a, str):
        if not same_id(a, b):
            diffs.append(f"{path}: id prefix {a!r} vs {b!r}")
        return
    if key in FREE or (key == "delta" and isinstance(a, str)):
        if type(a) is not type(b) and not (a is None and b is None):
            diffs.append(f"{path}: type {type(a).__name__} vs {type(b).__name__}")
        return
    if key == "token_ids" and isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            diffs.append(f"{path}: {len(a)} token ids vs {b if not isinstance(b, list) else len(b)}")
        return
    if isinstance(a, dict):
        if not isinstance(b, dict):
            diffs.append(f"{path}: object vs {type(b).__name__}")
            return
        if a.get("type") in PYDANTIC_TYPES and "message" in a:
            first = lambda m: m.split("\n", 2)[1].split("'msg'")[0] if "\n" in m else m  # noqa: E731
            if first(a["message"]) != first(b.get("message", "")):
                diffs.append(f"{path}.message: validation kind {first(a['message'])!r} vs {first(b.get('message', ''))!r}")
            a = {k: v for k, v in a.items() if k != "message"}
            b = {k: v for k, v in b.items() if k != "message"}
        for k in sorted(set(a) | set(b)):
            if k not in b:
                diffs.append(f"{path}.{k}: missing")
            elif k not in a:
                diffs.append(f"{path}.{k}: extra")
            else:
                cmp(a[k], b[k], f"{path}.{k}", diffs, k)
        return
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            diffs.append(f"{path}: list of {len(a)} vs {len(b) if isinstance(b, list) else type(b).__name__}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            cmp(x, y, f"{path}[{i}]", diffs)
        return
    if a != b:
        diffs.append(f"{path}: {a!r} vs {b!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    ref, oth = json.load(open(a.reference)), json.load(open(a.other))
    bad = 0
    for name, r in ref["cases"].items():
        if a.only and name not in a.only:
            continue
        o = oth["cases"].get(name)
        diffs = []
        if o is None:
            diffs.append("not captured")
        else:
            for k in ("status", "content_type", "raw_framing_ok"):
                if r.get(k) != o.get(k):
                    diffs.append(f"{k}: {r.get(k)!r} vs {o.get(k)!r}")
            for k in ("json", "events", "text"):
                if k in r or k in o:
                    cmp(r.get(k), o.get(k), k, diffs)
        print(f"{'OK  ' if not diffs else 'DIFF'} {name}")
        for d in diffs[:12]:
            print(f"       {d}")
        bad += bool(diffs)
    print(f"{bad} case(s) differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
