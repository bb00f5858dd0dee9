#!/usr/bin/env bash
# `llm-emu simulate` side by side with NVIDIA Dynamo's mocker 1.6.1 (crates.io `dynamo-mocker`,
# its offline replay driven by tools/mocker-replay), on the same trace and the same step model.
#
# The trace (tools/make-trace/make_trace.py): N requests with prompt/output lengths resampled
# from the shared real run's ShareGPT workload, Poisson arrivals at RATE/s, no shared prefixes;
# written as a Mooncake JSONL (16-token hash blocks) that both tools read, and as llm-emu's
# plain JSONL of the same requests (kept for comparison: llm-emu's outputs on the two are
# identical). Both engines: vLLM
# scheduling, 128 sequences, 2,048 tokens per step, 35,000 KV blocks of 16 tokens, prefix
# caching and chunked prefill on, and a fixed cost of STEP_MS per engine step (llm-emu:
# `linear:base_us=…,per_token_us=0`; the mocker: `fixed` timing, decode_ms=STEP_MS,
# prefill_ms=0, see tools/mocker-replay/src/main.rs).
#
# Each run is pinned to core 0 (`taskset -c 0`) and measured with `/usr/bin/time`: wall
# seconds, user seconds, peak RSS. RUNS runs per tool and size, interleaved; the table gives
# min/median/max and the mocker/llm-emu ratios of the medians, then checks that both
# completed the same requests with the same input and output tokens.
#
# usage: tools/bench-vs-mocker.sh [N ...]      (default: 10000 100000 1000000)
#   env: RUNS=3 RATE=10 STEP_MS=10 SEED=0; NO_MOCKER=1 measures llm-emu only (no mocker build)
#   e.g. `tools/bench-vs-mocker.sh 10000 100000` leaves out the 1M case.
# Needs: cargo, python3, GNU time at /usr/bin/time, taskset (util-linux); network on the
# first run to fetch the mocker's crates. Traces go to target/bench-vs-mocker/ (~450 MB for
# the 1M Mooncake file) and are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000 1000000)
RUNS=${RUNS:-3}
RATE=${RATE:-10}
STEP_MS=${STEP_MS:-10}
SEED=${SEED:-0}
SEQS=128
TOKENS=2048
BLOCKS=35000
DIR=target/bench-vs-mocker
mkdir -p "$DIR"

cargo build --release -q -p llm-emu
EMU=target/release/llm-emu
MOCKER=target/mocker/release/mocker-replay
if [ "${NO_MOCKER:-0}" = 1 ]; then
  HAVE_MOCKER=0
  echo "NO_MOCKER=1: measuring llm-emu only" >&2
elif CARGO_TARGET_DIR=target/mocker cargo build --release -q \
    --manifest-path tools/mocker-replay/Cargo.toml 2> "$DIR/mocker-build.log"; then
  HAVE_MOCKER=1
else
  HAVE_MOCKER=0
  echo "SKIPPING the mocker: building tools/mocker-replay (dynamo-mocker 1.6.1) failed;" \
       "last lines of $DIR/mocker-build.log:" >&2
  tail -n 15 "$DIR/mocker-build.log" >&2
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "llm-emu: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+local changes');" \
     "mocker: dynamo-mocker 1.6.1; RUNS=$RUNS RATE=$RATE STEP_MS=$STEP_MS SEED=$SEED"

RESULTS="$DIR/results.tsv"
: > "$RESULTS"
# One measured run: appends "tool N run wall user rss_kb summary_path" to $RESULTS.
measure() {
  local tool=$1 n=$2 run=$3 summary=$4; shift 4
  if ! /usr/bin/time -f '%e %U %M' -o "$DIR/time" taskset -c 0 "$@" > "$DIR/stdout" 2> "$DIR/stderr"; then
    echo "$tool failed on $n requests (run $run):" >&2
    tail -n 20 "$DIR/stderr" >&2
    exit 1
  fi
  [ "$tool" = mocker ] && tail -n 1 "$DIR/stdout" > "$summary"
  read -r wall user rss < "$DIR/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$run" "$wall" "$user" "$rss" "$summary" >> "$RESULTS"
  echo "  $tool N=$n run $run: wall ${wall} s, user ${user} s, peak RSS $((rss / 1024)) MiB" >&2
}

for n in "${SIZES[@]}"; do
  emu_trace="$DIR/trace-$n-r$RATE-s$SEED.llm-emu.jsonl"
  moon_trace="$DIR/trace-$n-r$RATE-s$SEED.mooncake.jsonl"
  if [ ! -s "$emu_trace" ] || [ ! -s "$moon_trace" ]; then
    python3 tools/make-trace/make_trace.py -n "$n" --rate "$RATE" --seed "$SEED" \
      --llm-emu "$emu_trace.tmp" --mooncake "$moon_trace.tmp" > /dev/null
    mv "$emu_trace.tmp" "$emu_trace"
    mv "$moon_trace.tmp" "$moon_trace"
  fi
  for run in $(seq 1 "$RUNS"); do
    measure llm-emu "$n" "$run" "$DIR/llm-emu-$n-$run.json" \
      "$EMU" simulate --quiet --workload "$moon_trace" --hash-block-size 16 \
      --max-num-seqs $SEQS --max-num-batched-tokens $TOKENS --num-gpu-blocks-override $BLOCKS \
      --block-size 16 --enable-prefix-caching --enable-chunked-prefill --no-async-scheduling \
      --latency "linear:base_us=$((STEP_MS * 1000)),per_token_us=0" \
      --output-json "$DIR/llm-emu-$n-$run.json"
    if [ "$HAVE_MOCKER" = 1 ]; then
      measure mocker "$n" "$run" "$DIR/mocker-$n-$run.json" \
        "$MOCKER" "$moon_trace" "$STEP_MS" $SEQS $TOKENS $BLOCKS
    fi
  done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for tool, n, run, wall, user, rss, summary in rows:
    by.setdefault((tool, int(n)), []).append((float(wall), float(user), int(rss), summary))

def work(tool, summary):
    """(completed, input tokens, output tokens, simulated s, output tok/s, mean TTFT ms, mean TPOT ms)."""
    s = json.load(open(summary))
    if tool == "llm-emu":
        return (s["completed"], s["total_input_tokens"], s["total_output_tokens"], s["duration"],
                s["output_throughput"], s["mean_ttft_ms"], s["mean_tpot_ms"])
    mean = lambda k: s[k]["mean_ms"] if isinstance(s.get(k), dict) else s.get("mean_" + k + "_ms", float("nan"))
    return (s["completed_requests"], s["total_input_tokens"], s["total_output_tokens"],
            s["duration_ms"] / 1000, s["output_throughput_tok_s"], mean("ttft"), mean("tpot"))

def mmm(xs, fmt):
    return "/".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs)))

sizes = sorted({n for _, n in by})
print()
print("| requests | tool | wall s (min/median/max) | user s (median) | peak RSS MiB (min/median/max) | completed | input tokens | output tokens | simulated s | output tok/s | mean TTFT ms | mean TPOT ms |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
mismatch = False
for n in sizes:
    seen = {}
    for tool in ("llm-emu", "mocker"):
        if (tool, n) not in by:
            continue
        runs = by[(tool, n)]
        w = work(tool, runs[-1][3])
        seen[tool] = w
        print(f"| {n:,} | {tool} | {mmm([r[0] for r in runs], '{:.2f}')} | "
              f"{statistics.median(r[1] for r in runs):.2f} | {mmm([r[2] / 1024 for r in runs], '{:.0f}')} | "
              f"{w[0]:,} | {w[1]:,} | {w[2]:,} | {w[3]:,.1f} | {w[4]:,.0f} | {w[5]:.1f} | {w[6]:.2f} |")
    if len(seen) == 2 and seen["llm-emu"][:3] != seen["mocker"][:3]:
        mismatch = True
        print(f"MISMATCH at {n}: llm-emu {seen['llm-emu'][:3]} vs mocker {seen['mocker'][:3]} "
              "(completed, input tokens, output tokens)")
print()
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[2] for r in v),
           statistics.median(r[1] for r in v)) for k, v in by.items()}
if any(t == "mocker" for t, _ in by):
    print("mocker / llm-emu, medians:")
    for n in sizes:
        if ("mocker", n) in med and ("llm-emu", n) in med:
            (we, re, ue), (wm, rm, um) = med[("llm-emu", n)], med[("mocker", n)]
            print(f"  {n:>9,} requests: wall {wm / we:.2f}x, user CPU {um / ue:.2f}x, "
                  f"peak RSS {rm / re:.1f}x")
print("scaling from the smallest size (median wall, µs of wall per request, median peak RSS):")
for tool in ("llm-emu", "mocker"):
    ns = [n for n in sizes if (tool, n) in med]
    if not ns:
        continue
    w0, r0, _ = med[(tool, ns[0])]
    parts = [f"{n:,}: {med[(tool, n)][0]:.2f} s ({med[(tool, n)][0] / w0:.1f}x, "
             f"{med[(tool, n)][0] / n * 1e6:.0f} µs/req), {med[(tool, n)][1] / 1024:.0f} MiB "
             f"({med[(tool, n)][1] / r0:.1f}x)" for n in ns]
    print(f"  {tool}: " + "; ".join(parts))
sys.exit(1 if mismatch else 0)
PY
