#!/usr/bin/env python3
"""Writes one synthetic serving trace in two formats, for running the same requests through
llm-emu and through NVIDIA Dynamo's mocker (tools/bench-vs-mocker.sh).

Requests: N prompt/output length pairs drawn with replacement (seeded) from a recorded workload
(default: the shared real run's ShareGPT-derived workload.jsonl, LLMServingSim format with
`input_toks` and `output_toks`), Poisson arrivals at RATE requests/s (exponential gaps, the
same seed), first arrival at time 0.

Outputs:
- `--llm-emu PATH`: llm-emu's plain workload JSONL, one line per request:
  `{"arrival_s": S, "prompt_len": L, "output_len": O}`. A prompt given by length only gets
  token ids drawn from the run's seed and its line number, so no two prompts share a prefix.
- `--mooncake PATH`: the Mooncake trace JSONL that the mocker's offline replay reads
  (`aisimulate_core::replay::loadgen::Trace::from_mooncake`), one line per request:
  `{"timestamp": MS, "input_length": L, "output_length": O, "hash_ids": [...]}` with
  ceil(L / BLOCK) hash ids, each naming BLOCK prompt tokens. Every request gets fresh ids
  (a running counter), so here too no two prompts share a prefix block.

Arrival times are rounded to whole microseconds and written exactly in both files (seconds
with 6 decimals, milliseconds with 3). Standard library only.
"""

import argparse
import json
import math
import os
import random
import sys

DEFAULT_SOURCE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "..", "shared", "data", "real-runs", "rtxpro6000-llama-3.1-8b", "workload.jsonl",
)


def read_lengths(path):
    """(prompt tokens, output tokens) of every request of an LLMServingSim workload."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            prompt = row.get("input_toks")
            if prompt is None:
                prompt = len(row["input_tok_ids"])
            output = row["output_toks"]
            if prompt < 1 or output < 1:
                sys.exit(f"{path}:{n}: prompt and output must be at least 1 token")
            pairs.append((int(prompt), int(output)))
    if not pairs:
        sys.exit(f"{path}: no requests")
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--requests", type=int, required=True, help="number of requests")
    ap.add_argument("--rate", type=float, default=10.0, help="Poisson arrival rate, requests/s (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the length draws and arrival gaps (default 0)")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="LLMServingSim workload to resample lengths from")
    ap.add_argument("--block-size", type=int, default=16, help="tokens per Mooncake hash id (default 16)")
    ap.add_argument("--llm-emu", dest="llm_emu", help="write llm-emu's plain workload JSONL here")
    ap.add_argument("--mooncake", help="write the Mooncake trace JSONL here")
    args = ap.parse_args()
    if args.requests < 1 or args.rate <= 0 or args.block_size < 1:
        sys.exit("--requests and --block-size must be at least 1, --rate positive")
    if not args.llm_emu and not args.mooncake:
        sys.exit("nothing to write: give --llm-emu and/or --mooncake")

    pairs = read_lengths(args.source)
    rng = random.Random(args.seed)
    emu = open(args.llm_emu, "w", encoding="utf-8") if args.llm_emu else None
    moon = open(args.mooncake, "w", encoding="utf-8") if args.mooncake else None
    t = 0.0
    next_hash = 0
    total_in = total_out = 0
    for i in range(args.requests):
        if i > 0:
            t += rng.expovariate(args.rate)
        prompt, output = pairs[rng.randrange(len(pairs))]
        us = round(t * 1e6)
        total_in += prompt
        total_out += output
        if emu:
            emu.write(f'{{"arrival_s": {us // 1_000_000}.{us % 1_000_000:06d}, '
                      f'"prompt_len": {prompt}, "output_len": {output}}}\n')
        if moon:
            blocks = math.ceil(prompt / args.block_size)
            ids = ",".join(map(str, range(next_hash, next_hash + blocks)))
            next_hash += blocks
            moon.write(f'{{"timestamp": {us // 1000}.{us % 1000:03d}, "input_length": {prompt}, '
                       f'"output_length": {output}, "hash_ids": [{ids}]}}\n')
    for f in (emu, moon):
        if f:
            f.close()
    print(json.dumps({"requests": args.requests, "input_tokens": total_in,
                      "output_tokens": total_out, "last_arrival_s": round(t, 6)}))


if __name__ == "__main__":
    main()
