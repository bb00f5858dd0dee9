#!/usr/bin/env python3
"""Sends every case of cases.py to an OpenAI-compatible server and records what came back
(status, content type, JSON body or the SSE events), as one JSON file.

  capture.py --base-url http://127.0.0.1:8100 --model Qwen/Qwen3-8B --out vllm.json
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

from cases import CASES, MODEL


def subst(body, model):
    if isinstance(body, bytes):
        return body.replace(MODEL.encode(), model.encode())
    if isinstance(body, dict):
        return {k: subst(v, model) for k, v in body.items()}
    if isinstance(body, list):
        return [subst(v, model) for v in body]
    return model if body == MODEL else body


def send(base, method, path, body, model, api_key=None):
    data = None
    headers = {}
    if body is not None:
        body = subst(body, model)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=60)
        status, ctype, raw = resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as e:
        status, ctype, raw = e.code, e.headers.get("content-type", ""), e.read()
    rec = {"status": status, "content_type": ctype.split(";")[0].strip()}
    text = raw.decode("utf-8", errors="replace")
    if rec["content_type"] == "text/event-stream":
        events = []
        for block in text.split("\n\n"):
            if not block.strip():
                continue
            # Anthropic's and the Responses API's streams name each event (`event: NAME`).
            name = None
            if block.startswith("event: ") and "\n" in block:
                head, block = block.split("\n", 1)
                name = head[len("event: "):]
            if not block.startswith("data: "):
                events.append({"malformed": block})
                continue
            payload = block[len("data: "):]
            data = "[DONE]" if payload == "[DONE]" else json.loads(payload)
            events.append(data if name is None else {"event": name, "data": data})
        rec["events"] = events
        rec["raw_framing_ok"] = text.endswith("data: [DONE]\n\n")
    else:
        try:
            rec["json"] = json.loads(text)
        except ValueError:
            rec["text"] = text[:2000]
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--api-key")
    a = ap.parse_args()
    out = {"model": a.model, "cases": {}}
    for name, method, path, body in CASES:
        out["cases"][name] = send(a.base_url, method, path, body, a.model, a.api_key)
        print(f"{name}: {out['cases'][name]['status']}", file=sys.stderr)
    with open(a.out + ".tmp", "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    import os
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
