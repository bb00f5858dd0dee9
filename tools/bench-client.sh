#!/usr/bin/env bash
# Measures `llm-emu bench` as a load generator: N concurrent streams of T tokens each from a
# local SSE server (crates/bench/examples/sse_server.rs), one token every ITL ms. Prints the
# client's received tokens/s, its CPU time per token, and how far its measured ITL/TTFT are
# from the server's schedule (the client's own timing overhead plus server jitter).
#
#   [SPREAD_S=2] tools/bench-client.sh [STREAMS=5000] [TOKENS=200] [ITL_MS=25] [EVENTS_PER_WRITE=1]
#
# Needs release builds: cargo build --release -p llm-emu && \
#   cargo build --release -p llm-emu-bench --example sse_server
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-5000}
TOKENS=${2:-200}
ITL_MS=${3:-25}
PER_WRITE=${4:-1}
TTFT_MS=${TTFT_MS:-50}
PORT=${PORT:-8199}
BIN=target/release/llm-emu
SERVER=target/release/examples/sse_server
for b in "$BIN" "$SERVER"; do
  [[ -x $b ]] || { echo "missing $b: build it first (see the header of $0)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill $spid 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# A workload of STREAMS requests arriving evenly over SPREAD_S seconds (default 2: thousands of
# simultaneous connects overflow the kernel's SYN queue and cost 1-s retransmits), 16-token
# prompts, TOKENS outputs each.
python3 - "$STREAMS" "$TOKENS" "${SPREAD_S:-2}" > "$work/w.jsonl" <<'EOF'
import json, sys
n, t, spread = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
for i in range(n):
    print(json.dumps({"arrival_time_ns": int(i * spread * 1e9 / n), "input_tok_ids": list(range(1000 + i % 7, 1016 + i % 7)), "output_toks": t}))
EOF

"$SERVER" --port "$PORT" --ttft-ms "$TTFT_MS" --itl-ms "$ITL_MS" --events-per-write "$PER_WRITE" 2>"$work/server.log" &
spid=$!
for _ in $(seq 50); do
  grep -q listening "$work/server.log" 2>/dev/null && break
  sleep 0.1
done

/usr/bin/time -f '%U %S %e %M' -o "$work/time" \
  "$BIN" bench --base-url "http://127.0.0.1:$PORT" --model m --dataset-name workload \
  --dataset-path "$work/w.jsonl" --skip-tokenizer-init --disable-tqdm \
  --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 --save-detailed \
  --save-result --result-filename "$work/r.json" > "$work/out.txt"
server_cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$spid/stat")

python3 - "$work/r.json" "$work/time" "$STREAMS" "$TOKENS" "$ITL_MS" "$TTFT_MS" "$PER_WRITE" "$server_cpu" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
user, sys_, wall, rss_kb = open(sys.argv[2]).read().split()
streams, tokens, itl, ttft, per, server_cpu = sys.argv[3:]
cpu = float(user) + float(sys_)
toks = r["total_output_tokens"]
print(f"streams={streams} tokens/stream={tokens} server ITL={itl} ms TTFT={ttft} ms events/write={per}")
print(f"completed={r['completed']} failed={r['failed']} peak concurrent={r['max_concurrent_requests']}")
print(f"duration={r['duration']:.2f} s  received={toks} tokens  {toks / r['duration']:.0f} tok/s  (peak 1-s bucket {r['max_output_tokens_per_s']:.0f})")
print(f"client CPU {cpu:.2f} s (user {user}, sys {sys_}) = {cpu / toks * 1e6:.2f} us/token, max RSS {int(rss_kb) / 1024:.0f} MiB; server CPU {float(server_cpu):.2f} s")
# Latency statistics from the per-request arrays (present with or without a tokenizer).
import statistics
sys.path.insert(0, "tools")  # run from the repository root: tools/quantile.py
from quantile import q as pct
itls = [g * 1e3 for row in r["itls"] for g in row]
ttfts = [t * 1e3 for t, e in zip(r["ttfts"], r["errors"]) if not e]
tpots = [(sum(row)) * 1e3 / len(row) for row in r["itls"] if row]
print(f"ITL mean {statistics.mean(itls):.3f} ms median {pct(itls, 50):.3f} p99 {pct(itls, 99):.3f}  (server: {float(itl) * int(per):.3f} ms per write)")
print(f"TPOT mean {statistics.mean(tpots):.3f} ms (server {itl} ms); TTFT mean {statistics.mean(ttfts):.2f} ms p99 {pct(ttfts, 99):.2f} (server {ttft} ms)")
# Received tokens per 1-s bucket, from each token's receipt time (start + TTFT + ITLs): the
# steady state is the buckets in which every stream was open (after the last start, before the
# first end).
import collections, itertools
buckets = collections.Counter()
t0 = min(r["start_times"])
ends = []
for st, tt, row, e in zip(r["start_times"], r["ttfts"], r["itls"], r["errors"]):
    if e:
        continue
    times = list(itertools.accumulate(row, initial=st + tt))
    ends.append(times[-1])
    for t in times:
        buckets[int(t - t0)] += 1
lo, hi = int(max(r["start_times"]) - t0) + 1, int(min(ends) - t0)
steady = [buckets[k] for k in range(lo, hi)]
if steady:
    print(f"steady state ({len(steady)} s with every stream open): received tok/s "
          f"min {min(steady)} median {pct(steady, 50):.0f} max {max(steady)}")
EOF
