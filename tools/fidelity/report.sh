#!/usr/bin/env bash
# Regenerates the fidelity report's figures: for every real run under ../shared/data/real-runs/
# (a case folder with vllm/ and workload.jsonl), runs `llm-emu validate` with each latency
# configuration, prints the comparison tables (markdown-ready), and plots emulated vs real
# per-request latency to docs/fidelity-<case>.png.
#
#   tools/fidelity/report.sh            # from the repository root
#
# Needs a release build (built here) and matplotlib (installed into ~/.cache/llm-emu/plotenv).
# REAL_RUNS=DIR reads the cases of another folder, e.g. the runs
# tools/fidelity/fetch-llmservingsim-runs.sh fetches.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${REAL_RUNS:-../shared/data/real-runs}
cargo build --release -q -p llm-emu
bin=target/release/llm-emu
venv=${PLOT_VENV:-$HOME/.cache/llm-emu/plotenv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for case_dir in "$runs"/*/; do
  case=$(basename "$case_dir")
  [ -d "$case_dir/vllm" ] && [ -f "$case_dir/workload.jsonl" ] || continue
  echo "## $case"
  series=()
  # label | extra validate flags
  while IFS='|' read -r label flags; do
    [ -n "$label" ] || continue
    # shellcheck disable=SC2086
    if "$bin" validate --real "$case_dir/vllm" --workload "$case_dir/workload.jsonl" $flags \
        --json "$out/$case-$label.json" --requests "$out/$case-$label.jsonl" >"$out/$case-$label.txt" 2>&1; then
      echo "### $label"
      echo '```'
      cat "$out/$case-$label.txt"
      echo '```'
      series+=("$label=$out/$case-$label.jsonl")
    else
      echo "### $label: failed"; sed 's/^/    /' "$out/$case-$label.txt"
    fi
  done <<CONFIGS
default|
profile|--profile ${case_dir}profile
peer-composition|--latency profile:dir=${case_dir}profile,step_overhead_us=0 --enforce-eager
roofline|--latency roofline
CONFIGS
  if [ ${#series[@]} -gt 0 ]; then
    "$venv/bin/python" tools/fidelity/plot.py "docs/fidelity-$case.png" \
      "$case: emulated vs real, per request" "${series[@]}"
    echo "plot: docs/fidelity-$case.png"
  fi
done
