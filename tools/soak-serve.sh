#!/usr/bin/env bash
# Soak test of `llm-emu serve` on loopback: one server with a linear step latency, STREAMS
# concurrent streaming completions kept in flight by `llm-emu bench` for DURATION_S seconds,
# and the server's resident memory sampled every second.
#
# Usage: tools/soak-serve.sh [STREAMS] [DURATION_S] [OUT_DIR]
# Defaults: 100 streams, 60 s, a new temporary directory. Writes OUT_DIR/rss.csv
# (`elapsed_s,rss_kib,hwm_kib`), OUT_DIR/summary.txt (the RSS series summary, requests done,
# server CPU), the bench result JSONs and the server's logs.
#
# Bounded: everything goes to 127.0.0.1 with an OS-chosen port; the run stops after
# DURATION_S (+ at most one bench round being cut short and 10 s to stop the server).
# LLM_EMU=path/to/llm-emu uses that binary (default: target/release/llm-emu, built if absent).
# PROMPT_LEN and OUTPUT_LEN (default 128 and 64 tokens) size each request.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-100}; DURATION=${2:-60}; OUT=${3:-$(mktemp -d)}
PROMPT_LEN=${PROMPT_LEN:-128}; OUTPUT_LEN=${OUTPUT_LEN:-64}
mkdir -p "$OUT"
BIN=${LLM_EMU:-target/release/llm-emu}
if [[ -z "${LLM_EMU:-}" && ! -x "$BIN" ]]; then
    cargo build --release -q -p llm-emu --bin llm-emu
fi

# One bench round: 4 requests per stream, all due at once, so STREAMS stay in flight.
WORKLOAD="$OUT/workload.jsonl"
python3 - "$WORKLOAD" "$((STREAMS * 4))" "$PROMPT_LEN" "$OUTPUT_LEN" <<'PY'
import sys
path, n, plen, olen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f:
    for i in range(n):
        ids = ", ".join(str(1000 + (i * 7919 + j * 104729) % 29000) for j in range(plen))
        f.write(f'{{"arrival_s": 0, "prompt_token_ids": [{ids}], "output_len": {olen}}}\n')
PY

"$BIN" serve --host 127.0.0.1 --port 0 --disable-log-requests --served-model-name soak \
    --latency linear:base_us=5000,per_token_us=20 --max-num-seqs "$STREAMS" \
    >"$OUT/server.stdout" 2>"$OUT/server.stderr" &
PID=$!
SAMPLER=
cleanup() {
    [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true
    kill -TERM "$PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 300); do grep -q listening "$OUT/server.stdout" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's#.*listening on http://##p' "$OUT/server.stdout")
[[ -n "$ADDR" ]] || { echo "server did not start:"; cat "$OUT/server.stderr"; exit 1; }
case "$ADDR" in 127.0.0.1:*) ;; *) echo "refusing non-loopback address $ADDR"; exit 1 ;; esac
echo "server pid $PID on $ADDR; $STREAMS streams for $DURATION s; output in $OUT"

# RSS every second, from /proc, until the end of the soak.
echo "elapsed_s,rss_kib,hwm_kib" >"$OUT/rss.csv"
(
    start=$(date +%s.%N)
    while kill -0 "$PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/{print $2}' /proc/$PID/status 2>/dev/null || true)
        hwm=$(awk '/^VmHWM:/{print $2}' /proc/$PID/status 2>/dev/null || true)
        [[ -n "$rss" ]] || break
        now=$(date +%s.%N)
        printf '%.1f,%s,%s\n' "$(echo "$now - $start" | bc)" "$rss" "$hwm" >>"$OUT/rss.csv"
        sleep 1
    done
) &
SAMPLER=$!

END=$(( $(date +%s) + DURATION ))
ROUND=0
while (( $(date +%s) < END )); do
    LEFT=$(( END - $(date +%s) ))
    (( LEFT > 0 )) || break
    ROUND=$((ROUND + 1))
    timeout "$LEFT" "$BIN" bench --base-url "http://$ADDR" --model soak --skip-tokenizer-init \
        --dataset-name workload --dataset-path "$WORKLOAD" --max-concurrency "$STREAMS" \
        --disable-tqdm --save-result --result-dir "$OUT" --result-filename "round-$ROUND.json" \
        >"$OUT/bench-$ROUND.log" 2>&1 || true
done
sleep 2
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=
CPU=$(ps -o times= -p "$PID" | tr -d ' ')
WALL=$(ps -o etimes= -p "$PID" | tr -d ' ')
kill -TERM "$PID"
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$PID" 2>/dev/null || true

python3 - "$OUT" "$STREAMS" "$DURATION" "$ROUND" "$CPU" "$WALL" <<'PY' | tee "$OUT/summary.txt"
import csv, glob, json, os, sys
out, streams, duration, rounds, cpu, wall = sys.argv[1:]
rows = list(csv.DictReader(open(os.path.join(out, "rss.csv"))))
rss = [int(r["rss_kib"]) / 1024 for r in rows]
n = len(rss)
done = failed = 0
for p in glob.glob(os.path.join(out, "round-*.json")):
    r = json.load(open(p))
    done += r.get("completed", 0)
    failed += r.get("failed", 0)
third = max(1, n // 3)
first, last = rss[:third], rss[-third:]
mean = lambda xs: sum(xs) / len(xs)
print(f"streams {streams}, duration {duration} s, {rounds} bench round(s) started, "
      f"{done} requests completed in finished rounds, {failed} failed")
print(f"RSS samples: {n} (1/s); min {min(rss):.1f} MiB, max {max(rss):.1f} MiB, "
      f"first {rss[0]:.1f} MiB, last {rss[-1]:.1f} MiB")
print(f"mean of the first third {mean(first):.1f} MiB, of the last third {mean(last):.1f} MiB "
      f"(growth {mean(last) - mean(first):+.1f} MiB)")
print(f"peak (VmHWM) {int(rows[-1]['hwm_kib']) / 1024:.1f} MiB; server CPU {cpu} over {wall} s wall")
if done == 0 or failed > 0:
    print("FAILED: requests failed or none completed (see bench-*.log)")
    sys.exit(1)
PY
