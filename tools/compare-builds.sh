#!/usr/bin/env bash
# Two builds of llm-emu on the same cases: every output file must be byte-identical. For changes
# that must not change a result (speed work): run the build before and the build after.
#
# usage: tools/compare-builds.sh BEFORE_BIN AFTER_BIN [OUT_DIR]
#   OUT_DIR (default target/compare-builds) gets before/ and after/ with each case's
#   --output-json, --requests-out and --steps-out, and the traces (made once with
#   tools/make-trace/make_trace.py from the shared real run's workload).
# Exit status 0 when every file is identical, 1 otherwise (the differing files are listed).
#
# Cases: the ShareGPT-like trace (2,000, 30,000 and 100,000 requests, 10 req/s, 10 ms steps,
# 35,000 blocks, synchronous scheduling) as the million-request benchmark runs it; the
# 30,000-request trace on 2,000 blocks with a per-token and per-context step cost, with and
# without async scheduling; synthetic requests at 40 and (on 2,000 blocks) 100 req/s; sessions
# on 3,000 blocks; 4 prefix-aware replicas; `simulate --like` and `validate` of the shared real
# run; a client timeout and a client concurrency limit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,17p "$0"; exit 2; }
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
OUT=${3:-target/compare-builds}
RUN=${LLM_EMU_SHARED_RUN:-../shared/data/real-runs/rtxpro6000-llama-3.1-8b}
mkdir -p "$OUT"
for n in 2000 30000 100000; do
  [ -s "$OUT/trace$n.jsonl" ] ||
    python3 tools/make-trace/make_trace.py -n "$n" --rate 10 --seed 0 --llm-emu "$OUT/trace$n.jsonl" >/dev/null
done

cases() { # BIN DIR
  local B=$1 O=$2 T=$OUT
  local C="--max-num-seqs 128 --max-num-batched-tokens 2048 --block-size 16 --enable-prefix-caching --enable-chunked-prefill"
  local L="--latency linear:base_us=10000,per_token_us=0"
  local L2="--latency linear:base_us=8000,per_token_us=3,per_ctx_us=0.02"
  mkdir -p "$O"
  "$B" simulate --quiet --workload "$T/trace2000.jsonl" $C --num-gpu-blocks-override 35000 --no-async-scheduling $L --output-json "$O/a.json" --requests-out "$O/a.req" --steps-out "$O/a.steps"
  "$B" simulate --quiet --workload "$T/trace100000.jsonl" $C --num-gpu-blocks-override 35000 --no-async-scheduling $L --output-json "$O/b.json" --requests-out "$O/b.req"
  "$B" simulate --quiet --workload "$T/trace30000.jsonl" $C --num-gpu-blocks-override 2000 --no-async-scheduling $L2 --output-json "$O/c.json" --requests-out "$O/c.req" --steps-out "$O/c.steps"
  "$B" simulate --quiet --workload "$T/trace30000.jsonl" $C --num-gpu-blocks-override 2000 $L2 --output-json "$O/d.json" --requests-out "$O/d.req" --steps-out "$O/d.steps"
  "$B" simulate --quiet --synthetic 20000 --request-rate 40 --no-async-scheduling --output-json "$O/e.json" --requests-out "$O/e.req" --steps-out "$O/e.steps"
  "$B" simulate --quiet --synthetic 20000 --request-rate 100 --num-gpu-blocks-override 2000 --no-async-scheduling --output-json "$O/f.json" --requests-out "$O/f.req" --steps-out "$O/f.steps"
  "$B" simulate --quiet --synthetic 5000 --scenario sessions:turns=4,think=2,system=200,max_len=4000 --num-gpu-blocks-override 3000 --no-async-scheduling --output-json "$O/g.json" --requests-out "$O/g.req" --steps-out "$O/g.steps"
  "$B" simulate --quiet --synthetic 20000 --request-rate 60 --replicas 4 --router prefix-aware --no-async-scheduling --output-json "$O/h.json" --requests-out "$O/h.req"
  "$B" simulate --quiet --like "$RUN" --no-async-scheduling --output-json "$O/i.json" --requests-out "$O/i.req" --steps-out "$O/i.steps" 2>/dev/null
  "$B" simulate --quiet --like "$RUN" --output-json "$O/j.json" --requests-out "$O/j.req" 2>/dev/null
  "$B" validate --real "$RUN/vllm" --workload "$RUN/workload.jsonl" --profile "$RUN/profile" --json "$O/k.json" --requests "$O/k.pairs" >/dev/null 2>&1
  "$B" simulate --quiet --synthetic 3000 --request-rate 30 --no-async-scheduling --request-timeout 20 --num-gpu-blocks-override 1500 --output-json "$O/l.json" --requests-out "$O/l.req"
  "$B" simulate --quiet --synthetic 3000 --request-rate 30 --no-async-scheduling --max-concurrency 50 --output-json "$O/m.json" --requests-out "$O/m.req" --steps-out "$O/m.steps"
}

cases "$BEFORE" "$OUT/before"
cases "$AFTER" "$OUT/after"
status=0
count=0
for f in "$OUT"/before/*; do
  count=$((count + 1))
  if ! cmp -s "$f" "$OUT/after/$(basename "$f")"; then
    echo "differs: $(basename "$f")"
    status=1
  fi
done
echo "$count files compared"
exit $status
