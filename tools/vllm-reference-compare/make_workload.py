#!/usr/bin/env python3
"""Write a plain JSONL workload with explicit prompt token ids (no shared prefixes unless asked).

usage: make_workload.py N RATE SEED OUT [--shared-prefix TOKENS]
Prompt lengths ~ uniform[64, 1024], output lengths ~ uniform[16, 256], Poisson arrivals at RATE/s.
Token ids are drawn from [1000, 30000) so they are ordinary Qwen3 tokens.
"""
import json
import random
import sys

n, rate, seed, out = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
shared = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--shared-prefix" else 0
rng = random.Random(seed)
prefix = [rng.randrange(1000, 30000) for _ in range(shared)]
t = 0.0
with open(out, "w") as f:
    for i in range(n):
        t += rng.expovariate(rate)
        plen = rng.randint(64, 1024)
        toks = prefix[: min(shared, plen - 1)]
        toks += [rng.randrange(1000, 30000) for _ in range(plen - len(toks))]
        f.write(json.dumps({"request_id": f"r{i}", "arrival_s": round(t, 6), "prompt_token_ids": toks,
                            "output_len": rng.randint(16, 256)}) + "\n")
