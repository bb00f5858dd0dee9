#!/usr/bin/env python3
"""Send one small workload to two OpenAI servers running `--data-parallel-size 2` (vLLM 0.19's
reference and `llm-emu serve`) and compare where the requests went.

Placement is read from each server's /metrics: `vllm:request_success_total{engine="N"}` (summed
over finish reasons) before and after each request of the sequential phases, and before and after
the concurrent burst. Phases:

1. `header`: 6 requests, one at a time, naming ranks 0,1,1,0,1,1 with `X-data-parallel-rank`;
2. `sequential`: 6 requests without the header, one at a time (each finishes before the next);
3. `burst`: 8 requests without the header sent at once.

Usage: compare.py --a URL --a-model NAME --b URL --b-model NAME [--json OUT]
"""
import argparse
import json
import re
import threading
import time
import urllib.request

SUCCESS = re.compile(r'^vllm:request_success_total\{([^}]*)\}\s+([0-9.e+]+)', re.M)


def per_engine(base):
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    counts = {}
    for labels, value in SUCCESS.findall(text):
        m = re.search(r'engine="(\d+)"', labels)
        if m:
            counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + float(value)
    return counts


def diff(after, before):
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}


def complete(base, model, rank=None, max_tokens=8):
    body = json.dumps({"model": model, "prompt": "Tell me a story about a lighthouse keeper.",
                       "max_tokens": max_tokens, "ignore_eos": True}).encode()
    headers = {"Content-Type": "application/json"}
    if rank is not None:
        headers["X-data-parallel-rank"] = str(rank)
    req = urllib.request.Request(base + "/v1/completions", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        json.load(r)


def placed_one(base, model, rank=None):
    before = per_engine(base)
    complete(base, model, rank)
    # Metrics are published after the output; give the server a moment.
    for _ in range(50):
        d = diff(per_engine(base), before)
        if sum(d.values()) >= 1:
            return [k for k, v in d.items() if v > 0][0]
        time.sleep(0.05)
    return None


def run(base, model):
    out = {}
    out["header"] = [placed_one(base, model, r) for r in [0, 1, 1, 0, 1, 1]]
    time.sleep(0.5)
    seq = []
    for _ in range(6):
        seq.append(placed_one(base, model))
        time.sleep(0.3)
    out["sequential"] = seq
    time.sleep(0.5)
    before = per_engine(base)
    threads = [threading.Thread(target=complete, args=(base, model, None, 32)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    out["burst_per_rank"] = diff(per_engine(base), before)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True)
    p.add_argument("--a-model", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--b-model", required=True)
    p.add_argument("--json")
    a = p.parse_args()
    res = {"a": run(a.a, a.a_model), "b": run(a.b, a.b_model)}
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
