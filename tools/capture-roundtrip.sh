#!/usr/bin/env bash
# Capture round trip on the vLLM reference server (real vLLM 0.19.0, GPU replaced by a sleep of a
# known latency, ../shared/tools/vllm-reference): the capture plug-in records the server's steps
# while a `profile-plan` workload is replayed against it; `profile-pack` builds a pack from the
# records; `simulate --profile` (and, with SERVE=1, `serve --profile`) replays the same workload
# at the arrivals the server saw. The emulated TPOT mean (client-side) and engine-side E2E mean
# must be within TOL % of the reference's.
#
# Engine-side E2E is what vLLM's own metrics call queue time plus inference time: from the
# request's arrival at the engine core to its last token (`vllm:request_queue_time_seconds` +
# `vllm:request_inference_time_seconds`, read from each server's /metrics; for `simulate`, last
# token − queued in --requests-out). It is the part of a request's life the capture records.
# Client-side E2E and TTFT are printed, not gated: they also hold the way in through vLLM's
# Python API server (HTTP, validation, ZMQ), which the engine-core capture does not see and
# which grows with the host's CPU time per request and the size of a burst (tens of ms for a
# burst of 32 on a 2-core host, 1-2 % of E2E); `llm-emu --frontend-latency` models it.
#
#   tools/capture-roundtrip.sh OUTDIR
#
# Env: LLM_EMU (target/release/llm-emu), VLLM_REF_HOME (~/.cache/vllm-reference), TOL (2),
#   SERVE (1: also replay through `serve --profile`), the server's step latency
#   EMU_BASE_US (8000), EMU_PER_TOKEN_US (20), EMU_PER_REQ_US (30), and the plan's
#   PROMPT_LENS (64,512), CONCURRENCY (1,8,32), OUTPUT_LEN (256).
# Exit status 0 when every gated mean is within TOL %, 1 when one is not, 2 on a set-up error.
#
# The client is tools/vllm-reference-compare/replay.py (token-id prompts at the planned
# arrivals, per-request first/last token times) for both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REF=${VLLM_REF_HOME:-$HOME/.cache/vllm-reference}
LLM_EMU=${LLM_EMU:-target/release/llm-emu}
TOL=${TOL:-2}
SERVE=${SERVE:-1}
TOK=$REF/model/qwen3-8b
PY=$REF/venv/bin/python
CMP=tools/vllm-reference-compare
[[ -x $REF/venv/bin/vllm ]] || { echo "no vLLM reference in $REF: run ../shared/tools/vllm-reference/setup.sh" >&2; exit 2; }
[[ -x $LLM_EMU ]] || { echo "build $LLM_EMU first: cargo build --release -p llm-emu" >&2; exit 2; }
LLM_EMU=$(cd "$(dirname "$LLM_EMU")" && pwd)/$(basename "$LLM_EMU")
pids=()
trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done' EXIT

# 1. The plug-in, into the reference's venv (inert there unless LLM_EMU_CAPTURE is set).
"$REF/venv/bin/pip" install -q --no-deps --force-reinstall plugins/vllm-capture > "$OUT/pip.log" 2>&1

# 2. The capture workload.
"$LLM_EMU" profile-plan -o "$OUT/workload.jsonl" --token-ids --prompt-lens "${PROMPT_LENS:-64,512}" \
  --concurrency "${CONCURRENCY:-1,8,32}" --output-len "${OUTPUT_LEN:-256}" --step-ms 12

stop() { # PID: SIGINT (vLLM and llm-emu shut down cleanly; the capture is flushed), then KILL
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# 3. The reference server with the capture on, and the workload sent to it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -f "$OUT/steps.jsonl" "$OUT/emu_trace.jsonl"
EMU_BASE_US=${EMU_BASE_US:-8000} EMU_PER_TOKEN_US=${EMU_PER_TOKEN_US:-20} \
  EMU_PER_REQ_US=${EMU_PER_REQ_US:-30} EMU_TRACE="$OUT/emu_trace.jsonl" \
  LLM_EMU_CAPTURE="$OUT/steps.jsonl" PORT=$PORT \
  ../shared/tools/vllm-reference/run_ref.sh > "$OUT/server.log" 2>&1 &
spid=$!
pids+=("$spid")
for _ in $(seq 180); do
  curl -sf "127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$spid" 2>/dev/null || { echo "reference server exited; see $OUT/server.log" >&2; exit 2; }
  sleep 1
done
curl -sf "127.0.0.1:$PORT/health" >/dev/null || { echo "reference server not ready; see $OUT/server.log" >&2; exit 2; }
"$PY" $CMP/replay.py --workload "$OUT/workload.jsonl" --out "$OUT/reference.jsonl" \
  --url "http://127.0.0.1:$PORT" --model Qwen/Qwen3-8B
curl -sf --max-time 10 "127.0.0.1:$PORT/metrics" > "$OUT/reference-metrics.txt"
stop "$spid"
grep -h "llm-emu capture" "$OUT/server.log" | sed 's/.*llm-emu capture/llm-emu capture/' || true

# 4. The pack, and the workload replayed on it at the arrivals the reference saw.
"$LLM_EMU" profile-pack "$OUT/steps.jsonl" -o "$OUT/pack.json" --gpu-model vllm-reference \
  --model-name Qwen/Qwen3-8B
python3 $CMP/compare.py actual-workload --workload "$OUT/workload.jsonl" \
  --replay "$OUT/reference.jsonl" --out "$OUT/workload-actual.jsonl"
engine=(--profile "$OUT/pack.json" --num-gpu-blocks-override 20000 --max-num-seqs 256
        --max-num-batched-tokens 8192 --max-model-len 40960 --block-size 16)
"$LLM_EMU" simulate --workload "$OUT/workload-actual.jsonl" "${engine[@]}" --quiet \
  --requests-out "$OUT/simulate.jsonl"
python3 $CMP/compare.py timings --replay "$OUT/reference.jsonl" --sim "$OUT/simulate.jsonl" \
  --json "$OUT/simulate-compare.json" > "$OUT/simulate-compare.txt"
compared=(simulate)
if [[ $SERVE == 1 ]]; then
  "$LLM_EMU" serve Qwen/Qwen3-8B --tokenizer "$TOK" --host 127.0.0.1 --port 0 "${engine[@]}" \
    > "$OUT/serve.out" 2> "$OUT/serve.log" &
  epid=$!
  pids+=("$epid")
  for _ in $(seq 300); do grep -q listening "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
  addr=$(sed -n 's#.*listening on http://##p' "$OUT/serve.out")
  [[ -n $addr ]] || { echo "serve did not start; see $OUT/serve.log" >&2; exit 2; }
  "$PY" $CMP/replay.py --workload "$OUT/workload.jsonl" --out "$OUT/serve.jsonl" \
    --url "http://$addr" --model Qwen/Qwen3-8B
  curl -sf --max-time 10 "http://$addr/metrics" > "$OUT/serve-metrics.txt"
  stop "$epid"
  python3 $CMP/compare.py timings --replay "$OUT/reference.jsonl" --sim "$OUT/serve.jsonl" \
    --json "$OUT/serve-compare.json" > "$OUT/serve-compare.txt"
  compared+=(serve)
fi

# 5. The figures.
python3 - "$TOL" "$OUT" "${compared[@]}" <<'PY' | tee "$OUT/roundtrip.txt"
import json, re, sys
tol, out = float(sys.argv[1]), sys.argv[2]
trace = [json.loads(l) for l in open(f"{out}/emu_trace.jsonl")]
steps = [json.loads(l) for l in open(f"{out}/steps.jsonl")]
planned = sum(t["lat_us"] for t in trace) / len(trace)
captured = sum(s["lat_us"] for s in steps) / len(steps)
print(f"steps: reference trace {len(trace)}, captured {len(steps)}; mean step {planned:.1f} us "
      f"planned, {captured:.1f} us captured ({(captured / planned - 1) * 100:+.2f} %)")
ok = len(trace) == len(steps)


def engine_e2e_ms(metrics_path):
    """(mean queue + inference time in ms, requests) from a server's Prometheus text."""
    sums = {}
    for line in open(metrics_path):
        m = re.match(r"(vllm:request_(?:queue|inference)_time_seconds)_(sum|count)(?:\{.*\})? (\S+)$",
                     line.strip())
        if m:
            key = (m.group(1), m.group(2))
            sums[key] = sums.get(key, 0.0) + float(m.group(3))
    q, i = "vllm:request_queue_time_seconds", "vllm:request_inference_time_seconds"
    n = sums.get((q, "count"), 0.0)
    if n == 0 or n != sums.get((i, "count")):
        sys.exit(f"{metrics_path}: no queue/inference time histograms with equal counts")
    return (sums[(q, "sum")] + sums[(i, "sum")]) / n * 1e3, int(n)


def sim_engine_e2e_ms(path):
    reqs = [json.loads(l) for l in open(path)]
    done = [r for r in reqs if r.get("error") is None]
    return sum(r["last_token_s"] - r["queued_s"] for r in done) / len(done) * 1e3, len(done)


def row(m, r, e, gated):
    global ok
    err = (e / r - 1) * 100
    bad = gated and not abs(err) <= tol
    ok &= not bad
    print(f"  {m:<10} mean  reference {r:9.2f} ms  emulated {e:9.2f} ms  {err:+6.2f} %"
          f"{'  FAIL' if bad else ''}{'' if gated else '  (not gated)'}")


ref_engine, ref_n = engine_e2e_ms(f"{out}/reference-metrics.txt")
for name in sys.argv[3:]:
    c = json.load(open(f"{out}/{name}-compare.json"))
    n = c["requests_compared"]
    print(f"{name}: {n} requests compared")
    emu_engine, emu_n = (sim_engine_e2e_ms(f"{out}/simulate.jsonl") if name == "simulate"
                         else engine_e2e_ms(f"{out}/{name}-metrics.txt"))
    if not ref_n == emu_n == n:
        print(f"  engine-side E2E over {ref_n} (reference) and {emu_n} (emulated) requests,"
              f" not the {n} compared  FAIL")
        ok = False
    row("tpot", c["tpot_mean_real"], c["tpot_mean_sim"], True)
    row("engine e2e", ref_engine, emu_engine, True)
    for m in ("e2e", "ttft"):
        row(m, c[f"{m}_mean_real"], c[f"{m}_mean_sim"], False)
print("round trip", "within" if ok else "NOT within", f"{tol} %")
sys.exit(0 if ok else 1)
PY
