#!/usr/bin/env bash
# Speed and memory of `llm-emu simulate` (release build, one core): the 300-request real-run case
# and 1,000,000 ShareGPT-like requests at a sustainable and at an overloading rate. Prints wall
# time, engine steps/s, simulated requests per wall-clock second and peak RSS for each.
# usage: tools/bench-simulate.sh [num_requests=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release -q -p llm-emu
BIN=target/release/llm-emu
OUT=$(mktemp -d)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
one() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$OUT/time" taskset -c 0 "$BIN" simulate --quiet --output-json "$OUT/s.json" "$@"
  read -r wall rss_kb < "$OUT/time"
  python3 - "$name" "$wall" "$rss_kb" "$OUT/s.json" <<'PY'
import json, sys
name, wall, rss_kb, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
n = s["completed"] + s["failed"]
print(f"{name}: {n} requests, {s['num_steps']} steps, wall {wall:.2f} s, "
      f"{s['num_steps'] / max(wall, 1e-9):,.0f} steps/s, {n / max(wall, 1e-9):,.0f} requests/s, "
      f"peak RSS {rss_kb / 1024:.0f} MiB, simulated {s['duration']:.0f} s")
PY
}
W=../shared/data/real-runs/rtxpro6000-llama-3.1-8b/workload.jsonl
if [ -f "$W" ]; then
  one "real-run 300" --workload "$W" --max-num-seqs 128 --max-num-batched-tokens 2048
fi
one "synthetic $N at 40 req/s" --synthetic "$N" --request-rate 40
one "synthetic $N at 100 req/s (overloaded)" --synthetic "$N" --request-rate 100
