#!/usr/bin/env python3
"""Send one small workload to two OpenAI servers running `--data-parallel-size 2` (vLLM 0.19's
reference and `llm-emu serve`) and compare where the requests went.

Placement is read from each server's /metrics: `vllm:request_success_total{engine="N"}` (summed
over finish reasons) before and after each request of the sequential phases, and before and after
the concurrent burst. Phases:

1. `header`: 6 requests, one at a time, naming ranks 0,1,1,0,1,1 with `X-data-parallel-rank`;
2. `sequential`: 6 requests without the header, one at a time (each finishes before the next);
3. `burst`: 8 requests without the header sent at once;
4. `spaced`: 8 requests without the header, 0.1 s apart, each running ~1.9 s (96 tokens of 20 ms
   steps), so all overlap; each one's rank is the engine whose `vllm:num_requests_running` +
   `vllm:num_requests_waiting` grew after it was sent.

Every request's send time (wall clock) is recorded. Given the instants at which each server's DP
coordinator republished its counts (`--a-publications`/`--b-publications`: a vLLM DEBUG log with
`%(created)` timestamps, or `epoch:T` for llm-emu, which republishes at T + 5 s·k, T its engine
clock's start), the placements are printed with `|` where a publication fell between two requests
(it resets the API servers' local increments) and beside the placements that vLLM 0.19's rule
for a dense model predicts from the local increments alone, with `--api-servers K` API servers
(which server took each request: uvicorn's access log in the vLLM log, or in turn for llm-emu).
`run.sh` starts both servers and passes all of this.

Usage: compare.py --a URL --a-model NAME [--a-publications SRC] [--b URL --b-model NAME
                  [--b-publications SRC]] [--api-servers K] [--json OUT]
"""
import argparse
import json
import re
import threading
import time
import urllib.request

SUCCESS = re.compile(r'^vllm:request_success_total\{([^}]*)\}\s+([0-9.e+]+)', re.M)
IN_FLIGHT = re.compile(r'^vllm:num_requests_(?:running|waiting)\{([^}]*)\}\s+([0-9.e+]+)', re.M)


def per_engine(base, family=SUCCESS):
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    counts = {}
    for labels, value in family.findall(text):
        m = re.search(r'engine="(\d+)"', labels)
        if m:
            counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + float(value)
    return counts


def diff(after, before):
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}


SENDS = []  # (wall-clock send time, phase, explicit rank or None), for one server at a time


def complete(base, model, rank=None, max_tokens=8, phase=None):
    if phase is not None:
        SENDS.append((time.time(), phase, rank))
    body = json.dumps({"model": model, "prompt": "Tell me a story about a lighthouse keeper.",
                       "max_tokens": max_tokens, "ignore_eos": True}).encode()
    headers = {"Content-Type": "application/json"}
    if rank is not None:
        headers["X-data-parallel-rank"] = str(rank)
    req = urllib.request.Request(base + "/v1/completions", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        json.load(r)


def placed_one(base, model, phase, rank=None):
    before = per_engine(base)
    complete(base, model, rank, 8, phase)
    # Metrics are published after the output; give the server a moment.
    for _ in range(50):
        d = diff(per_engine(base), before)
        if sum(d.values()) >= 1:
            return [k for k, v in d.items() if v > 0][0]
        time.sleep(0.05)
    return None


def run(base, model):
    SENDS.clear()
    out = {}
    out["header"] = [placed_one(base, model, "header", r) for r in [0, 1, 1, 0, 1, 1]]
    time.sleep(0.5)
    seq = []
    for _ in range(6):
        seq.append(placed_one(base, model, "sequential"))
        time.sleep(0.3)
    out["sequential"] = seq
    time.sleep(0.5)
    before = per_engine(base)
    threads = [threading.Thread(target=complete, args=(base, model, None, 32, "burst"))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    out["burst_per_rank"] = diff(per_engine(base), before)
    time.sleep(0.5)
    spaced, threads = [], []
    for _ in range(8):
        before = per_engine(base, IN_FLIGHT)
        t0 = time.time()
        t = threading.Thread(target=complete, args=(base, model, None, 96, "spaced"))
        t.start()
        threads.append(t)
        rank = None
        while rank is None and time.time() - t0 < 1.0:
            time.sleep(0.02)
            d = diff(per_engine(base, IN_FLIGHT), before)
            grown = [k for k, v in d.items() if v > 0]
            rank = grown[0] if grown else None
        spaced.append(rank)
        time.sleep(max(0.0, 0.1 - (time.time() - t0)))
    for t in threads:
        t.join()
    out["spaced"] = spaced
    out["sends"] = sorted(SENDS)
    return out


def publications(src, until):
    """Republication instants (wall clock): from a vLLM DEBUG log whose lines carry
    `%(created)` (`Received counts` in each API server; one publication reaches them all within
    milliseconds), or `epoch:T` (llm-emu: T + 5 s·k)."""
    if src.startswith("epoch:"):
        t, out = float(src[6:]), []
        while t <= until:
            out.append(t)
            t += 5.0
        return out
    pat = re.compile(r'(\d{9,}\.\d+) \[core_client\.py:\d+\] Received counts')
    out = []
    for t in sorted(float(m.group(1)) for m in map(pat.search, open(src)) if m):
        if not out or t - out[-1] > 0.5:
            out.append(t)
    return out


def api_servers_of(src, sends, k):
    """The API server that took each request, in send order: from the vLLM log's access lines
    (`(ApiServer_N pid=…) INFO <created> … "POST /v1/completions …"`, written when a response
    ends; requests of one phase end in the order they were sent), or in turn for llm-emu."""
    if src.startswith("epoch:") or k == 1:
        return [i % k for i in range(len(sends))]
    pat = re.compile(r'\(ApiServer_(\d+) .* (\d{9,}\.\d+) .*"POST /v1/completions')
    ends = sorted((float(m.group(2)), int(m.group(1))) for m in map(pat.search, open(src)) if m)
    ends = ends[-len(sends):]
    return [srv for _, srv in ends] if len(ends) == len(sends) else None


def predict(sends, pubs, servers, k, ranks=2):
    """vLLM 0.19, dense model: API server c keeps its own copy of the counts, takes the lowest
    `4·waiting + running` scanning from rank `(ranks·c)//k`, and adds k to the chosen rank's
    waiting count; a publication (all zeros: dense ranks never report) resets every copy.
    Explicit ranks move nothing."""
    counts, out, pi = [[0] * ranks for _ in range(k)], [], 0
    for (t, phase, rank), c in zip(sends, servers):
        while pi < len(pubs) and pubs[pi] <= t:
            counts, pi = [[0] * ranks for _ in range(k)], pi + 1
        if rank is not None:
            out.append((phase, rank, pi))
            continue
        start = (ranks * c) // k
        r = min(range(ranks), key=lambda i: (4 * counts[c][i], (i - start) % ranks))
        counts[c][r] += k
        out.append((phase, r, pi))
    return out


def show(name, res, pubs, servers, k):
    sends = res["sends"]
    near = [round(t - p, 3) for t, _, _ in sends for p in pubs if abs(t - p) < 0.1]
    print(f"== {name}: publications during the run: "
          f"{sum(sends[0][0] <= p <= sends[-1][0] for p in pubs)}"
          + (f"; sends within 0.1 s of one (ambiguous): {near}" if near else ""))
    if servers is None:
        print("  (the API server of each request is not known: no prediction)")
        servers = [0] * len(sends)
    pred = predict(sends, pubs, servers, k)
    res["predicted"] = pred
    res["api_server_of_send"] = servers
    for phase in ("header", "sequential", "spaced"):
        marks, last, srv = [], None, []
        for (ph, r, pi), c in zip(pred, servers):
            if ph != phase:
                continue
            marks.append(("| " if last is not None and pi != last else "") + str(r))
            last = pi
            srv.append(c)
        extra = f"  (API servers {srv})" if k > 1 else ""
        print(f"  {phase:10s} measured {res[phase]}  predicted {' '.join(marks)}{extra}")
    burst = [r for ph, r, _ in pred if ph == "burst"]
    print(f"  burst      measured {res['burst_per_rank']}  predicted "
          f"{ {r: burst.count(r) for r in sorted(set(burst))} }")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True)
    p.add_argument("--a-model", required=True)
    p.add_argument("--api-servers", type=int, default=1,
                   help="API servers of both servers (--api-server-count)")
    p.add_argument("--a-publications")
    p.add_argument("--b-publications")
    p.add_argument("--b")
    p.add_argument("--b-model")
    p.add_argument("--json")
    a = p.parse_args()
    res = {"a": run(a.a, a.a_model)}
    if a.b:
        res["b"] = run(a.b, a.b_model)
    for side, src in (("a", a.a_publications), ("b", a.b_publications)):
        if side in res and not src:
            print(json.dumps({k: v for k, v in res[side].items() if k != "sends"}))
        if side in res and src:
            pubs = publications(src, res[side]["sends"][-1][0] + 10)
            res[side]["publications"] = pubs
            servers = api_servers_of(src, res[side]["sends"], a.api_servers)
            show(getattr(a, side), res[side], pubs, servers, a.api_servers)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
