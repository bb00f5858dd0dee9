#!/usr/bin/env python3
"""Client-side TTFT / TPOT / ITL of one OpenAI server at several numbers of concurrent streams.

Closed loop: at concurrency N, N clients each send R streamed completions one after another
(prompt of P one-token words behind a random number, `max_tokens` = O, `ignore_eos`), after a
short warm-up. Per request: TTFT = first text chunk − send; TPOT = (last chunk − first chunk) /
(output tokens − 1), output tokens from the usage chunk; ITL = the gaps between text chunks (a
chunk may carry several tokens when the server falls behind, so `tokens_per_chunk` is printed
too). The same seed gives the same prompts against every server.

    load.py --url http://127.0.0.1:8100 --conc 1,16,64,256 [--reps 2] [--prompt 128]
            [--max-tokens 32] [--label NAME] [--json OUT]

Prints one JSON object per concurrency (means, medians, p90 in ms, the 1-minute load average
before and after); `--json` appends them to OUT. Needs aiohttp (the reference venv has it).
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/: quantile.py
from quantile import q  # noqa: E402
from sse import sse_events

WORDS = [" apple", " river", " stone", " cloud", " green", " house", " light", " music"]


async def one(session, url, model, prompt, max_tokens):
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
    rec = {"chunks": [], "tokens": None}
    rec["send"] = time.perf_counter()
    async with session.post(url + "/v1/completions", json=body) as r:
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}: {await r.text()}")
        async for t, j in sse_events(r):
            if j.get("usage"):
                rec["tokens"] = j["usage"]["completion_tokens"]
            ch = j.get("choices") or []
            if ch and ch[0].get("text"):
                rec["chunks"].append(t)
    return rec


async def run_level(url, model, conc, reps, plen, olen, rng):
    timeout = aiohttp.ClientTimeout(total=900)
    conn = aiohttp.TCPConnector(limit=0)
    prompts = [[f"{rng.randrange(10**6)}" + "".join(rng.choice(WORDS) for _ in range(plen - 2))
                for _ in range(reps)] for _ in range(conc)]
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
        for _ in range(2):
            await one(s, url, model, "warm up" + WORDS[0] * 16, 4)

        async def client(i):
            return [await one(s, url, model, prompts[i][k], olen) for k in range(reps)]

        t0 = time.perf_counter()
        groups = await asyncio.gather(*(client(i) for i in range(conc)))
        t1 = time.perf_counter()
    return [r for g in groups for r in g], t0, t1


def stats(recs):
    ttft = [(r["chunks"][0] - r["send"]) * 1e3 for r in recs if r["chunks"]]
    tpot = [(r["chunks"][-1] - r["chunks"][0]) * 1e3 / (r["tokens"] - 1)
            for r in recs if r["chunks"] and r["tokens"] and r["tokens"] > 1]
    itl = [(b - a) * 1e3 for r in recs for a, b in zip(r["chunks"], r["chunks"][1:])]
    chunks = sum(len(r["chunks"]) for r in recs)
    tokens = sum(r["tokens"] or 0 for r in recs)

    def s(xs):
        return {"mean": round(statistics.fmean(xs), 2), "median": round(q(xs, 50), 2),
                "p90": round(q(xs, 90), 2)}

    return {"requests": len(recs), "ttft_ms": s(ttft), "tpot_ms": s(tpot), "itl_ms": s(itl),
            "tokens_per_chunk": round(tokens / chunks, 3) if chunks else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", default="Qwen/Qwen3-8B")
    ap.add_argument("--conc", default="1,16,64,256")
    ap.add_argument("--reps", type=int, default=2, help="requests per stream")
    ap.add_argument("--prompt", type=int, default=128, help="prompt words (~tokens)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="")
    ap.add_argument("--json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for conc in [int(c) for c in a.conc.split(",")]:
        load0 = os.getloadavg()[0]
        recs, t0, t1 = asyncio.run(run_level(a.url, a.model, conc, a.reps, a.prompt,
                                             a.max_tokens, rng))
        # perf_counter is CLOCK_MONOTONIC: the window can be matched with a server's step trace.
        row = {"label": a.label, "conc": conc, "wall_s": round(t1 - t0, 2), "window": [t0, t1],
               "loadavg_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        row.update(stats(recs))
        print(json.dumps(row), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row) + "\n")
        time.sleep(1.0)


if __name__ == "__main__":
    main()
