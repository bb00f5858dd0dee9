#!/usr/bin/env bash
# Fetches public vLLM runs on H100 SXM that inference-sim (BLIS) publishes in
# github.com/inference-sim/training (`default_args/<run>/`), one folder each, in the layout
# `llm-emu validate --client-result RUN` reads:
#
#   OUT/<run>/exp-config.yaml                       the vLLM server's settings
#   OUT/<run>/profile.yaml                          inference-perf's settings as asked
#   OUT/<run>/results/config.yaml                   inference-perf's settings as it ran them
#   OUT/<run>/results/stage_<i>_lifecycle_metrics.json   client-side figures per load stage
#   OUT/<run>/results/summary_lifecycle_metrics.json
#
#   tools/fidelity/fetch-inference-sim-runs.sh OUT
#
# The repository has no licence file, so none of it is stored in llm-emu: it is fetched at use
# time, pinned to one commit so the figures of docs/fidelity.md are reproducible.
# INFERENCE_SIM_BASE: a mirror of the repository at that commit (a URL curl reads, file://
# too); INFERENCE_SIM_GIT: a local git directory holding that commit (read with git show).
set -euo pipefail
out=${1:?usage: $0 OUT}
commit=ed5c1d26900e6909758d5e1641a18edaf56a1caf
base=${INFERENCE_SIM_BASE:-https://raw.githubusercontent.com/inference-sim/training/$commit}

get() { # SRC DST
    mkdir -p "$(dirname "$2")"
    if [ -n "${INFERENCE_SIM_GIT:-}" ]; then
        git --git-dir="$INFERENCE_SIM_GIT" show "$commit:$1" > "$2"
    else
        curl -fsSL --retry 3 "$base/$1" -o "$2"
    fi
}

# run | load stages
while IFS='|' read -r run stages; do
    [ -n "$run" ] || continue
    echo "$run"
    d=$out/$run
    for f in exp-config.yaml profile.yaml results/config.yaml results/summary_lifecycle_metrics.json; do
        get "default_args/$run/$f" "$d/$f"
    done
    for i in $(seq 0 $((stages - 1))); do
        get "default_args/$run/results/stage_${i}_lifecycle_metrics.json" \
            "$d/results/stage_${i}_lifecycle_metrics.json"
    done
done <<RUNS
20260217-155451-llama-2-7b-tp1-codegen|2
20260217-162547-llama-2-7b-tp1-roleplay|1
20260217-231439-llama-2-7b-tp1-general|2
20260217-170634-llama-2-7b-tp1-reasoning|1
20260217-202857-llama-2-70b-tp4-general|2
20260218-150956-codellama-34b-tp2-codegen|2
20260218-120914-mixtral-8x7b-v0-1-tp2-codegen|2
20260218-065057-llama-2-70b-hf-tp4-reasoning|1
20260218-135247-mixtral-8x7b-v0-1-tp2-reasoning|1
20260218-160939-codellama-34b-tp2-reasoning|1
RUNS
