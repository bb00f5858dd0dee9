#!/usr/bin/env python3
"""Measures the CPU time vLLM's API server adds between a client and the engine core.

Starts the vLLM reference server (`../shared/tools/vllm-reference/run_ref.sh`: real vLLM 0.19,
the GPU forward pass replaced by a sleep of a known length) with a per-step trace, sends
requests of several prompt and output lengths (completions and chat, streamed and not, alone and
concurrent), and compares the client's clock with the engine's (both `time.perf_counter`, i.e.
CLOCK_MONOTONIC, one host):

* request in  = start of the request's first engine step − the client's send time, for requests
  sent alone (the engine is idle, so the step starts when the scheduler sees the request):
  HTTP parse, pydantic validation, chat template, tokenization, hand-over over ZMQ.
* token out   = the client's receipt of a chunk − the end of the engine step that produced it
  (`done` in the trace: when the reference's fake device handed the step back): engine-core
  output serialisation, ZMQ, detokenisation, output processing, SSE framing, HTTP write.
  With concurrent streams it is regressed on the number of requests in the step, since the API
  server processes a step's outputs one request after another.

Fits, by least squares on per-request medians:
  in_us  = per_request_us + per_prompt_token_ns/1000 × prompt_tokens   (completions; chat apart)
  out_us = per_output_token_us + per_batch_output_us × (requests in the step − 1)

and writes the JSON that `--frontend-latency FILE` reads (see crates/perf/data/frontend/README.md).

usage: measure.py [--out FILE] [--base-us 20000] [--reps 5] [--quick]
Runs the reference venv's Python (it needs aiohttp): `~/.cache/vllm-reference/venv/bin/python`.
"""
import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/: quantile.py
from quantile import q  # noqa: E402
from sse import sse_events

HERE = Path(__file__).resolve().parent
REF = (HERE / "../../../shared/tools/vllm-reference").resolve()
MODEL = "Qwen/Qwen3-8B"
# One Qwen3 token each, so a prompt of n words is ~n tokens (the server's usage gives the count).
WORDS = [" apple", " river", " stone", " cloud", " green", " house", " light", " music"]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def prompt_of(n: int, rng: random.Random) -> str:
    # A random first word keeps prefix caching from merging requests (not that it matters for a
    # step whose latency is the base only).
    return f"{rng.randrange(10**6)}" + "".join(rng.choice(WORDS) for _ in range(n - 2))


async def one(session, url, kind, stream, prompt, max_tokens):
    """Sends one request; returns the client-side times (perf_counter seconds)."""
    body = {"model": MODEL, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.0}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    rec = {"kind": kind, "stream": stream, "max_tokens": max_tokens, "chunks": []}
    rec["send"] = time.perf_counter()
    async with session.post(url + path, json=body) as r:
        if stream:
            async for t, j in sse_events(r):
                if j.get("usage"):
                    rec["prompt_tokens"] = j["usage"]["prompt_tokens"]
                    rec["output_tokens"] = j["usage"]["completion_tokens"]
                ch = j.get("choices") or []
                if ch:
                    c = ch[0]
                    txt = c.get("text") if kind != "chat" else (c.get("delta") or {}).get("content")
                    if txt:
                        rec["chunks"].append(t)
        else:
            j = await r.json()
            rec["chunks"].append(time.perf_counter())
            rec["prompt_tokens"] = j["usage"]["prompt_tokens"]
            rec["output_tokens"] = j["usage"]["completion_tokens"]
    rec["end"] = time.perf_counter()
    return rec


async def wait_ready(url, proc, timeout=300):
    t_end = time.time() + timeout
    async with aiohttp.ClientSession() as s:
        while time.time() < t_end:
            if proc.poll() is not None:
                raise SystemExit(f"reference server exited with {proc.returncode}")
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
    raise SystemExit("reference server not ready")


async def drive(url, args):
    rng = random.Random(0)
    recs = []
    timeout = aiohttp.ClientTimeout(total=600)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
        for _ in range(3):  # warm-up (first requests compile templates, fill caches)
            await one(s, url, "completions", True, prompt_of(32, rng), 4)
            await one(s, url, "chat", True, prompt_of(32, rng), 4)
        plens = [16, 256, 1024, 4096] if not args.quick else [16, 1024]
        olens = [8, 64] if not args.quick else [16]
        # Alone: request-in and token-out without contention.
        for rep in range(args.reps):
            for kind in ("completions", "chat"):
                for stream in (True, False):
                    for p in plens:
                        for o in olens:
                            r = await one(s, url, kind, stream, prompt_of(p, rng), o)
                            r["phase"] = "alone"
                            recs.append(r)
                            await asyncio.sleep(0.05)
        # Concurrent streams: token-out against the number of requests in a step.
        for conc in ([4, 16, 48] if not args.quick else [8]):
            await asyncio.sleep(0.5)

            async def client(i):
                out = []
                for _ in range(2):
                    r = await one(s, url, "completions", True, prompt_of(128, rng), 48)
                    r["phase"] = f"conc{conc}"
                    out.append(r)
                return out

            for group in await asyncio.gather(*(client(i) for i in range(conc))):
                recs.extend(group)
    return recs


def load_steps(path):
    steps = [json.loads(l) for l in open(path) if l.strip()]
    steps.sort(key=lambda x: x["done"])
    return steps


def fit_line(xs, ys):
    """Least squares y = a + b x; returns (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def summary(xs):
    return {
        "n": len(xs),
        "mean": round(statistics.fmean(xs), 1) if xs else None,
        "median": round(q(xs, 50), 1),
        "p10": round(q(xs, 10), 1),
        "p90": round(q(xs, 90), 1),
    }


def analyse(recs, steps, base_us):
    import bisect

    dones = [s["done"] for s in steps]
    starts = sorted(s["start"] for s in steps)

    def step_before(t):
        i = bisect.bisect_right(dones, t) - 1
        return steps[i] if i >= 0 else None

    in_samples = {"completions": [], "chat": []}
    out_alone = {"stream": [], "nostream": []}
    out_conc = []  # (requests in step, delay us)
    for r in recs:
        if r["phase"] == "alone":
            i = bisect.bisect_left(starts, r["send"])
            if i < len(starts):
                in_samples[r["kind"]].append((r["prompt_tokens"], (starts[i] - r["send"]) * 1e6))
        for t in r["chunks"]:
            st = step_before(t)
            if st is None:
                continue
            d = (t - st["done"]) * 1e6
            if d > base_us * 0.9:  # the chunk's step is not the last one done: ambiguous
                continue
            if r["phase"] == "alone":
                out_alone["stream" if r["stream"] else "nostream"].append(d)
            elif r["stream"]:
                out_conc.append((st["reqs"], d))
    fit = {}
    for kind, xs in in_samples.items():
        by_p = {}
        for p, us in xs:
            by_p.setdefault(p, []).append(us)
        ps = sorted(by_p)
        a, b = fit_line(ps, [statistics.median(by_p[p]) for p in ps])
        fit[kind] = {
            "per_request_us": round(a, 1),
            "per_prompt_token_ns": round(b * 1000, 1),
            "medians_us_by_prompt_tokens": {str(p): round(statistics.median(by_p[p]), 1) for p in ps},
        }
    # Token out: median delay per batch size, then a line through (1, alone) and the batches.
    by_b = {1: list(out_alone["stream"])}
    for b, d in out_conc:
        by_b.setdefault(b, []).append(d)
    bs = sorted(b for b in by_b if len(by_b[b]) >= 5)
    med = [statistics.median(by_b[b]) for b in bs]
    a, _ = fit_line([b - 1 for b in bs], med)
    # Through the alone point, each batch size weighted by its samples.
    alone = statistics.median(out_alone["stream"])
    num = sum(len(by_b[b]) * (b - 1) * (m - alone) for b, m in zip(bs, med))
    den = sum(len(by_b[b]) * (b - 1) ** 2 for b in bs)
    slope = num / den if den else 0.0
    return {
        "request_in": fit,
        "token_out": {
            "per_output_token_us": round(statistics.median(out_alone["stream"]), 1),
            "fit_intercept_us": round(a, 1),
            "per_batch_output_us": round(max(slope, 0.0), 2),
            "median_us_by_requests_in_step": {str(b): round(m, 1) for b, m in zip(bs, med)},
            "samples_by_requests_in_step": {str(b): len(by_b[b]) for b in bs},
        },
        "samples": {
            "request_in_completions_us": summary([u for _, u in in_samples["completions"]]),
            "request_in_chat_us": summary([u for _, u in in_samples["chat"]]),
            "token_out_stream_alone_us": summary(out_alone["stream"]),
            "response_out_nonstream_alone_us": summary(out_alone["nostream"]),
            "token_out_concurrent_us": summary([d for _, d in out_conc]),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="the frontend JSON to write")
    ap.add_argument("--base-us", type=int, default=20000, help="engine step latency (µs)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer shapes (a smoke run)")
    ap.add_argument("--raw", type=Path, help="also write the raw client records (JSON)")
    ap.add_argument("--analyse", nargs=2, type=Path, metavar=("RAW", "STEPS"),
                    help="re-fit earlier raw records and step trace without running a server")
    args = ap.parse_args()
    if args.analyse:
        res = analyse(json.loads(args.analyse[0].read_text()), load_steps(args.analyse[1]),
                      args.base_us)
        print(json.dumps(res, indent=2))
        return

    tmp = Path(tempfile.mkdtemp(prefix="measure-frontend-"))
    port = free_port()
    env = dict(os.environ, PORT=str(port), EMU_BASE_US=str(args.base_us), EMU_PER_TOKEN_US="0",
               EMU_PER_REQ_US="0", EMU_PER_CTX_US="0", EMU_TRACE=str(tmp / "steps.jsonl"))
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(["bash", str(REF / "run_ref.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    load0 = os.getloadavg()
    try:
        asyncio.run(wait_ready(url, proc))
        recs = asyncio.run(drive(url, args))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    load1 = os.getloadavg()
    steps = load_steps(tmp / "steps.jsonl")
    res = analyse(recs, steps, args.base_us)
    import importlib.metadata as md

    ri = res["request_in"]["completions"]
    out = {
        "name": "vllm",
        "description": "CPU time of vLLM's OpenAI API server between a client and the engine "
                       "core, measured on the vLLM reference server (real vLLM, GPU step "
                       "replaced by a sleep) by tools/measure-frontend/measure.py",
        "vllm_version": md.version("vllm"),
        "host": {"cpu_model": cpu_model(), "cpus": os.cpu_count(),
                 "python": platform.python_version(),
                 "loadavg_before_after": [round(load0[0], 2), round(load1[0], 2)]},
        "method": {"engine_step_us": args.base_us, "model": MODEL, "client": "same host, aiohttp",
                   "clock": "time.perf_counter on both sides (CLOCK_MONOTONIC)",
                   "reps": args.reps, "requests": len(recs), "steps": len(steps)},
        "per_request_us": ri["per_request_us"],
        "per_prompt_token_ns": ri["per_prompt_token_ns"],
        "chat_per_request_us": res["request_in"]["chat"]["per_request_us"],
        "per_output_token_us": res["token_out"]["per_output_token_us"],
        "per_batch_output_us": res["token_out"]["per_batch_output_us"],
        "fit": res,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.raw:
        args.raw.write_text(json.dumps(recs))
    print(f"server log and trace in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
