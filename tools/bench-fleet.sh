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
#   PAIRED=1        with BASELINE: run the baseline's one engine and this build's fleet at the
#                   same time instead, one on each of cores 0 and 1, swapping cores every
#                   round, and print each round's fleet / baseline wall-time ratio and their
#                   median: on a shared VM both runs then meet the same moment's load, which
#                   runs one after another do not (their spread there is ±30 %)
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
  local tag=${TAG:-run}
  /usr/bin/time -f '%e %M' -o "$OUT/$tag.time" taskset -c "${CORE:-0}" "$bin" simulate --quiet \
    --synthetic "$N" --output-json "$OUT/$tag.json" "$@" 2>/dev/null
  read -r wall rss_kb < "$OUT/$tag.time"
  python3 - "$name" "$wall" "$rss_kb" "$OUT/$tag.json" <<'PY' | tee -a "$OUT/all"
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
FLEET=(--request-rate 640 --replicas 16 --router prefix-aware)
if [ -n "${PAIRED:-}" ]; then
  [ -n "${BASELINE:-}" ] || { echo "PAIRED needs BASELINE" >&2; exit 2; }
  for r in $(seq "$ROUNDS"); do
    a=$(( (r + 1) % 2 )); b=$(( r % 2 ))
    CORE=$a TAG=base one "one engine, 40 req/s, baseline build (core $a)" "$BASELINE" \
      --request-rate 40 > "$OUT/base.line" &
    CORE=$b TAG=fleet one "16 replicas, prefix-aware, 640 req/s (core $b)" "$BIN" "${FLEET[@]}" \
      > "$OUT/fleet.line" &
    wait
    cat "$OUT/base.line" "$OUT/fleet.line"
  done
  python3 - "$OUT/all" <<'PY'
import re, statistics, sys
base, fleet = [], []
for line in open(sys.argv[1]):
    wall = float(re.search(r"wall ([0-9.]+) s", line).group(1))
    (base if "baseline build" in line.split("\t")[0] else fleet).append(wall)
ratios = [f / b for b, f in zip(base, fleet)]
print("fleet / baseline one engine, by round: " + ", ".join(f"{x:.3f}" for x in ratios)
      + f"; median {statistics.median(ratios):.3f}")
PY
  exit 0
fi
for _ in $(seq "$ROUNDS"); do
  if [ -n "${BASELINE:-}" ]; then
    one "one engine, 40 req/s, baseline build" "$BASELINE" --request-rate 40
  fi
  one "one engine, 40 req/s" "$BIN" --request-rate 40
  one "16 replicas, prefix-aware, 640 req/s" "$BIN" "${FLEET[@]}"
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
