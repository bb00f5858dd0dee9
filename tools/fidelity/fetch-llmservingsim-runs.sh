#!/usr/bin/env bash
# Fetches the real vLLM runs LLMServingSim publishes (github.com/casys-kaist/LLMServingSim,
# MIT) into OUT, one case folder each, in the layout `tools/fidelity/report.sh` and
# `llm-emu validate` read:
#
#   OUT/<case>/config.json              the run's cluster config (GPU, memory, TP link)
#   OUT/<case>/vllm/{meta.json,requests.jsonl,timeseries.csv}
#   OUT/<case>/workload.jsonl           the workload replayed (token ids included)
#   OUT/<case>/profile/                 LLMServingSim's operator profile of that GPU and model
#   OUT/<case>/llmservingsim-summary.txt  that project's own simulator against the run
#   OUT/<case>/LICENSE-LLMServingSim
#
#   tools/fidelity/fetch-llmservingsim-runs.sh OUT
#
# Pinned to one commit, so the figures of docs/fidelity.md are reproducible. The RTX 4090 case
# is also stored in crates/cli/tests/fixtures/real-runs/ (without output token ids and the
# unused skew tables); the RTX PRO 6000 Llama-3.1-8B case is the shared one.
set -euo pipefail
out=${1:?usage: $0 OUT}
commit=5daddb21a545658d5150b535712d0494584b5278
# LLMSERVINGSIM_BASE: a mirror of the repository at that commit (a URL curl reads, file:// too).
base=${LLMSERVINGSIM_BASE:-https://raw.githubusercontent.com/casys-kaist/LLMServingSim/$commit}

get() { # SRC DST
    mkdir -p "$(dirname "$2")"
    curl -fsSL --retry 3 "$base/$1" -o "$2"
}

# case | bench example | workload | profile folder | TP degrees profiled
while IFS='|' read -r case example workload profile tps; do
    [ -n "$case" ] || continue
    d=$out/$case
    echo "$case"
    get LICENSE "$d/LICENSE-LLMServingSim"
    get "bench/examples/$example/config.json" "$d/config.json"
    for f in meta.json requests.jsonl timeseries.csv; do
        get "bench/examples/$example/vllm/$f" "$d/vllm/$f"
    done
    get "bench/examples/$example/validation/summary.txt" "$d/llmservingsim-summary.txt"
    get "workloads/$workload" "$d/workload.jsonl"
    get "profiler/perf/$profile/meta.yaml" "$d/profile/meta.yaml"
    for tp in $tps; do
        for f in attention dense per_sequence skew skew_fit; do
            get "profiler/perf/$profile/tp$tp/$f.csv" "$d/profile/tp$tp/$f.csv"
        done
    done
    if [ "$case" = rtxpro6000-qwen3-30b-a3b-dp2 ]; then
        get "profiler/perf/$profile/tp1/moe.csv" "$d/profile/tp1/moe.csv"
    fi
done <<CASES
rtx4090-llama-3.1-8b|RTX4090/Llama-3.1-8B|sharegpt-llama-3.1-8b-300-sps10.jsonl|RTX4090/meta-llama/Llama-3.1-8B/bf16|1
rtxpro6000-llama-3.1-8b|RTXPRO6000/Llama-3.1-8B|sharegpt-llama-3.1-8b-300-sps10.jsonl|RTXPRO6000/meta-llama/Llama-3.1-8B/bf16|1 2
rtxpro6000-qwen3-32b-tp2|RTXPRO6000/Qwen3-32B|sharegpt-qwen3-32b-300-sps10.jsonl|RTXPRO6000/Qwen/Qwen3-32B/bf16|1 2
rtxpro6000-qwen3-30b-a3b-dp2|RTXPRO6000/Qwen3-30B-A3B-Instruct-2507|sharegpt-qwen3-30b-a3b-300-sps10.jsonl|RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507/bf16|1 2
CASES
