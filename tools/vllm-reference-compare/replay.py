#!/usr/bin/env python3
"""Replay a plain JSONL workload against an OpenAI-compatible server at its arrival times.

Each line: {"request_id", "arrival_s", "prompt_token_ids": [...], "output_len"}. Requests are sent
as token-id prompts to /v1/completions (streaming, ignore_eos, min_tokens = max_tokens =
output_len), so prompt lengths and output lengths are exact on any tokenizer.

Writes one JSON line per request: request_id, arrival_s (planned), sent_s, first_token_s,
last_token_s, output_len, error. Times are seconds on CLOCK_MONOTONIC (time.perf_counter), the
same clock the reference server's EMU_TRACE / EMU_REQ_TRACE use, relative to `t0_s` (also written
in a header line {"t0_s": ...}).

usage: replay.py --workload W.jsonl --out R.jsonl [--url http://127.0.0.1:8100] [--model M]
"""
import argparse
import asyncio
import json
import time

import aiohttp


async def one(session, url, model, req, t0, out):
    await asyncio.sleep(max(0.0, t0 + req["arrival_s"] - time.perf_counter()))
    body = {
        "model": model,
        "prompt": req["prompt_token_ids"],
        "max_tokens": req["output_len"],
        "min_tokens": req["output_len"],
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    rec = {"request_id": req["request_id"], "arrival_s": req["arrival_s"], "error": None}
    sent = time.perf_counter()
    rec["sent_s"] = sent - t0
    first = last = None
    n = 0
    try:
        async with session.post(url + "/v1/completions", json=body) as resp:
            if resp.status != 200:
                rec["error"] = f"HTTP {resp.status}: {await resp.text()}"
            else:
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                        now = time.perf_counter()
                        if chunk["choices"][0]["text"] or first is None:
                            first = first or now
                            last = now
                    if chunk.get("usage"):
                        n = chunk["usage"]["completion_tokens"]
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the run goes on
        rec["error"] = repr(e)
    rec["first_token_s"] = None if first is None else first - t0
    rec["last_token_s"] = None if last is None else last - t0
    rec["output_len"] = n
    out.append(rec)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--url", default="http://127.0.0.1:8100")
    ap.add_argument("--model", default="Qwen/Qwen3-8B")
    a = ap.parse_args()
    reqs = [json.loads(l) for l in open(a.workload) if l.strip()]
    out = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        t0 = time.perf_counter() + 0.5
        await asyncio.gather(*(one(s, a.url, a.model, r, t0, out) for r in reqs))
    out.sort(key=lambda r: r["arrival_s"])
    with open(a.out, "w") as f:
        f.write(json.dumps({"t0_s": t0}) + "\n")
        for r in out:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
