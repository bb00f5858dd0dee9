#!/usr/bin/env bash
# Wall time per simulated request of a 16-replica fleet behind the prefix-aware router against
# one engine, each instance at the same load (one engine at 40 req/s, the fleet at 16 × 40 =
# 640 req/s), on synthetic ShareGPT-like requests; release build pinned to one core. Prints,
# for each run, requests, engine steps, wall time, wall µs per request and peak RSS.
#
# usage: tools/bench-fleet.sh [num_requests=1000000]
# environment:
#   ROUNDS=K        run the pair K times, interleaved (default 1); report min/median/max
#   BASELINE=BIN    also run one engine with another llm-emu binary in each round (e.g. a
#                   release build of an earlier commit, for a goal stated against it)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${ROUNDS:-1}
cargo build --release -q -p llm-emu
BIN=target/release/llm-emu
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
one() {
  local name=$1 bin=$2; shift 2
  /usr/bin/time -f '%e %M' -o "$OUT/time" taskset -c 0 "$bin" simulate --quiet \
    --synthetic "$N" --output-json "$OUT/s.json" "$@" 2>/dev/null
  read -r wall rss_kb < "$OUT/time"
  python3 - "$name" "$wall" "$rss_kb" "$OUT/s.json" <<'PY' | tee -a "$OUT/all"
import json, sys
name, wall, rss_kb, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
n = s["completed"] + s["failed"]
steps = sum(i["num_steps"] for i in s.get("instances", [])) or s["num_steps"]
print(f"{name}\t{n} requests, {steps} engine steps, wall {wall:.2f} s, "
      f"{wall / max(n, 1) * 1e6:.1f} µs/request, peak RSS {rss_kb / 1024:.0f} MiB, "
      f"prefix hit rate {s.get('prefix_cache_hit_rate', 0):.3f}")
PY
}
for _ in $(seq "$ROUNDS"); do
  if [ -n "${BASELINE:-}" ]; then
    one "one engine, 40 req/s, baseline build" "$BASELINE" --request-rate 40
  fi
  one "one engine, 40 req/s" "$BIN" --request-rate 40
  one "16 replicas, prefix-aware, 640 req/s" "$BIN" --request-rate 640 --replicas 16 \
    --router prefix-aware
done
if [ "$ROUNDS" -gt 1 ]; then
  python3 - "$OUT/all" <<'PY'
import re, sys, statistics
walls = {}
for line in open(sys.argv[1]):
    name, rest = line.rstrip("\n").split("\t")
    walls.setdefault(name, []).append(float(re.search(r"wall ([0-9.]+) s", rest).group(1)))
for name, w in walls.items():
    print(f"{name}: wall min/median/max {min(w):.2f} / {statistics.median(w):.2f} / {max(w):.2f} s")
PY
fi
